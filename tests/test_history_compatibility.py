"""Cases started by earlier releases keep running: their histories replay on today's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from receivables.case import InvoiceCase, case_workflow_id
from receivables.payloads import CASE_DATA_CONVERTER
from receivables.workflow_runner import StartReleasingInterceptor, workflow_runner
from workflows.invoice import InvoiceWorkflow

# Recorded with tests/record_history.py on the commit each file is named after.
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


class WhatTheCodeDid(Interceptor):
    """Keeps, as payload bytes, the input of every activity a replay starts and its result.

    The replayer compares commands by kind only: a timer for another instant or a send of
    another step replays "fine" while the case's state quietly parts from its history.
    """

    def __init__(self) -> None:
        self.activity_inputs: list[list[bytes]] = []
        self.results: list[bytes] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Every replayed run reports to this instance."""
        seen = self

        class _Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
                seen.activity_inputs.append(_payload_bytes(input.args))
                return super().start_activity(input)

        class _Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound))

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                result = await super().execute_workflow(input)
                seen.results.extend(_payload_bytes([result]))
                return result

        return _Inbound


def recorded_history(path: Path) -> WorkflowHistory:
    """A recorded history under its case's own workflow id, which tasks it opens carry."""
    history = WorkflowHistory.from_json("unknown", path.read_text())
    started = history.events[0].workflow_execution_started_event_attributes
    [case] = CASE_DATA_CONVERTER.payload_converter.from_payloads(
        started.input.payloads, [InvoiceCase]
    )
    workflow_id = case_workflow_id(case.tenant, case.invoice_number)
    return WorkflowHistory(workflow_id, history.events)


def _payload_bytes(values: Any) -> list[bytes]:
    return [p.data for p in CASE_DATA_CONVERTER.payload_converter.to_payloads(values)]


@pytest.mark.parametrize("sandboxed", [False, True])
@pytest.mark.parametrize("recorded", HISTORIES, ids=lambda path: path.stem)
async def test_a_recorded_history_replays_on_the_current_code(
    recorded: Path, sandboxed: bool
) -> None:
    history = recorded_history(recorded)
    did = WhatTheCodeDid()
    replayer = Replayer(
        workflows=[InvoiceWorkflow],
        data_converter=CASE_DATA_CONVERTER,
        workflow_runner=workflow_runner(sandboxed),
        interceptors=[StartReleasingInterceptor(), did],
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert len(history.events) > 40, "the recorded case should reach its payment"
    assert result.replay_failure is None
    scheduled = [
        [p.data for p in e.activity_task_scheduled_event_attributes.input.payloads]
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    completed = [
        p.data
        for e in history.events
        if e.HasField("workflow_execution_completed_event_attributes")
        for p in e.workflow_execution_completed_event_attributes.result.payloads
    ]
    assert did.activity_inputs == scheduled
    assert did.results == completed


def test_at_least_one_history_is_recorded() -> None:
    assert HISTORIES, "tests/histories holds no recorded history"
