"""Helpers for workflow tests: a store with one invoice, a running worker, a case started."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from receivables.case import InvoiceCase
from receivables.cases import (
    StoredMoveResult,
    case_from_store,
    case_handle,
    commit_money_movement,
    start_case,
)
from receivables.channels import (
    EarlierAttempt,
    Lookup,
    MessageChannel,
    OutboxChannel,
    OutgoingMessage,
)
from receivables.policy import Policy
from receivables.settings import Settings
from receivables.store import (
    Customer,
    Invoice,
    OutboxMessage,
    PaymentKind,
    find_customer,
    session_scope,
)
from worker import build_worker

SANTIAGO = "America/Santiago"


def santiago(day: date, clock: time) -> datetime:
    """An aware instant from a Santiago wall-clock time."""
    return datetime.combine(day, clock, tzinfo=ZoneInfo(SANTIAGO))


def policy_with_steps(
    *steps: dict[str, object], name: str = "test-policy", **rules: object
) -> Policy:
    """A small policy for one scenario, validated like a YAML file would be."""
    return Policy.model_validate(
        {
            "name": name,
            "version": 1,
            "description": "scenario policy",
            "send_time": "09:00",
            "time_zone": SANTIAGO,
            "steps": list(steps),
            **rules,
        }
    )


def commands_use_store(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    data_dir: Path,
    tenant: str = "test",
) -> None:
    """Point starter.py's commands at this store and tenant; Temporal a closed loopback port.

    A command then records what it must in the store and reports the cases it could not
    tell, which is what the store-side tests of commands check.
    """
    monkeypatch.setenv("DUNNING_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DUNNING_DATABASE_URL", database_url)
    monkeypatch.setenv("DUNNING_TENANT", tenant)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")


def add_invoice(
    engine: Engine,
    *,
    invoice_number: str,
    issue_date: date,
    due_date: date,
    amount_minor: int,
    currency: str = "CLP",
    customer_name: str = "Comercial O'Higgins & Cía. Ltda.",
    customer_id: str | None = None,
    tenant: str = "test",
    time_zone: str = SANTIAGO,
) -> tuple[Invoice, Customer]:
    """Commit one open invoice and its customer (created unless it exists), as an import would."""
    customer_id = customer_id or f"C-{invoice_number}"
    with session_scope(engine) as session:
        customer = find_customer(session, tenant, customer_id) or Customer(
            tenant=tenant,
            customer_id=customer_id,
            name=customer_name,
            email=f"pagos-{customer_id.lower()}@customers.invalid",
            phone="+56911112222",
            time_zone=time_zone,
        )
        invoice = Invoice(
            tenant=tenant,
            invoice_number=invoice_number,
            customer_id=customer.customer_id,
            issue_date=issue_date,
            due_date=due_date,
            amount_minor=amount_minor,
            currency=currency,
            balance_minor=amount_minor,
        )
        session.add(customer)
        session.add(invoice)
    return invoice, customer


async def advance_to(env: WorkflowEnvironment, instant: datetime) -> None:
    """Skip the time-skipping server's clock to an instant, firing every timer on the way."""
    delta = instant - await env.get_current_time()
    assert delta > timedelta(0), f"{instant} is already past"
    await env.sleep(delta)


@dataclass(frozen=True)
class StepDueNow:
    """Where and when a policy step goes so that a case opened now acts on it at once."""

    time_zone: str
    today: date  # the step's calendar date: anchor it here (due date + offset)
    send_time: str  # the policy's send time, "HH:MM"


def step_due_just_now(now: datetime) -> StepDueNow:
    """A step placed today at the minute ``now`` falls in: due less than a minute ago.

    A case acts at once on a step due less than ``LATE_TOLERANCE`` ago, on any day and at
    any hour. A step found later than that waits for usual contact hours (Monday to
    Saturday, 08:00 to 20:00 local), which no zone has on a Sunday from 08:00 to 18:00 UTC,
    so tests that need a contact now must not rely on one.
    """
    # UTC-4 all year, as Santiago in winter: no daylight-saving jump can move the step,
    # and views that name the debtor's zone cannot be mistaken for plain UTC.
    zone = "Etc/GMT+4"
    minute = now.astimezone(ZoneInfo(zone)).replace(second=0, microsecond=0)
    return StepDueNow(zone, minute.date(), f"{minute:%H:%M}")


def unique_number() -> str:
    """A fresh invoice number, so cases of different tests never share a workflow id."""
    return uuid.uuid4().hex[:10]


