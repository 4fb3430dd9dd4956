"""Disputes, promises and task SLAs on the time-skipping server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.client import WorkflowHistory, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from receivables.case import (
    CaseClosed,
    CaseState,
    DisputeCategory,
    DisputeOpened,
    DisputeResolution,
    DisputeResolved,
    PauseCommand,
    PaymentPromise,
    PaymentReceived,
    Stage,
    TaskOutcome,
    TaskOutcomeKind,
)
from receivables.cases import report_payment
from receivables.commitments import disputes_of, promises_of
from receivables.governance import sync_governance
from receivables.ledger import ContactLedger
from receivables.settings import PROJECT_ROOT
from receivables.store import (
    Customer,
    as_utc,
    find_customer,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask
from receivables.workflow_runner import SANDBOXED_RUNNER
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

POST_DUE_STEPS = (
    {"id": "R+1", "offset_days": 1, "channel": "email", "template": "overdue-first"},
    {"id": "R+7", "offset_days": 7, "channel": "email", "template": "overdue-second"},
    {"id": "R+15", "offset_days": 15, "channel": "email", "template": "overdue-second"},
)


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    """A migrated store whose governance knows the shipped executives and supervisors."""
    engine = make_engine(sqlite_url)
    sync_governance(engine, "test", PROJECT_ROOT / "policies" / "governance.yaml")
    return engine


async def pay_in_full(
    env: WorkflowEnvironment, run: CaseRun, at: datetime
) -> CaseState:
    """At an instant, pay the whole balance; then wait for the case to end."""
    await advance_to(env, at)
    balance = await run.handle.query(InvoiceWorkflow.balance)
    payment = PaymentReceived(f"PAY-{at:%m%d}", balance, "CLP", at.astimezone(UTC))
    await report_payment(
        env.client, run.engine, "test", run.case.invoice_number, payment
    )
    return await run.handle.result()


def at_about(stored: datetime | None, expected: datetime) -> bool:
    """A stored instant is the expected one, give or take the test server's milliseconds."""
    return stored is not None and abs(as_utc(stored) - expected) < timedelta(seconds=5)


def tasks_of(engine: Engine, invoice_number: str) -> list[HumanTask]:
    """Every human task opened for an invoice, oldest first."""
    with session_scope(engine) as session:
        statement = (
            select(HumanTask)
            .where(HumanTask.invoice_number == invoice_number)
            .order_by(HumanTask.id)  # type: ignore[arg-type]
        )
        return list(session.exec(statement).all())


async def dispute_scenario(
    env: WorkflowEnvironment, engine: Engine, year: int, pause_mode: str
) -> tuple[CaseRun, CaseState]:
    """900.000 CLP due 04-01, reminded 04-02, 300.000 disputed 04-03, rejected 04-20."""
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=900_000,
    )
    disputes = {"pause": pause_mode, "sla_business_days": 30}
    policy = policy_with_steps(*POST_DUE_STEPS, disputes=disputes)
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 4, 3), time(10, 0)))
        dispute = DisputeOpened(
            "D1", 300_000, DisputeCategory.GOODS_RECEIPT_NOT_REGISTERED, "ejecutiva"
        )
        await run.handle.execute_update(InvoiceWorkflow.open_dispute, dispute)
        await advance_to(env, santiago(date(year, 4, 20), time(10, 0)))
        rejected = DisputeResolved("D1", DisputeResolution.REJECTED, "supervisora")
        await run.handle.execute_update(InvoiceWorkflow.resolve_dispute, rejected)
        final = await pay_in_full(env, run, santiago(date(year, 4, 26), time(12, 0)))
    return run, final


