"""Supervisor commands on a real dev server: refusals leave no trace, bulk commands by query."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from receivables.case import CaseClosed, PauseCommand, Stage, SupervisorCommand
from receivables.governance import SupervisorAction, sync_governance
from receivables.settings import PROJECT_ROOT
from receivables.store import make_engine, session_scope
from receivables.supervision import command_case, command_cases, invoices_for_query
from tests.case_helpers import (
    CaseRun,
    add_invoice,
    open_case,
    policy_with_steps,
    running_worker,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

FAR_STEPS = (
    {"id": "R+1", "offset_days": 1, "channel": "email", "template": "overdue-first"},
)
UPDATE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
}


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    """A migrated store whose governance knows the shipped people."""
    engine = make_engine(sqlite_url)
    sync_governance(engine, "test", PROJECT_ROOT / "policies" / "governance.yaml")
    return engine


async def open_far_case(
    env: WorkflowEnvironment, engine: Engine, queue: str, customer_id: str | None = None
) -> CaseRun:
    """A case due in two months, so nothing fires while the test runs in real time."""
    today = datetime.now(UTC).date()
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today + timedelta(days=60),
        amount_minor=250_000,
        customer_id=customer_id,
    )
    policy = policy_with_steps(*FAR_STEPS)
    return await open_case(
        env.client, engine, invoice, customer, policy, queue, datetime.now(UTC)
    )


async def update_events(run: CaseRun) -> list[int]:
    """The update events of a case's history."""
    history = await run.handle.fetch_history()
    return [e.event_id for e in history.events if e.event_type in UPDATE_EVENTS]


async def test_impossible_commands_are_refused_with_a_message_and_leave_no_trace(
    local_env: WorkflowEnvironment, engine: Engine
) -> None:
    async with running_worker(local_env.client, engine) as (_, queue):
        run = await open_far_case(local_env, engine, queue)
        await run.handle.query(InvoiceWorkflow.state)
        with pytest.raises(WorkflowUpdateFailedError) as not_paused:
            await run.handle.execute_update(
                InvoiceWorkflow.resume, SupervisorCommand("supervisora", "retomar")
            )
        history_after_refusal = await update_events(run)
        paid = await command_case(
            local_env.client,
            engine,
            "test",
            run.case.invoice_number,
            "pause",
            PauseCommand("supervisora", "revisión"),
        )
        await run.handle.signal(InvoiceWorkflow.cancel, _closing())
        await run.handle.result()
        after_end = await command_case(
            local_env.client,
            engine,
            "test",
            run.case.invoice_number,
            "pause",
            PauseCommand("supervisora", "revisión"),
        )

    assert "is not paused" in str(not_paused.value.cause)
    assert history_after_refusal == []
    assert paid.accepted
    assert not after_end.accepted and "cancelled: nothing to pause" in after_end.message


async def test_bulk_pause_by_customer_pauses_only_that_customers_open_cases(
    local_env: WorkflowEnvironment, engine: Engine
) -> None:
    customer = f"C-{unique_number()}"
    async with running_worker(local_env.client, engine) as (_, queue):
        ours = [
            await open_far_case(local_env, engine, queue, customer) for _ in range(3)
        ]
        other = await open_far_case(local_env, engine, queue)
        query = f'DunningCustomer = "{customer}"'
        folios: list[str] = []
        for _ in range(80):  # visibility is eventually consistent
            folios = await invoices_for_query(local_env.client, "test", query)
            if len(folios) == 3:
                break
            await asyncio.sleep(0.25)
        command = PauseCommand(
            "supervisora",
            "cliente en reestructuración",
            date.today() + timedelta(days=30),
        )
        results = await command_cases(
            local_env.client, engine, "test", folios, "pause", command
        )
        states = [await run.handle.query(InvoiceWorkflow.state) for run in ours]
        other_state = await other.handle.query(InvoiceWorkflow.state)
        for run in (*ours, other):
            await run.handle.signal(InvoiceWorkflow.cancel, _closing())

    assert sorted(folios) == sorted(run.case.invoice_number for run in ours)
    assert all(result.accepted for result in results)
    assert all(state.paused and state.stage is Stage.NOT_DUE for state in states)
    assert not other_state.paused
    with session_scope(engine) as session:
        actions = session.exec(select(SupervisorAction)).all()
    assert {a.invoice_number for a in actions} == set(folios)
    assert {a.reason for a in actions} == {"cliente en reestructuración"}


def _closing() -> CaseClosed:
    return CaseClosed("the test is over", "test")
