"""DunningNextActionAt follows the plan, so the README's 'a person should look' query holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.converter import default
from temporalio.testing import WorkflowEnvironment

from receivables.store import make_engine
from tests.case_helpers import (
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow


def needs_a_person(attributes: dict[str, object]) -> bool:
    """The README's visibility query, evaluated on one case's attributes."""
    return (
        attributes.get("DunningStage") == "overdue"
        and attributes.get("DunningNextActionAt") is None
        and attributes.get("DunningPaused") is False
        and attributes.get("DunningDisputed") is False
        and attributes.get("DunningPromised") is False
    )


async def search_attributes(handle: WorkflowHandle) -> dict[str, object]:
    """The case's search attributes by name; an unset one is absent.

    Read from the raw description: the time-skipping server keeps an unset datetime
    attribute as a null value, which the SDK's decoding of ``describe()`` fails on.
    """
    request = DescribeWorkflowExecutionRequest(
        namespace=handle._client.namespace,
        execution=WorkflowExecution(workflow_id=handle.id),
    )
    answer = await handle._client.workflow_service.describe_workflow_execution(request)
    fields = answer.workflow_execution_info.search_attributes.indexed_fields
    converter = default().payload_converter
    values: dict[str, object] = {}
    for name, payload in fields.items():
        value = converter.from_payload(payload)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is None or value == []:
            continue
        if payload.metadata.get("type") == b"Datetime":
            value = datetime.fromisoformat(str(value))
        values[name] = value
    return values


async def attributes_once(
    handle: WorkflowHandle, settled: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    """The case's search attributes once ``settled`` holds (the worker runs in real time)."""
    attributes: dict[str, object] = {}
    for _ in range(60):
        attributes = await search_attributes(handle)
        if settled(attributes):
            return attributes
        await asyncio.sleep(0.25)
    raise AssertionError(f"attributes never settled: {attributes}")


def next_sunday(today: date) -> date:
    """The first Sunday after ``today``."""
    return today + timedelta(days=(6 - today.weekday()) % 7 or 7)


async def test_next_action_follows_a_step_found_late_then_each_send_then_nothing_left(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    sunday = next_sunday((await env.get_current_time()).date())
    # Sunday, just after midnight in Santiago: outside usual contact hours.
    await advance_to(env, santiago(sunday, time(0, 30)))
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=sunday - timedelta(days=32),
        due_date=sunday - timedelta(days=2),  # R+1 was due on Saturday at 09:00
        amount_minor=120_000,
    )
    steps = [
        {"id": f"R+{n}", "offset_days": n, "channel": "email", "template": t}
        for n, t in ((1, "overdue-first"), (8, "overdue-second"))
    ]
    policy = policy_with_steps(*steps)
    r8_at = santiago(sunday + timedelta(days=6), time(9, 0))

    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(
            env.client,
            engine,
            invoice,
            customer,
            policy,
            queue,
            await env.get_current_time(),
        )
        # Found late at night, R+1 waits for its send time today: the start named R+8.
        moved = await attributes_once(
            run.handle,
            lambda a: a.get("DunningNextActionAt") != r8_at,
        )
        planned = await run.handle.query(InvoiceWorkflow.next_step)
        await advance_to(env, santiago(sunday, time(12, 0)))
        for _ in range(40):
            if run.outbox():
                break
            await asyncio.sleep(0.25)
        after_r1 = await search_attributes(run.handle)
        await advance_to(env, santiago(sunday + timedelta(days=6), time(12, 0)))
        after_r8 = await attributes_once(
            run.handle,
            lambda a: a.get("DunningNextActionAt") is None,
        )
        sent = len(run.outbox())
        await run.handle.terminate("the test is over")

    assert planned is not None and planned.step_id == "R+1"
    assert moved.get("DunningNextActionAt") == planned.at
    assert planned.at == santiago(sunday, time(9, 0))
    # R+8 is still planned (the attribute is not upserted after each send: it would cost
    # a billable action per reminder).
    assert after_r1.get("DunningNextActionAt") is not None
    assert not needs_a_person(moved) and not needs_a_person(after_r1)
    assert sent == 2
    # Overdue, nothing planned, no hold: the query lists it.
    assert needs_a_person(after_r8)
