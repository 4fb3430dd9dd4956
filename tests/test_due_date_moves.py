"""A moved due date: before-due reminders announce the new date once, never twice."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from receivables.case import CaseClosed, DueDateChanged, PaymentReceived
from receivables.cases import change_due_date, report_payment
from receivables.channels import (
    EarlierAttempt,
    Lookup,
    MessageChannel,
    OutboxChannel,
    OutgoingMessage,
)
from receivables.ledger import ContactLedger
from receivables.messages import format_local_date
from receivables.policy import load_policy_book
from receivables.store import ContactStatus, make_engine
from tests.case_helpers import (
    CaseRun,
    CrashAfterAccepting,
    add_invoice,
    add_sunday_reminder,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

POLICIES = Path(__file__).parents[1] / "policies"
BEFORE_AND_AFTER_DUE = (
    {
        "id": "R-7",
        "offset_days": -7,
        "channel": "email",
        "template": "courtesy-before-due",
    },
    {"id": "R-1", "offset_days": -1, "channel": "email", "template": "due-soon"},
    {"id": "R+1", "offset_days": 1, "channel": "email", "template": "overdue-first"},
)
AMOUNT = 410_000


async def move_due_date(run: CaseRun, to: date, queue: str) -> None:
    """Move the due date as an operator does: in the store, then told to the case."""
    change = DueDateChanged(to, "orden de compra recibida tarde", "exec-01")
    await change_due_date(
        run.client,
        run.engine,
        load_policy_book(POLICIES),
        "test",
        run.case.invoice_number,
        change,
        task_queue=queue,
    )


async def pay_and_finish(env: WorkflowEnvironment, run: CaseRun, at: datetime) -> None:
    """Skip to an instant, pay the whole invoice then, and wait for the case to end."""
    await advance_to(env, at)
    paid = PaymentReceived("T1", AMOUNT, "CLP", at.astimezone(UTC))
    await report_payment(env.client, run.engine, "test", run.case.invoice_number, paid)
    await run.handle.result()


async def test_moved_a_week_later_the_day_before_reminder_announces_the_new_date(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    old_due, new_due = date(year, 5, 24), date(year, 5, 31)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 4, 24),
        due_date=old_due,
        amount_minor=AMOUNT,
    )
    policy = policy_with_steps(*BEFORE_AND_AFTER_DUE[1:])
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 5, 23), time(15, 0)))
        await move_due_date(run, new_due, queue)
        next_step = await run.handle.query(InvoiceWorkflow.next_step)
        await pay_and_finish(env, run, santiago(date(year, 6, 2), time(12, 0)))
        timeline = await run.handle.query(InvoiceWorkflow.timeline)

    moved_key = f"R-1@{new_due}"
    assert next_step is not None
    assert (next_step.step_id, next_step.local_date) == (moved_key, date(year, 5, 30))
    messages = run.outbox()
    assert [m.step_id for m in messages] == ["R-1", moved_key, "R+1"]
    assert format_local_date(old_due, "es-CL") in messages[0].body
    assert format_local_date(new_due, "es-CL") in messages[1].body
    assert format_local_date(old_due, "es-CL") not in messages[1].body
    assert any(
        e.kind == "step_replanned" and e.detail.startswith(moved_key) for e in timeline
    )


async def test_moved_earlier_no_reminder_already_sent_goes_again(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 4, 24),
        due_date=date(year, 5, 31),
        amount_minor=AMOUNT,
    )
    policy = policy_with_steps(*BEFORE_AND_AFTER_DUE)
    async with running_worker(env.client, engine) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 5, 25), time(15, 0)))
        # R-7 went out on the 24th; moved to the 29th, its new day is the 22nd.
        await move_due_date(run, date(year, 5, 29), queue)
        await pay_and_finish(env, run, santiago(date(year, 5, 31), time(12, 0)))
        state = await run.handle.query(InvoiceWorkflow.state)

    messages = run.outbox()
    assert [m.step_id for m in messages] == ["R-7", f"R-1@{year}-05-29", "R+1"]
    assert f"R-7@{year}-05-29" in state.steps_done


async def test_a_retried_send_of_the_reminder_for_the_new_date_sends_it_once(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    new_due = date(year, 5, 31)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 4, 24),
        due_date=date(year, 5, 24),
        amount_minor=AMOUNT,
    )
    crashing = CrashAfterAccepting(OutboxChannel(engine), on_call=2)
    policy = policy_with_steps(BEFORE_AND_AFTER_DUE[1])
    channels: dict[str, MessageChannel] = {"email": crashing}
    async with running_worker(env.client, engine, channels=channels) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await advance_to(env, santiago(date(year, 5, 23), time(15, 0)))
        await move_due_date(run, new_due, queue)
        await pay_and_finish(env, run, santiago(date(year, 6, 1), time(12, 0)))

    assert [m.step_id for m in run.outbox()] == ["R-1", f"R-1@{new_due}"]
    entries = ContactLedger(engine).entries_for("test", invoice.invoice_number)
    assert [(e.step_id, e.status, e.attempts) for e in entries] == [
        ("R-1", ContactStatus.SENT, 1),
        (f"R-1@{new_due}", ContactStatus.SENT, 1),
    ]


async def test_a_reminder_deferred_by_a_contact_rule_follows_the_moved_due_date(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    now = await env.get_current_time()
    reminder = add_sunday_reminder(engine, now)
    sunday = reminder.monday_noon.date() - timedelta(days=1)
    new_due = sunday + timedelta(days=13)
    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(
            env.client,
            engine,
            reminder.invoice,
            reminder.customer,
            reminder.policy,
            queue,
            now,
        )
        # R+1 fell on Sunday and waits for Monday 08:00; the debtor then gets two weeks.
        await advance_to(env, santiago(sunday, time(15, 0)))
        await move_due_date(run, new_due, queue)
        await advance_to(env, reminder.monday_noon)
        sent_early = run.outbox()
        next_step = await run.handle.query(InvoiceWorkflow.next_step)
        await run.handle.signal(
            InvoiceWorkflow.cancel, CaseClosed("the test is over", "test")
        )
        await run.handle.result()

    assert sent_early == []
    assert next_step is not None
    assert (next_step.step_id, next_step.local_date) == (
        "R+1",
        new_due + timedelta(days=1),
    )


class HeldOnTheFirstSend:
    """An outbox whose first message waits for the test, so a fact arrives mid-send."""

    def __init__(self, outbox: OutboxChannel) -> None:
        self.outbox = outbox
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, message: OutgoingMessage) -> str:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(timeout=30)
        return self.outbox.send(message)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        return self.outbox.look_up(attempt)


async def test_moved_earlier_while_its_reminder_is_being_sent_nothing_repeats(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, year: int
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    thursday = date(year, 6, 1) + timedelta(days=(3 - date(year, 6, 1).weekday()) % 7)
    wednesday = thursday - timedelta(days=1)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=thursday - timedelta(days=30),
        due_date=thursday,
        amount_minor=AMOUNT,
    )
    held = HeldOnTheFirstSend(OutboxChannel(engine))
    policy = policy_with_steps(BEFORE_AND_AFTER_DUE[1])
    channels: dict[str, MessageChannel] = {"email": held}
    async with running_worker(env.client, engine, channels=channels) as (_, queue):
        now = await env.get_current_time()
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        skipping = asyncio.create_task(
            advance_to(env, santiago(wednesday, time(9, 30)))
        )
        assert await asyncio.to_thread(held.entered.wait, 30)
        # R-1 for Thursday is with the channel when the date moves to Wednesday.
        await move_due_date(run, wednesday, queue)
        held.release.set()
        await skipping
        await pay_and_finish(env, run, santiago(wednesday, time(15, 0)))

    assert [m.step_id for m in run.outbox()] == ["R-1"]