@dataclass
class CaseRun:
    """One started case and what a test needs to drive and inspect it."""

    client: Client
    engine: Engine
    case: InvoiceCase
    handle: WorkflowHandle

    def outbox(self) -> list[OutboxMessage]:
        """Messages the outbox holds for this invoice, oldest first."""
        with session_scope(self.engine) as session:
            statement = (
                select(OutboxMessage)
                .where(OutboxMessage.invoice_number == self.case.invoice_number)
                .order_by(OutboxMessage.id)
            )
            return list(session.exec(statement).all())


@asynccontextmanager
async def running_worker(
    client: Client,
    engine: Engine,
    *,
    channels: dict[str, MessageChannel] | None = None,
) -> AsyncIterator[tuple[Worker, str]]:
    """A worker on a task queue of its own, stopped when the block ends."""
    task_queue = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        templates_dir=Path(__file__).parents[1] / "templates" / "messages",
        # Workflow code that is not deterministic fails here rather than in production.
        workflow_sandbox=True,
    )
    worker = build_worker(
        client, engine, settings, task_queue=task_queue, channels=channels
    )
    async with worker:
        yield worker, task_queue


async def open_case(
    client: Client,
    engine: Engine,
    invoice: Invoice,
    customer: Customer,
    policy: Policy,
    task_queue: str,
    now: datetime,
) -> CaseRun:
    """Start the case of a committed invoice and return its run."""
    case = case_from_store(invoice, customer, policy, segment="test")
    result = await start_case(client, case, task_queue=task_queue, now=now)
    assert result.started
    return CaseRun(
        client, engine, case, case_handle(client, case.tenant, case.invoice_number)
    )


@dataclass(frozen=True)
class SundayReminder:
    """An invoice whose one e-mail reminder falls on a Sunday, and when it goes out."""

    invoice: Invoice
    customer: Customer
    policy: Policy
    monday_noon: datetime


def add_sunday_reminder(engine: Engine, now: datetime) -> SundayReminder:
    """Commit an invoice whose R+1 e-mail, under Chilean consumer rules, falls on a Sunday.

    The contact rules defer it to Monday 08:00 in Santiago, where it is sent.
    """
    sunday = (now + timedelta(days=30)).date()
    sunday += timedelta(days=(6 - sunday.weekday()) % 7)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=sunday - timedelta(days=31),
        due_date=sunday - timedelta(days=1),
        amount_minor=85_000,
    )
    step = {
        "id": "R+1",
        "offset_days": 1,
        "channel": "email",
        "template": "overdue-first",
    }
    policy = policy_with_steps(step, jurisdiction="cl.consumer")
    monday_noon = santiago(sunday + timedelta(days=1), time(12, 0))
    return SundayReminder(invoice, customer, policy, monday_noon)


# -- money movements on one invoice, straight to the store ---------------------------------

MOVED_AT = datetime(2026, 4, 2, 15, 0, tzinfo=UTC)
FOLIO = "000123"


def open_invoice(
    engine: Engine,
    amount_minor: int = 900_000,
    *,
    invoice_number: str = FOLIO,
    tenant: str = "test",
) -> None:
    """Commit an open CLP invoice, due 2026-03-31, for the given amount."""
    add_invoice(
        engine,
        invoice_number=invoice_number,
        tenant=tenant,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=amount_minor,
    )


def move(
    engine: Engine,
    reference: str,
    amount_minor: int,
    *,
    kind: PaymentKind = PaymentKind.PAYMENT,
    currency: str = "CLP",
    invoice_number: str = FOLIO,
    tenant: str = "test",
) -> StoredMoveResult:
    """Commit one payment or credit to the invoice, as the store decides it."""
    return commit_money_movement(
        engine,
        tenant,
        invoice_number,
        kind=kind,
        reference=reference,
        amount_minor=amount_minor,
        currency=currency,
        at=MOVED_AT,
    )


class CrashAfterAccepting:
    """An outbox that takes the n-th message, then the worker 'dies' before recording it.

    The activity fails after the channel accepted the message, as it would if the worker
    process were lost at that instant; its retry must find the message, not send it again.
    """

    def __init__(self, outbox: OutboxChannel, *, on_call: int = 1) -> None:
        self.outbox = outbox
        self.on_call = on_call
        self.calls = 0

    def send(self, message: OutgoingMessage) -> str:
        self.calls += 1
        message_id = self.outbox.send(message)
        if self.calls == self.on_call:
            raise RuntimeError("worker lost after the channel accepted the message")
        return message_id

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        return self.outbox.look_up(attempt)
