"""Consolidated statements and stop facts in the send path, on the real store."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.sending import ReminderSender
from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import OutboxChannel
from receivables.contact_gate import GateResult, gate_contact
from receivables.contact_rules import Verdict
from receivables.jurisdictions import load_profile
from receivables.ledger import ContactKey
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    Invoice,
    OutboxMessage,
    find_customer,
    find_invoice,
    session_scope,
)
from tests.case_helpers import add_invoice, santiago, unique_number

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "messages"
POLICY = ("consumer-health-education", 1)
DUE = date(2026, 6, 1)
# A Wednesday morning, a working day in every Chilean region.
WEDNESDAY_TEN = santiago(date(2026, 6, 10), time(10, 0)).astimezone(UTC)
BULLETIN_WORDS = ("dicom", "boletín", "equifax", "credit bureau", "credit report")


def debtor_with_invoices(engine: Engine, amounts: list[int]) -> tuple[list[str], str]:
    """One consumer owing several invoices due the same day, under the same policy."""
    customer_id = f"C-{unique_number()}"
    folios = []
    for amount in amounts:
        folio = unique_number()
        add_invoice(
            engine,
            invoice_number=folio,
            issue_date=date(2026, 5, 1),
            due_date=DUE,
            amount_minor=amount,
            customer_id=customer_id,
        )
        folios.append(folio)
    with session_scope(engine) as session:
        for invoice in session.exec(
            select(Invoice).where(Invoice.customer_id == customer_id)
        ):
            invoice.policy_name, invoice.policy_version = POLICY
            session.add(invoice)
        customer = find_customer(session, "test", customer_id)
        assert customer is not None
        customer.customer_type = "health"
        session.add(customer)
    return folios, customer_id


def reminder(folio: str, **changes: object) -> SendReminderRequest:
    request = SendReminderRequest(
        tenant="test",
        invoice_number=folio,
        step_id="R+8",
        channel="email",
        template="overdue-second",
        fallback_channels=(),
        policy_name=POLICY[0],
        policy_version=POLICY[1],
        planned_at=WEDNESDAY_TEN,
        language="es-CL",
        jurisdiction="cl.consumer",
    )
    return dataclasses.replace(request, **changes)


def send(engine: Engine, request: SendReminderRequest, at: datetime) -> SendOutcome:
    """Run send_reminder as a worker would, scheduled at ``at``."""
    outbox = OutboxChannel(engine)
    sender = ReminderSender(engine, {"email": outbox, "sms": outbox}, TEMPLATES_DIR)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        activity_type="send_reminder",
        current_attempt_scheduled_time=at,
    )
    return environment.run(sender.send_reminder, request)


def ledger_of(engine: Engine, folio: str) -> list[ContactLedgerEntry]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(ContactLedgerEntry).where(
                    ContactLedgerEntry.invoice_number == folio
                )
            )
        )


def outbox(engine: Engine) -> list[OutboxMessage]:
    with session_scope(engine) as session:
        return list(session.exec(select(OutboxMessage)))


def test_clinic_and_school_invoices_due_together_get_one_statement_and_one_call_a_week(
    engine: Engine,
) -> None:
    # The issue's case: one collector; three clinic invoices and one school invoice.
    folios, customer_id = debtor_with_invoices(
        engine, [120_000, 45_500, 80_000, 310_000]
    )
    outcomes: dict[str, SendOutcome] = {}

    def remind(folio: str) -> None:
        outcomes[folio] = send(engine, reminder(folio), WEDNESDAY_TEN)

    workers = [threading.Thread(target=remind, args=(folio,)) for folio in folios]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    sent = [f for f, o in outcomes.items() if o.status is SendStatus.SENT]
    assert len(sent) == 1
    messages = outbox(engine)
    assert len(messages) == 1
    statement = messages[0]
    for folio in folios:
        assert folio in statement.body
    for amount in ("$120.000", "$45.500", "$80.000", "$310.000", "$555.500"):
        assert amount in statement.body
    for text in (statement.subject, statement.body, statement.html_body):
        assert text is not None
        assert not any(word in text.lower() for word in BULLETIN_WORDS)

    # Workers that met the statement in flight look again later and learn they are covered.
    later = WEDNESDAY_TEN + timedelta(minutes=20)
    for folio in folios:
        if folio in sent:
            continue
        outcome = outcomes[folio]
        if outcome.status is SendStatus.DEFERRED:
            outcome = send(engine, reminder(folio), later)
        assert outcome.status is SendStatus.CONSOLIDATED
        assert f"statement of {sent[0]} R+8" in outcome.reason
        (entry,) = ledger_of(engine, folio)
        assert entry.status == ContactStatus.CONSOLIDATED
        assert entry.consolidated_into_id == ledger_of(engine, sent[0])[0].id
    assert len(outbox(engine)) == 1

    # The statement counts once: a second written contact is still allowed that week...
    profile = load_profile("cl.consumer")
    assert profile.consolidate_written
    # ...and calls about any of the four debts: one a week in total.
    verdicts = [call(engine, folio, customer_id, later) for folio in folios]
    assert verdicts.count(Verdict.ALLOW) == 1
    assert verdicts.count(Verdict.DEFER) == 3


def call(engine: Engine, folio: str, customer_id: str, at: datetime) -> Verdict:
    with session_scope(engine) as session:
        customer = find_customer(session, "test", customer_id)
    assert customer is not None
    result = gate_contact(
        engine,
        ContactKey("test", folio, "call-1", "call", customer.phone or ""),
        customer=customer,
        jurisdiction="cl.consumer",
        policy=POLICY,
        planned_at=at,
        now=at,
    )
    assert isinstance(result, GateResult)
    if result.decision.verdict is Verdict.DEFER:
        assert result.decision.at is not None
        assert result.decision.at >= at + timedelta(days=7)
        assert "CL-C-03" in result.decision.reason
    return result.decision.verdict


def test_a_statement_leaves_out_a_ceded_invoice_and_a_cash_one(engine: Engine) -> None:
    # Ley 19.983: a ceded invoice is the factor's to collect; FmaPago 1 owes nothing.
    folios, _ = debtor_with_invoices(engine, [100_000, 200_000, 300_000, 400_000])
    with session_scope(engine) as session:
        ceded = find_invoice(session, "test", folios[1])
        assert ceded is not None
        ceded.ceded_on, ceded.ceded_to = date(2026, 6, 5), "Factor SpA"
        cash = find_invoice(session, "test", folios[2])
        assert cash is not None
        cash.payment_form = 1
        session.add_all([ceded, cash])

    first = send(engine, reminder(folios[0], jurisdiction="cl.b2b"), WEDNESDAY_TEN)

    assert first.status is SendStatus.SENT
    (message,) = outbox(engine)
    assert folios[0] in message.body and folios[3] in message.body
    assert folios[1] not in message.body and folios[2] not in message.body
    assert ledger_of(engine, folios[1]) == ledger_of(engine, folios[2]) == []
    stopped = send(engine, reminder(folios[1], jurisdiction="cl.b2b"), WEDNESDAY_TEN)
    assert stopped.status is SendStatus.STOPPED
    assert "CL-B-13 invoice ceded" in stopped.reason


def test_a_served_lawsuit_stops_every_contact_with_rule_and_reason_in_the_ledger(
    engine: Engine,
) -> None:
    folios, customer_id = debtor_with_invoices(engine, [100_000])
    with session_scope(engine) as session:
        customer = find_customer(session, "test", customer_id)
        assert customer is not None
        customer.lawsuit_served_on = date(2026, 6, 9)
        session.add(customer)

    outcome = send(engine, reminder(folios[0]), WEDNESDAY_TEN)

    assert outcome.status is SendStatus.STOPPED
    assert "CL-C-10 lawsuit served" in outcome.reason
    (entry,) = ledger_of(engine, folios[0])
    assert entry.status == ContactStatus.CANCELLED
    assert entry.reason is not None and "CL-C-10" in entry.reason
    assert outbox(engine) == []


def test_a_debtor_whose_zone_is_unknown_is_contacted_in_hours_lawful_everywhere(
    engine: Engine,
) -> None:
    folios, customer_id = debtor_with_invoices(engine, [100_000])
    with session_scope(engine) as session:
        customer = find_customer(session, "test", customer_id)
        assert customer is not None
        customer.time_zone_candidates = "America/Santiago,Pacific/Easter"
        session.add(customer)
    # 08:30 in Santiago is 06:30 on Easter Island: too early there.
    early = santiago(date(2026, 6, 10), time(8, 30)).astimezone(UTC)

    result = gate_contact(
        engine,
        ContactKey("test", folios[0], "R+8", "email", "x@customers.invalid"),
        customer=_customer(engine, customer_id),
        jurisdiction="cl.consumer",
        policy=POLICY,
        planned_at=early,
        now=early,
    )

    assert isinstance(result, GateResult)
    assert result.decision.verdict is Verdict.DEFER
    assert result.decision.at == santiago(date(2026, 6, 10), time(10, 0))
    assert any("time zone unknown" in flag for flag in result.decision.flags)
    (entry,) = ledger_of(engine, folios[0])
    assert entry.reason is not None
    assert "Pacific/Easter" in entry.reason


def _customer(engine: Engine, customer_id: str) -> Customer:
    with session_scope(engine) as session:
        customer = find_customer(session, "test", customer_id)
    assert customer is not None
    return customer


def test_invoices_imported_without_a_policy_are_still_due_together(
    engine: Engine,
) -> None:
    # No policy is a policy too: SQL's "= NULL" would match nothing and send two messages.
    folios, _ = debtor_with_invoices(engine, [100_000, 200_000])
    with session_scope(engine) as session:
        for folio in folios:
            row = find_invoice(session, "test", folio)
            assert row is not None
            row.policy_name, row.policy_version = None, None
            session.add(row)

    first = send(engine, reminder(folios[0]), WEDNESDAY_TEN)

    assert first.status is SendStatus.SENT
    [statement] = outbox(engine)
    assert folios[1] in statement.body
    [entry] = ledger_of(engine, folios[1])
    assert entry.status == ContactStatus.CONSOLIDATED
