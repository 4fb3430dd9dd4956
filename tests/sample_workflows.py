"""Small workflows the tests run, in a module pytest does not rewrite.

The sandbox imports a workflow's module again for each run. A test module is rewritten by
pytest's assertion hook on that import, which parses it with the ast module, and on
Python 3.11 two threads building ASTs at once can fail with "AST constructor recursion depth
mismatch" (CPython gh-106905). A plain module is imported from its compiled file instead.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from receivables.search_attributes import DUNNING_SEGMENT, DUNNING_STAGE


@workflow.defn(name="TestMemoEcho")
class MemoEcho:
    """Answers with what a run reads of its start: input, memo, and the last result."""

    @workflow.run
    async def run(self, greeting: str) -> list[str]:
        """Wait a moment on a timer, then report what the run still sees of its start."""
        await workflow.sleep(timedelta(seconds=1))
        memo = workflow.memo_value("folio", type_hint=str)
        last = workflow.get_last_completion_result(type_hint=str)
        return [greeting, memo, str(last), workflow.info().workflow_type]


@workflow.defn(name="TestStartAttributesEcho")
class StartAttributesEcho:
    """Answers with the search attributes a run sees of its start, then after an upsert."""

    @workflow.run
    async def run(self) -> list[list[str]]:
        """Name each attribute the run's info holds, with its value, before and after."""
        at_start = _attribute_lines()
        workflow.upsert_search_attributes([DUNNING_SEGMENT.value_set("high-risk")])
        await workflow.sleep(timedelta(seconds=1))
        return [at_start, _attribute_lines()]


def _attribute_lines() -> list[str]:
    return [
        f"{pair.key.name}={pair.value}"
        for pair in workflow.info().typed_search_attributes
    ]


@workflow.defn
class Doorbell:
    """Waits for two rings; the first can come before a server restart."""

    def __init__(self) -> None:
        """No rings yet."""
        self.rings = 0

    @workflow.run
    async def run(self) -> int:
        """Return the number of rings once there are two."""
        await workflow.wait_condition(lambda: self.rings >= 2)
        return self.rings

    @workflow.signal
    def ring(self) -> None:
        """Count one ring."""
        self.rings += 1


@workflow.defn
class LongNap:
    """Marks itself overdue, then sleeps a day, which a time-skipping server skips."""

    @workflow.run
    async def run(self) -> str:
        """Wake up after a day."""
        workflow.upsert_search_attributes([DUNNING_STAGE.value_set("overdue")])
        await workflow.sleep(timedelta(days=1))
        return "awake"
