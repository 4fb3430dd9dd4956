"""The contact gate: rules decided against the committed ledger, one debtor at a time."""

from __future__ import annotations

import threading
from datetime import UTC, date, time, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from receivables.case import CaseClosed
from receivables.contact_gate import GateResult, gate_contact
from receivables.contact_rules import Verdict
from receivables.ledger import ContactKey, ContactLedger, LedgerSnapshot, MessageRecord
from receivables.locations import subdivision_of
from receivables.statements import CoveredByStatement
from receivables.store import (
    ContactAttempt,
    ContactStatus,
    Customer,
    as_utc,
    make_engine,
    session_scope,
)
from tests.case_helpers import (
    add_invoice,
    add_sunday_reminder,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow


def test_two_workers_contacting_one_debtor_at_once_take_turns(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    customer_id = f"C-{unique_number()}"
    folios = [unique_number(), unique_number()]
    # Due on different days, so neither invoice's reminder may ride on the other's statement.
    for day, folio in enumerate(folios, start=1):
        _, customer = add_invoice(
            engine,
            invoice_number=folio,
            issue_date=date(2026, 5, 1),
            due_date=date(2026, 6, day),
            amount_minor=100_000,
            customer_id=customer_id,
        )
    wednesday_ten = santiago(date(2026, 6, 10), time(10, 0)).astimezone(UTC)
    verdicts: list[Verdict] = []

    def contact(folio: str) -> None:
        key = ContactKey("test", folio, "R+1", "email", customer.email or "")
        result = gate_contact(
            engine,
            key,
            customer=customer,
            jurisdiction="cl.consumer",
            policy=("consumer-health-education", 1),
            planned_at=wednesday_ten,
            now=wednesday_ten,
        )
        assert isinstance(result, GateResult)
        verdicts.append(result.decision.verdict)

    workers = [threading.Thread(target=contact, args=(folio,)) for folio in folios]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    # Two written contacts must be two clear days apart (Ley 19.496 art. 37).
    assert sorted(verdicts) == [Verdict.ALLOW, Verdict.DEFER]
    # The KPIs date each decision by the case's clock, not by when the row was written.
    with session_scope(engine) as session:
        decided = session.exec(select(ContactAttempt.at)).all()
    assert [as_utc(at) for at in decided] == [wednesday_ten, wednesday_ten]


def test_an_allowed_text_is_recorded_with_its_attempt_and_a_sent_one_is_left_alone(
    engine: Engine,
) -> None:
    folio = unique_number()
    _, customer = add_invoice(
        engine,
        invoice_number=folio,
        issue_date=date(2026, 5, 1),
        due_date=date(2026, 6, 1),
        amount_minor=100_000,
    )
    key = ContactKey("test", folio, "R+1", "email", customer.email or "")
    wednesday_ten = santiago(date(2026, 6, 10), time(10, 0)).astimezone(UTC)

    def contact(
        text: MessageRecord,
    ) -> GateResult | CoveredByStatement | LedgerSnapshot:
        return gate_contact(
            engine,
            key,
            customer=customer,
            jurisdiction="cl.b2b",
            policy=("preventive-b2b", 1),
            planned_at=wednesday_ten,
            now=wednesday_ten,
            message=text,
        )

    allowed = contact(MessageRecord("ab" * 32))
    assert isinstance(allowed, GateResult) and allowed.entry_id is not None
    ContactLedger(engine).finish(
        allowed.entry_id, ContactStatus.SENT, reason="sent", at=wednesday_ten
    )
    again = contact(MessageRecord("00" * 32))

    assert again == LedgerSnapshot(allowed.entry_id, ContactStatus.SENT, 1, None)
    [entry] = ContactLedger(engine).entries_for("test", folio)
    assert (entry.status, entry.message_sha256) == (ContactStatus.SENT, "ab" * 32)
    with session_scope(engine) as session:
        lines = session.exec(
            select(ContactAttempt.outcome).where(
                ContactAttempt.ledger_entry_id == allowed.entry_id
            )
        ).all()
    assert sorted(lines) == ["allow", "sent"]


def test_regions_are_read_by_name_or_code() -> None:
    assert subdivision_of("Metropolitana") == "RM"
    assert subdivision_of("Ñuble") == "NB"
    assert subdivision_of("ma") == "MA"
    assert subdivision_of("Atlantis") is None


async def test_a_sunday_reminder_is_deferred_to_monday_and_the_ledger_says_why(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    now = await env.get_current_time()
    reminder = add_sunday_reminder(engine, now)
    invoice, monday_noon = reminder.invoice, reminder.monday_noon
    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(
            env.client, engine, invoice, reminder.customer, reminder.policy, queue, now
        )
        await env.sleep(monday_noon - await env.get_current_time())
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await run.handle.signal(InvoiceWorkflow.cancel, _closing())
        # Let the case end while its worker runs: an orphan with a pending task would stall
        # the shared time-skipping server for every later test.
        await run.handle.result()

    [entry] = ContactLedger(engine).entries_for("test", invoice.invoice_number)
    assert entry.status == ContactStatus.SENT
    with session_scope(engine) as session:
        attempts = session.exec(
            select(ContactAttempt).where(ContactAttempt.ledger_entry_id == entry.id)
        ).all()
    deferred = [a for a in attempts if a.outcome == "defer"]
    assert len(deferred) == 1 and "Sunday" in (deferred[0].detail or "")
    kinds = [e.kind for e in timeline]
    assert kinds.index("reminder_deferred") < kinds.index("reminder_sent")
    sent_at = next(e.at for e in timeline if e.kind == "reminder_sent")
    monday_eight = santiago(monday_noon.date(), time(8, 0))
    assert timedelta(0) <= sent_at - monday_eight < timedelta(minutes=1)


def _closing() -> CaseClosed:
    return CaseClosed("the test is over", "test")


async def test_a_served_lawsuit_stops_the_case_and_skips_its_remaining_steps(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    now = await env.get_current_time()
    monday = (now + timedelta(days=30)).date()
    monday += timedelta(days=(7 - monday.weekday()) % 7)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=monday - timedelta(days=31),
        due_date=monday - timedelta(days=1),
        amount_minor=85_000,
    )
    with session_scope(engine) as session:
        stored = session.get(Customer, customer.id)
        assert stored is not None
        stored.lawsuit_served_on = monday - timedelta(days=10)
        session.add(stored)
    steps = [
        {
            "id": "R+1",
            "offset_days": 1,
            "channel": "email",
            "template": "overdue-first",
        },
        {"id": "R+8", "offset_days": 8, "channel": "sms", "template": "overdue-second"},
    ]
    policy = policy_with_steps(*steps, jurisdiction="cl.consumer")
    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        await env.sleep(santiago(monday, time(12, 0)) - await env.get_current_time())
        state = await run.handle.query(InvoiceWorkflow.state)
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await run.handle.signal(InvoiceWorkflow.cancel, _closing())
        await run.handle.result()

    assert state.next_step is None
    assert "collection stopped" in state.waiting_for
    kinds = [e.kind for e in timeline]
    assert "reminder_stopped" in kinds and "collection_stopped" in kinds
    skipped = [e.detail for e in timeline if e.kind == "step_skipped"]
    assert len(skipped) == 1 and skipped[0].startswith("R+8: collection stopped")
    assert "CL-C-10" in skipped[0]
    [entry] = ContactLedger(engine).entries_for("test", invoice.invoice_number)
    assert entry.status == ContactStatus.CANCELLED
    assert entry.reason is not None and "CL-C-10 lawsuit served" in entry.reason