async def test_whole_invoice_dispute_silences_then_resumes_at_the_next_step_shifted(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    run, final = await dispute_scenario(
        time_skipping_env, engine, year, "whole_invoice"
    )

    entries = ContactLedger(engine).entries_for("test", run.case.invoice_number)
    sent = [(e.step_id, e.planned_at.astimezone(UTC)) for e in entries]
    assert sent == [
        ("R+1", santiago(date(year, 4, 2), time(9, 0)).astimezone(UTC)),
        # R+7 was due 04-08; the dispute held the plan from 04-03 10:00 to 04-20 10:00.
        ("R+7", santiago(date(year, 4, 25), time(9, 0)).astimezone(UTC)),
    ]
    assert final.stage is Stage.PAID
    # The dispute's resolution task lost its purpose when the dispute ended.
    assert [(t.kind, t.status) for t in tasks_of(engine, run.case.invoice_number)] == [
        ("resolve_dispute", "cancelled")
    ]
    # The store keeps the dispute for the KPIs: category, owner, when and how it ended.
    year = final.due_date.year
    [dispute] = disputes_of(engine, "test", run.case.invoice_number)
    assert (dispute.dispute_id, dispute.category, dispute.amount_minor) == (
        "D1",
        "goods_receipt_not_registered",
        300_000,
    )
    assert (dispute.opened_by, dispute.owner_id) == ("ejecutiva", "exec-01")
    assert (dispute.status, dispute.resolved_by) == ("rejected", "supervisora")
    assert at_about(dispute.opened_at, santiago(date(year, 4, 3), time(10, 0)))
    assert dispute.resolved_at is not None
    assert at_about(dispute.resolved_at, santiago(date(year, 4, 20), time(10, 0)))


async def test_partial_dispute_keeps_the_cadence_for_the_undisputed_amount(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    run, _ = await dispute_scenario(time_skipping_env, engine, year, "disputed_part")

    messages = {m.step_id: m for m in run.outbox()}
    assert list(messages) == ["R+1", "R+7", "R+15"]
    assert "$900.000" in messages["R+1"].body
    assert "$600.000" in messages["R+7"].body
    assert "$600.000" in messages["R+15"].body


async def test_broken_promise_runs_its_step_once_and_a_kept_one_sends_nothing(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    broken, kept = (
        add_invoice(
            engine,
            invoice_number=unique_number(),
            issue_date=date(year, 3, 2),
            due_date=date(year, 4, 1),
            amount_minor=450_000,
        )
        for _ in range(2)
    )
    policy = policy_with_steps(*POST_DUE_STEPS)
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        runs = [
            await open_case(env.client, engine, invoice, customer, policy, queue, now)
            for invoice, customer in (broken, kept)
        ]
        await advance_to(env, santiago(date(year, 4, 3), time(11, 0)))
        promise = PaymentPromise(450_000, date(year, 4, 30), "ejecutiva")
        for run in runs:
            await run.handle.execute_update(InvoiceWorkflow.record_promise, promise)
        kept_final = await pay_in_full(
            env, runs[1], santiago(date(year, 4, 29), time(12, 0))
        )
        await advance_to(env, santiago(date(year, 5, 1), time(17, 59)))
        before_deadline = tasks_of(engine, runs[0].case.invoice_number)
        await advance_to(env, santiago(date(year, 5, 5), time(12, 0)))
        after_deadline = tasks_of(engine, runs[0].case.invoice_number)
        timeline = await runs[0].handle.query(InvoiceWorkflow.timeline)
        await pay_in_full(env, runs[0], santiago(date(year, 5, 6), time(12, 0)))

    assert before_deadline == []
    assert [t.kind for t in after_deadline] == ["broken_promise"]
    assert sum(e.kind == "promise_broken" for e in timeline) == 1
    assert kept_final.stage is Stage.PAID
    assert [m.step_id for m in runs[1].outbox()] == ["R+1"]
    # Both promises are in the store, each written once, with how and when it ended.
    [broken_row] = promises_of(engine, "test", runs[0].case.invoice_number)
    [kept_row] = promises_of(engine, "test", runs[1].case.invoice_number)
    for row in (broken_row, kept_row):
        assert (row.sequence, row.amount_minor, row.recorded_by) == (
            1,
            450_000,
            "ejecutiva",
        )
        assert row.promised_date == date(year, 4, 30)
        assert at_about(row.recorded_at, santiago(date(year, 4, 3), time(11, 0)))
        # Promised 04-30 plus one day of grace, checked at 18:00.
        assert at_about(row.deadline, santiago(date(year, 5, 1), time(18, 0)))
    assert (broken_row.outcome, broken_row.paid_minor) == ("broken", 0)
    assert broken_row.outcome_at is not None
    assert at_about(broken_row.outcome_at, santiago(date(year, 5, 1), time(18, 0)))
    assert (kept_row.outcome, kept_row.paid_minor) == ("kept", 450_000)
    assert kept_row.outcome_at is not None
    assert at_about(kept_row.outcome_at, santiago(date(year, 4, 29), time(12, 0)))


async def test_a_missed_task_sla_escalates_to_the_supervisor_once(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=700_000,
    )
    call = {"kind": "call_debtor", "role": "executive", "sla_business_days": 2}
    policy = policy_with_steps({"id": "CALL+2", "offset_days": 2, "task": call})
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 4, 20), time(12, 0)))
        state = await run.handle.query(InvoiceWorkflow.state)
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await pay_in_full(env, run, santiago(date(year, 4, 21), time(12, 0)))

    [task] = tasks_of(engine, invoice.invoice_number)
    assert task.kind == "call_debtor" and task.escalation_level == 1
    assert (
        task.status == "cancelled"
    )  # the case ended paid; nobody should call any more
    assert sum(e.kind == "task_escalated" for e in timeline) == 1
    assert state.escalation_level == 1


