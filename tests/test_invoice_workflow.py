"""InvoiceWorkflow on the time-skipping server: reminders, payments, credits, re-planning."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from receivables.case import (
    CaseState,
    CreditApplied,
    DueDateChanged,
    PaymentReceived,
    Stage,
)
from receivables.cases import CaseCommandRefused, report_credit, report_payment
from receivables.channels import MessageChannel, OutboxChannel
from receivables.ledger import ContactLedger
from receivables.store import ContactStatus, make_engine
from tests.case_helpers import (
    CrashAfterAccepting,
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

DUE_DAY_STEPS = (
    {"id": "R0", "offset_days": 0, "channel": "email", "template": "due-soon"},
    {"id": "R+1", "offset_days": 1, "channel": "email", "template": "overdue-first"},
    {"id": "R+10", "offset_days": 10, "channel": "sms", "template": "overdue-second"},
)


def payment(reference: str, amount: int, at: datetime) -> PaymentReceived:
    """A CLP payment received at an instant."""
    return PaymentReceived(reference, amount, "CLP", at.astimezone(UTC))


async def test_payment_just_before_the_due_day_reminder_cancels_it(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 1),
        due_date=date(year, 3, 31),
        amount_minor=500_000,
    )
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(
            env.client,
            engine,
            invoice,
            customer,
            policy_with_steps(*DUE_DAY_STEPS),
            queue,
            now,
        )
        paid_at = santiago(date(year, 3, 30), time(23, 50))
        await advance_to(env, paid_at)
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("P1", 500_000, paid_at),
        )
        final: CaseState = await run.handle.result()

    assert final.stage is Stage.PAID
    assert final.balance_minor == 0
    assert run.outbox() == []
    assert "R0" not in final.steps_done


async def test_credit_note_to_zero_closes_by_credit_and_stops_reminders(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 1),
        due_date=date(year, 3, 31),
        amount_minor=250_000,
    )
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(
            env.client,
            engine,
            invoice,
            customer,
            policy_with_steps(*DUE_DAY_STEPS),
            queue,
            now,
        )
        credited_at = santiago(date(year, 4, 3), time(11, 0))
        await advance_to(env, credited_at)
        credit = CreditApplied(
            "NC-61-110616", 250_000, "CLP", credited_at.astimezone(UTC)
        )
        await report_credit(env.client, engine, "test", invoice.invoice_number, credit)
        final: CaseState = await run.handle.result()

    assert final.stage is Stage.CLOSED_BY_CREDIT
    assert [m.step_id for m in run.outbox()] == ["R0", "R+1"]
    assert "R+10" not in final.steps_done


async def test_instalments_update_the_amount_asked_and_close_the_case(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 1),
        due_date=date(year, 3, 31),
        amount_minor=110_000,
    )
    policy = policy_with_steps(DUE_DAY_STEPS[1], DUE_DAY_STEPS[2])
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        first = santiago(date(year, 3, 20), time(10, 0))
        await advance_to(env, first)
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("T1", 50_000, first),
        )
        zero = santiago(date(year, 4, 2), time(10, 0))
        await advance_to(env, zero)
        with pytest.raises(CaseCommandRefused, match="above zero"):
            await report_payment(
                env.client,
                engine,
                "test",
                invoice.invoice_number,
                payment("T0", 0, zero),
            )
        # Straight to the case (a bank feed, say), a zero payment is recorded and ignored.
        await run.handle.signal(InvoiceWorkflow.record_payment, payment("T0", 0, zero))
        assert await run.handle.query(InvoiceWorkflow.balance) == 60_000
        second = santiago(date(year, 4, 5), time(10, 0))
        await advance_to(env, second)
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("T2", 60_000, second),
        )
        final: CaseState = await run.handle.result()
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        # The bank file read again after the case ended: a repeat, told to nobody.
        again = await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("T2", 60_000, second),
        )

    assert (again.applied, again.balance_minor, again.status) == (False, 0, "paid")
    messages = run.outbox()
    assert [m.step_id for m in messages] == ["R+1"]
    assert "$60.000" in messages[0].body
    assert "$110.000" not in (messages[0].subject or "")
    assert final.stage is Stage.PAID and final.paid_minor == 110_000
    assert any(e.kind == "ignored" and "T0" in e.detail for e in timeline)


async def test_retry_after_the_channel_accepted_sends_exactly_one_message(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 1),
        due_date=date(year, 3, 31),
        amount_minor=75_000,
    )
    crashing = CrashAfterAccepting(OutboxChannel(engine))
    channels: dict[str, MessageChannel] = {"email": crashing, "sms": crashing}
    policy = policy_with_steps(DUE_DAY_STEPS[0])
    async with running_worker(env.client, engine, channels=channels) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        paid_at = santiago(date(year, 4, 2), time(12, 0))
        await advance_to(env, paid_at)
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("P", 75_000, paid_at),
        )
        await run.handle.result()

    assert len(run.outbox()) == 1
    entries = ContactLedger(engine).entries_for("test", invoice.invoice_number)
    # One attempt reached the channel; the retry only asked the channel and recorded it.
    assert [(e.step_id, e.status, e.attempts) for e in entries] == [
        ("R0", ContactStatus.SENT, 1)
    ]


async def test_moving_the_due_date_moves_the_post_due_reminder(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 4, 24),
        due_date=date(year, 5, 24),
        amount_minor=320_000,
    )
    policy = policy_with_steps(DUE_DAY_STEPS[1])
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 5, 20), time(15, 0)))
        await run.handle.signal(
            InvoiceWorkflow.change_due_date,
            DueDateChanged(
                date(year, 5, 31), "purchase order arrived late", "executive"
            ),
        )
        next_step = await run.handle.query(InvoiceWorkflow.next_step)
        paid_at = santiago(date(year, 6, 2), time(12, 0))
        await advance_to(env, paid_at)
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("P", 320_000, paid_at),
        )
        await run.handle.result()

    assert next_step is not None and next_step.local_date == date(year, 6, 1)
    entries = ContactLedger(engine).entries_for("test", invoice.invoice_number)
    sent_days = [e.planned_at.astimezone(UTC) for e in entries]
    assert sent_days == [santiago(date(year, 6, 1), time(9, 0)).astimezone(UTC)]


async def test_a_case_opened_long_overdue_gets_its_latest_step_once_at_a_decent_hour(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    now = await env.get_current_time()
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=(now - timedelta(days=120)).date(),
        due_date=(now - timedelta(days=90)).date(),
        amount_minor=640_000,
    )
    policy = policy_with_steps(*DUE_DAY_STEPS)
    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, now + timedelta(days=2))
        await report_payment(
            env.client,
            engine,
            "test",
            invoice.invoice_number,
            payment("LATE", 640_000, now + timedelta(days=2)),
        )
        await run.handle.result()
        timeline = await run.handle.query(InvoiceWorkflow.timeline)

    assert [m.step_id for m in run.outbox()] == ["R+10"]
    sent_at = next(e.at for e in timeline if e.kind == "reminder_sent")
    local = sent_at.astimezone(ZoneInfo("America/Santiago"))
    assert local.weekday() < 6 and 8 <= local.hour < 20
