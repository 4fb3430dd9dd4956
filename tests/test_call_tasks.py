"""Calls and visits pass the contact gate before a person is asked to make them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, time, timedelta

import holidays
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.people import PeopleActivities
from receivables.case import (
    CallTaskOffer,
    CallTaskRequest,
    CallTaskStatus,
    CaseClosed,
    GovernanceLevel,
    TaskOutcome,
    TaskOutcomeKind,
    TaskRequest,
)
from receivables.governance import sync_governance
from receivables.policy import Policy
from receivables.settings import PROJECT_ROOT
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    as_utc,
    session_scope,
)
from receivables.tasks import HumanTask, complete_task
from tests.case_helpers import (
    CaseRun,
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow


@pytest.fixture
def staffed(engine: Engine) -> Engine:
    """The store with the shipped executives, so call tasks have someone to go to."""
    sync_governance(engine, "test", PROJECT_ROOT / "policies" / "governance.yaml")
    return engine


def quiet_wednesday(year: int) -> date:
    """A Wednesday from late May with no Chilean holiday, in any region, for nine days."""
    national = holidays.country_holidays("CL", years=year)
    closed = set(national)
    for region in national.subdivisions:
        closed |= set(holidays.country_holidays("CL", subdiv=region, years=year))
    day = date(year, 5, 26)
    while day.weekday() != 2 or any(
        day + timedelta(days=n) in closed for n in range(9)
    ):
        day += timedelta(days=1)
    return day


def call_policy(name: str, offset_days: int) -> Policy:
    call = {"kind": "call_debtor", "role": "executive", "sla_business_days": 2}
    return policy_with_steps(
        {"id": f"CALL+{offset_days}", "offset_days": offset_days, "task": call},
        name=name,
        jurisdiction="cl.consumer",
    )


def call_tasks(engine: Engine, folios: list[str]) -> list[HumanTask]:
    with session_scope(engine) as session:
        statement = (
            select(HumanTask)
            .where(col(HumanTask.invoice_number).in_(folios))
            .order_by(col(HumanTask.opened_at), col(HumanTask.id))
        )
        return list(session.exec(statement).all())


def call_ledger(engine: Engine, folios: list[str]) -> list[ContactLedgerEntry]:
    with session_scope(engine) as session:
        statement = select(ContactLedgerEntry).where(
            col(ContactLedgerEntry.invoice_number).in_(folios),
            ContactLedgerEntry.channel == "call",
        )
        return list(session.exec(statement).all())


def deferral_traces(engine: Engine, folios: list[str]) -> list[str]:
    with session_scope(engine) as session:
        statement = (
            select(ContactAttempt.detail)
            .join(ContactLedgerEntry)
            .where(
                col(ContactLedgerEntry.invoice_number).in_(folios),
                ContactAttempt.outcome == "defer",
            )
        )
        return [detail or "" for detail in session.exec(statement).all()]


async def test_one_call_a_week_across_a_debtors_clinic_and_school_invoices(
    time_skipping_env: WorkflowEnvironment, staffed: Engine, year: int
) -> None:
    # The issue's case: one collector; a debtor with three clinic invoices and one school
    # invoice, each policy calling in the same week. Ley 21.320 allows one call a week.
    env, engine = time_skipping_env, staffed
    wednesday = quiet_wednesday(year)
    customer_id = f"C-{unique_number()}"
    clinic, school = call_policy("clinic", 2), call_policy("school", 4)
    debts = []
    for policy in (clinic, clinic, clinic, school):
        invoice, customer = add_invoice(
            engine,
            invoice_number=unique_number(),
            issue_date=wednesday - timedelta(days=32),
            due_date=wednesday - timedelta(days=2),
            amount_minor=90_000,
            customer_id=customer_id,
        )
        debts.append((invoice, customer, policy))
    with session_scope(engine) as session:
        debtor = session.exec(
            select(Customer).where(Customer.customer_id == customer_id)
        ).one()
        debtor.customer_type = "health"
        session.add(debtor)
    folios = [invoice.invoice_number for invoice, _, _ in debts]
    made_at = santiago(wednesday, time(12, 0))

    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        runs: list[CaseRun] = [
            await open_case(env.client, engine, invoice, customer, policy, queue, now)
            for invoice, customer, policy in debts
        ]
        await advance_to(env, made_at)
        [first] = call_tasks(engine, folios)
        # The executive calls the same day; nobody answers, and the call still counts.
        outcome = TaskOutcome(
            first.id or 0, TaskOutcomeKind.NO_ANSWER, first.assignee_id
        )
        run = next(r for r in runs if r.case.invoice_number == first.invoice_number)
        await run.handle.execute_update(InvoiceWorkflow.complete_task, outcome)
        complete_task(engine, outcome.task_id, first.assignee_id, outcome, made_at)

        await advance_to(env, made_at + timedelta(days=7) - timedelta(hours=1))
        offered_within_the_week = call_tasks(engine, folios)
        await advance_to(env, made_at + timedelta(days=7, hours=1))
        offered_after_the_week = call_tasks(engine, folios)
        timelines = [await r.handle.query(InvoiceWorkflow.timeline) for r in runs]
        for run in runs:
            await run.handle.signal(InvoiceWorkflow.cancel, CaseClosed("end", "test"))
            await run.handle.result()

    assert [t.id for t in offered_within_the_week] == [first.id]
    assert len(offered_after_the_week) == 2
    second = offered_after_the_week[1]
    assert as_utc(second.opened_at) - made_at.astimezone(UTC) >= timedelta(days=7)
    # Every call step that was held back says which rule held it: the weekly call cap.
    traces = deferral_traces(engine, folios)
    assert len(traces) >= 3
    assert all("CL-C-03" in trace for trace in traces)
    deferred_steps = [e for e in timelines for e in e if e.kind == "call_deferred"]
    assert deferred_steps and all("CL-C-03" in e.detail for e in deferred_steps)
    # The call made is a contact in the ledger, at the instant it was made.
    entries = {e.invoice_number: e for e in call_ledger(engine, folios)}
    made = entries[first.invoice_number]
    assert made.status == ContactStatus.SENT
    assert made.decided_at is not None and as_utc(made.decided_at) == made_at
    # The second task was cancelled with its case before anyone called: it counts no more.
    assert entries[second.invoice_number].status == ContactStatus.CANCELLED


def offer(engine: Engine, folio: str, jurisdiction: str | None) -> CallTaskOffer:
    """Run offer_call_task as a worker would, on a Wednesday at 10:00 in Santiago."""
    at = santiago(date(2026, 6, 10), time(10, 0)).astimezone(UTC)
    task = TaskRequest(
        tenant="test",
        invoice_number=folio,
        workflow_id=f"invoice/test/{folio}",
        step_id="CALL+2",
        kind="call_debtor",
        role=GovernanceLevel.EXECUTIVE,
        reason="policy step CALL+2",
        script_template=None,
        sla_business_days=2,
        opened_at=at,
        time_zone="America/Santiago",
    )
    request = CallTaskRequest(task, "call", "clinic", 1, at, jurisdiction)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        activity_type="offer_call_task",
        current_attempt_scheduled_time=at,
    )
    return environment.run(PeopleActivities(engine).offer_call_task, request)


def test_a_sued_debtor_gets_no_call_task_and_the_ledger_names_the_rule(
    staffed: Engine,
) -> None:
    sued, _ = add_invoice(
        staffed,
        invoice_number=unique_number(),
        issue_date=date(2026, 5, 1),
        due_date=date(2026, 6, 8),
        amount_minor=90_000,
    )
    with session_scope(staffed) as session:
        debtor = session.exec(
            select(Customer).where(Customer.customer_id == sued.customer_id)
        ).one()
        debtor.lawsuit_served_on = date(2026, 6, 1)
        session.add(debtor)
    free, _ = add_invoice(
        staffed,
        invoice_number=unique_number(),
        issue_date=date(2026, 5, 1),
        due_date=date(2026, 6, 8),
        amount_minor=90_000,
    )

    stopped = offer(staffed, sued.invoice_number, "cl.consumer")
    # With no profile, nothing decides, but the call is still a contact in the ledger.
    offered = offer(staffed, free.invoice_number, None)

    assert stopped.status is CallTaskStatus.STOPPED and stopped.task is None
    assert "CL-C-10 lawsuit served" in stopped.trace
    assert call_tasks(staffed, [sued.invoice_number]) == []
    [denied] = call_ledger(staffed, [sued.invoice_number])
    assert denied.status == ContactStatus.CANCELLED
    assert denied.reason is not None and "CL-C-10" in denied.reason
    assert offered.status is CallTaskStatus.OFFERED and offered.task is not None
    [task] = call_tasks(staffed, [free.invoice_number])
    assert task.id == offered.task.task_id
    [pending] = call_ledger(staffed, [free.invoice_number])
    assert pending.status == ContactStatus.PENDING
