"""The worker's workflow runner: runs see their start message's parts, copied, in either mode."""

from __future__ import annotations

import uuid

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from receivables.workflow_runner import (
    StartReleasingInterceptor,
    copied_payloads,
    workflow_runner,
)
from tests.sample_workflows import MemoEcho


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_run_reads_its_input_memo_and_info_with_either_runner(
    time_skipping_env: WorkflowEnvironment, sandboxed: bool
) -> None:
    client = time_skipping_env.client
    queue = f"runner-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MemoEcho],
        workflow_runner=workflow_runner(sandboxed),
        interceptors=[StartReleasingInterceptor()],
    ):
        answer = await client.execute_workflow(
            MemoEcho.run,
            "hola",
            id=f"memo-{uuid.uuid4().hex}",
            task_queue=queue,
            memo={"folio": "0000611365"},
        )

    assert answer == ["hola", "0000611365", "None", "TestMemoEcho"]


def test_copied_payloads_are_equal_and_share_nothing_with_the_originals() -> None:
    original = {"trace": Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')}

    copies = copied_payloads(original)
    original["trace"].data = b'"changed"'

    assert copies["trace"].data == b'"x"'
    assert copies["trace"].metadata["encoding"] == b"json/plain"
