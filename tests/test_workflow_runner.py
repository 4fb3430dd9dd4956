"""The worker's workflow runner: runs see their start message's parts, copied, in either mode."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from receivables import search_attributes as sa
from receivables.workflow_runner import (
    StartReleasingInterceptor,
    copied_payloads,
    read_back,
    workflow_runner,
)
from tests.sample_workflows import MemoEcho, StartAttributesEcho

NEXT_ACTION = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


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


@pytest.mark.parametrize("sandboxed", [True, False])
async def test_a_run_keeps_only_the_start_attributes_a_case_reads_back(
    time_skipping_env: WorkflowEnvironment, sandboxed: bool
) -> None:
    client = time_skipping_env.client
    queue = f"runner-{uuid.uuid4().hex[:8]}"
    started = TypedSearchAttributes(
        [
            SearchAttributePair(sa.DUNNING_STAGE, "not_due"),
            SearchAttributePair(sa.DUNNING_AMOUNT_DUE, 110_000),
            SearchAttributePair(sa.DUNNING_NEXT_ACTION_AT, NEXT_ACTION),
            SearchAttributePair(sa.DUNNING_SEGMENT, "preventive-b2b"),
            SearchAttributePair(sa.DUNNING_TENANT, "acme"),
        ]
    )
    async with Worker(
        client,
        task_queue=queue,
        workflows=[StartAttributesEcho],
        workflow_runner=workflow_runner(sandboxed),
    ):
        handle = await client.start_workflow(
            StartAttributesEcho.run,
            id=f"attributes-{uuid.uuid4().hex}",
            task_queue=queue,
            search_attributes=started,
        )
        at_start, after_upsert = await handle.result()
        description = await handle.describe()

    assert at_start == [
        "DunningAmountDue=110000",
        "DunningNextActionAt=2026-03-31 12:00:00+00:00",
        "DunningStage=not_due",
    ]
    assert after_upsert == [*at_start, "DunningSegment=high-risk"]
    # What the worker drops is only its own copy: the server still shows every one.
    shown = description.typed_search_attributes
    assert shown.get(sa.DUNNING_TENANT) == "acme"
    assert shown.get(sa.DUNNING_SEGMENT) == "high-risk"


def test_read_back_keeps_the_shared_keys_and_skips_what_the_start_did_not_set() -> None:
    # Keys decoded from a start are new objects equal to ours; the kept pairs use ours.
    decoded_stage = SearchAttributeKey.for_keyword("DunningStage")
    started = TypedSearchAttributes(
        [
            SearchAttributePair(decoded_stage, "overdue"),
            SearchAttributePair(
                SearchAttributeKey.for_keyword("DunningTenant"), "acme"
            ),
        ]
    )

    kept = read_back(started)

    assert [(pair.key, pair.value) for pair in kept] == [(sa.DUNNING_STAGE, "overdue")]
    assert kept.search_attributes[0].key is sa.DUNNING_STAGE