async def test_no_reachable_contact_asks_a_person_once_and_other_channels_carry_on(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=210_000,
    )
    with session_scope(engine) as session:
        stored: Customer | None = find_customer(session, "test", customer.customer_id)
        assert stored is not None
        stored.phone = None
        session.add(stored)
    policy = policy_with_steps(
        {"id": "S+1", "offset_days": 1, "channel": "sms", "template": "overdue-first"},
        {
            "id": "E+3",
            "offset_days": 3,
            "channel": "email",
            "template": "overdue-first",
        },
        {"id": "S+5", "offset_days": 5, "channel": "sms", "template": "overdue-second"},
    )
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await pay_in_full(env, run, santiago(date(year, 4, 8), time(12, 0)))

    assert [t.kind for t in tasks_of(engine, invoice.invoice_number)] == [
        "verify_contact"
    ]
    assert [m.step_id for m in run.outbox()] == ["E+3"]


def record_writes(history: WorkflowHistory) -> list[str]:
    """The summaries of the case's store writes of promises and disputes, in order."""
    return [
        event.user_metadata.summary.data.decode().strip('"')
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name
        in ("record_promise", "record_dispute")
    ]


async def test_a_case_that_ends_leaves_no_promise_or_dispute_open_in_the_store(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=800_000,
    )
    policy = policy_with_steps(*POST_DUE_STEPS, disputes={"pause": "disputed_part"})
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 4, 3), time(11, 0)))
        first = PaymentPromise(800_000, date(year, 4, 10), "exec-01")
        await run.handle.execute_update(InvoiceWorkflow.record_promise, first)
        await advance_to(env, santiago(date(year, 4, 6), time(11, 0)))
        # The debtor calls again and moves the date: the first promise is replaced.
        second = PaymentPromise(500_000, date(year, 4, 15), "exec-01")
        await run.handle.execute_update(InvoiceWorkflow.record_promise, second)
        dispute = DisputeOpened(
            "D9", 300_000, DisputeCategory.REINVOICING_NEEDED, "exec-01"
        )
        await run.handle.execute_update(InvoiceWorkflow.open_dispute, dispute)
        await advance_to(env, santiago(date(year, 4, 8), time(11, 0)))
        await run.handle.signal(
            InvoiceWorkflow.write_off, CaseClosed("insolvent debtor", "sup-01")
        )
        final = await run.handle.result()
        history = await run.handle.fetch_history()

    assert final.stage is Stage.WRITTEN_OFF
    promises = promises_of(engine, "test", invoice.invoice_number)
    assert [(p.sequence, p.amount_minor, p.outcome) for p in promises] == [
        (1, 800_000, "cancelled"),
        (2, 500_000, "cancelled"),
    ]
    assert at_about(promises[0].outcome_at, santiago(date(year, 4, 6), time(11, 0)))
    assert at_about(promises[1].outcome_at, santiago(date(year, 4, 8), time(11, 0)))
    [stored] = disputes_of(engine, "test", invoice.invoice_number)
    assert (stored.category, stored.status, stored.owner_id) == (
        "reinvoicing_needed",
        "closed",
        "exec-01",
    )
    assert stored.resolution_note == "case written_off while in dispute"
    # One write per fact: each promise opened and ended, the dispute opened and closed.
    writes = record_writes(history)
    assert len(writes) == 6
    assert writes[0] == f"promise 1 open: 800.000 CLP by {date(year, 4, 10)}"
    assert sorted(w.split(":")[0] for w in writes) == [
        "dispute D9 closed",
        "dispute D9 open",
        "promise 1 cancelled",
        "promise 1 open",
        "promise 2 cancelled",
        "promise 2 open",
    ]
    # The writes are deterministic: the history replays on the current code.
    replayer = Replayer(
        workflows=[InvoiceWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOXED_RUNNER,
    )
    await replayer.replay_workflow(history)


async def test_the_same_task_outcome_told_twice_is_applied_once(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=640_000,
    )
    call = {"kind": "call_debtor", "role": "executive", "sla_business_days": 2}
    policy = policy_with_steps({"id": "CALL+1", "offset_days": 1, "task": call})
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 4, 2), time(11, 0)))
        [task] = tasks_of(engine, invoice.invoice_number)
        assert task.id is not None
        promise = PaymentPromise(640_000, date(year, 4, 9), "exec-01")
        outcome = TaskOutcome(
            task.id, TaskOutcomeKind.PAYMENT_PROMISE, "exec-01", promise=promise
        )
        first = await run.handle.execute_update(InvoiceWorkflow.complete_task, outcome)
        again = await run.handle.execute_update(InvoiceWorkflow.complete_task, outcome)
        other = replace(outcome, kind=TaskOutcomeKind.NO_ANSWER, promise=None)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await run.handle.execute_update(InvoiceWorkflow.complete_task, other)
        state = await run.handle.query(InvoiceWorkflow.state)
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await pay_in_full(env, run, santiago(date(year, 4, 3), time(12, 0)))

    assert first == again
    assert "already completed" in str(refused.value.cause)
    assert sum(e.kind == "task_done" for e in timeline) == 1
    assert sum(e.kind == "promise" for e in timeline) == 1
    assert state.promised
    [row] = promises_of(engine, "test", invoice.invoice_number)
    assert (row.task_id, row.outcome, row.paid_minor) == (task.id, "kept", 640_000)


async def test_a_pause_past_the_due_date_drops_the_reminder_that_names_it(
    time_skipping_env: WorkflowEnvironment, engine: Engine, year: int
) -> None:
    env = time_skipping_env
    due = date(year, 5, 31)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 4, 24),
        due_date=due,
        amount_minor=410_000,
    )
    steps = (
        {"id": "R-1", "offset_days": -1, "channel": "email", "template": "due-soon"},
        POST_DUE_STEPS[0],
    )
    policy = policy_with_steps(*steps)
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 5, 25), time(15, 0)))
        # Held eleven days: R-1 ("vence el 31 de mayo") would land on 10 June.
        pause = PauseCommand("sup-01", "revisión", date(year, 6, 5))
        await run.handle.execute_update(InvoiceWorkflow.pause, pause)
        await pay_in_full(env, run, santiago(date(year, 6, 20), time(12, 0)))

    assert [m.step_id for m in run.outbox()] == ["R+1"]
