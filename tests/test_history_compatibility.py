"""Cases started by earlier releases keep running: their histories replay on today's code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from receivables.payloads import CASE_DATA_CONVERTER
from receivables.workflow_runner import StartReleasingInterceptor, workflow_runner
from workflows.invoice import InvoiceWorkflow

# Recorded with tests/record_history.py on the commit each file is named after.
HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("sandboxed", [False, True])
@pytest.mark.parametrize("recorded", HISTORIES, ids=lambda path: path.stem)
async def test_a_recorded_history_replays_on_the_current_code(
    recorded: Path, sandboxed: bool
) -> None:
    history = WorkflowHistory.from_json(recorded.stem, recorded.read_text())
    replayer = Replayer(
        workflows=[InvoiceWorkflow],
        data_converter=CASE_DATA_CONVERTER,
        workflow_runner=workflow_runner(sandboxed),
        interceptors=[StartReleasingInterceptor()],
    )

    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert len(history.events) > 40, "the recorded case should reach its payment"
    assert result.replay_failure is None


def test_at_least_one_history_is_recorded() -> None:
    assert HISTORIES, "tests/histories holds no recorded history"
