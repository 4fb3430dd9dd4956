"""The lawful-contact gate: each contact decided against the committed ledger, per debtor."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, or_, update
from sqlalchemy import select as select_columns
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from receivables.contact_rules import (
    ContactAttempt,
    ContactDecision,
    DebtorFacts,
    PastContact,
    PaymentForm,
    Verdict,
    decide,
)
from receivables.jurisdictions import JurisdictionProfile, load_profile
from receivables.ledger import (
    ContactKey,
    LedgerSnapshot,
    MessageRecord,
    NotPayable,
    find_entry,
    record_message_on,
    refusal_to_send,
    snapshot_of,
)
from receivables.locations import candidates_of, subdivision_of
from receivables.planning import local_date_of
from receivables.statements import (
    CoveredByStatement,
    CoveredInvoice,
    consolidates,
    cover_invoices_due_together,
    covering_statement,
)
from receivables.store import (
    ContactAttempt as AttemptRow,
)
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    Invoice,
    as_utc,
    find_invoice,
    session_scope,
)

# Caps look back a week (rolling or by dates); two weeks of history covers every rule.
HISTORY_WINDOW = timedelta(days=14)


@lru_cache(maxsize=32)
def profile_for(jurisdiction: str) -> JurisdictionProfile:
    """The jurisdiction's profile, loaded once per worker."""
    return load_profile(jurisdiction)


@dataclass(frozen=True)
class GateResult:
    """The decision for one contact and, when allowed, the ledger entry now pending.

    ``covered`` lists the other invoices the message must name: when the profile
    consolidates written contacts, they ride on this one instead of being sent apart.
    """

    decision: ContactDecision
    entry_id: int | None
    attempts: int
    covered: tuple[CoveredInvoice, ...] = ()


def debtor_facts(
    customer: Customer, invoice: Invoice | None, now: datetime
) -> DebtorFacts:
    """What the rules know of the debtor and this invoice on the debtor's date of ``now``."""
    today = local_date_of(now, customer.time_zone)
    candidates = candidates_of(customer.time_zone_candidates)
    payment_form = invoice.payment_form if invoice is not None else None
    return DebtorFacts(
        # An unknown zone is passed as unknown: the rules use the hours of every candidate.
        time_zone=None if candidates else customer.time_zone or None,
        candidate_time_zones=candidates,
        subdivision=subdivision_of(customer.region),
        lawsuit_served=_on_or_before(customer.lawsuit_served_on, today),
        insolvent=_on_or_before(customer.insolvency_opened_on, today),
        invoice_ceded=invoice is not None and _on_or_before(invoice.ceded_on, today),
        payment_form=PaymentForm(payment_form) if payment_form else None,
        invoice_received_at=_received_at(invoice, customer.time_zone),
    )


def gate_contact(
    engine: Engine,
    key: ContactKey,
    *,
    customer: Customer,
    jurisdiction: str,
    policy: tuple[str, int],
    planned_at: datetime,
    now: datetime,
    message: MessageRecord | None = None,
) -> GateResult | CoveredByStatement | LedgerSnapshot | NotPayable:
    """Decide a contact and, if allowed, mark it pending, in one transaction per debtor.

    Locking the debtor's row first makes two workers contacting the same debtor at the same
    instant take turns: the second sees the first one's pending contact and is deferred, or,
    when the first one's statement already lists its invoice, learns it is covered.

    ``message`` is the text about to be sent. With it, the invoice must still be payable
    (read under the lock, so a payment committed after the send's first read stops it),
    an entry already sent is handed back untouched as its snapshot, and an allowed attempt
    records the text in the same transaction, unless the attempt must send a statement,
    whose text is not known yet.
    """
    profile = profile_for(jurisdiction)
    with session_scope(engine) as session:
        _lock_debtor(session, customer)
        # Read again under the lock: an operator may have recorded a stop fact meanwhile.
        debtor = session.get(Customer, customer.id) or customer
        invoice = find_invoice(session, key.tenant, key.invoice_number)
        if message is not None:
            refusal = refusal_to_send(invoice)
            if refusal is not None:
                return refusal
        entry = _entry(session, key, policy, planned_at)
        if message is not None and entry.status == ContactStatus.SENT:
            return snapshot_of(entry)
        covering = covering_statement(session, entry)
        if covering is not None:
            return covering
        history = _recent_contacts(session, customer, now, exclude=key)
        attempt = ContactAttempt(
            key.channel, now, key.tenant, customer.customer_id, (key.invoice_number,)
        )
        decision = decide(attempt, history, profile, debtor_facts(debtor, invoice, now))
        _apply(entry, decision, now)
        session.add(entry)
        session.flush()
        assert entry.id is not None
        covered: tuple[CoveredInvoice, ...] = ()
        if (
            decision.verdict is Verdict.ALLOW
            and invoice is not None
            and consolidates(profile, key.channel)
        ):
            covered = cover_invoices_due_together(
                session,
                entry,
                invoice,
                admits=lambda other: _admits(attempt, history, profile, debtor, other),
                now=now,
            )
        listed = f"; statement lists {', '.join(c.invoice_number for c in covered)}"
        session.add(
            AttemptRow(
                ledger_entry_id=entry.id,
                attempt=entry.attempts,
                outcome=str(decision.verdict),
                detail=trace(decision) + (listed if covered else ""),
                # The decision's instant (the case's clock), which the KPIs date it by.
                at=now,
            )
        )
        if decision.verdict is Verdict.ALLOW and message is not None and not covered:
            record_message_on(session, entry, message)
        return GateResult(decision, entry.id, entry.attempts, covered)


def _apply(entry: ContactLedgerEntry, decision: ContactDecision, now: datetime) -> None:
    """Write the verdict on the ledger entry: pending when allowed, else why not."""
    entry.consolidated_into_id = None
    if decision.verdict is Verdict.ALLOW:
        entry.attempts += 1
        entry.status = ContactStatus.PENDING
        # The caps count a pending contact at this instant: left at its planned instant, a
        # step deferred a week would count a week early and let the next contact through.
        entry.decided_at = now
        return
    status = (
        ContactStatus.DEFERRED
        if decision.verdict is Verdict.DEFER
        else ContactStatus.CANCELLED
    )
    entry.status, entry.reason, entry.decided_at = status, trace(decision), now


def _admits(
    attempt: ContactAttempt,
    history: list[PastContact],
    profile: JurisdictionProfile,
    customer: Customer,
    other: Invoice,
) -> bool:
    """Whether another invoice may be named now: its own stops and holds decide it."""
    named = replace(attempt, invoice_ids=(other.invoice_number,))
    facts = debtor_facts(customer, other, attempt.wanted_at)
    return decide(named, history, profile, facts).verdict is Verdict.ALLOW


def _on_or_before(day: date | None, today: date) -> bool:
    return day is not None and day <= today


def _received_at(invoice: Invoice | None, time_zone: str) -> datetime | None:
    # The SII gives the reception's date; local noon keeps that date in every Chilean zone.
    if invoice is None or invoice.sii_received_on is None:
        return None
    return datetime.combine(invoice.sii_received_on, time(12), ZoneInfo(time_zone))


def trace(decision: ContactDecision) -> str:
    """The decision as an auditor reads it: verdict, instant, reason, rules evaluated."""
    at = (
        f" until {decision.at:%Y-%m-%dT%H:%MZ}"
        if decision.verdict is Verdict.DEFER
        else ""
    )
    flags = f"; flags: {'; '.join(decision.flags)}" if decision.flags else ""
    rules = ", ".join(decision.rules_evaluated)
    return f"{decision.verdict}{at}: {decision.reason} [rules: {rules}]{flags}"


def _lock_debtor(session: Session, customer: Customer) -> None:
    # A no-op write takes the row lock on PostgreSQL and the write lock on SQLite before
    # the history is read, so concurrent decisions for one debtor are serialised.
    # On the session's connection, as plain SQL: the ORM's bookkeeping for an UPDATE
    # costs more than the write, and this one changes nothing the session holds.
    session.connection().execute(_LOCK_DEBTOR, {"debtor_id": customer.id})


def _recent_contacts(
    session: Session, customer: Customer, now: datetime, *, exclude: ContactKey
) -> list[PastContact]:
    """Contacts sent or in flight to this debtor, across all of their invoices."""
    params = {
        "tenant": customer.tenant,
        "customer_id": customer.customer_id,
        # A day more than the window: the exact cut is made below, on aware instants.
        "since": now - HISTORY_WINDOW - timedelta(days=1),
    }
    rows = session.execute(_CONTACTS_OF_DEBTOR, params).all()
    contacts = []
    for row in rows:
        if (row.invoice_number, row.step_id, row.channel) == (
            exclude.invoice_number,
            exclude.step_id,
            exclude.channel,
        ):
            continue
        at = as_utc(row.decided_at or row.planned_at)
        if now - HISTORY_WINDOW <= at <= now + timedelta(minutes=1):
            contacts.append(
                PastContact(
                    row.channel,
                    at,
                    row.tenant,
                    customer.customer_id,
                    (row.invoice_number,),
                )
            )
    return sorted(contacts, key=lambda contact: contact.at)


def _entry(
    session: Session, key: ContactKey, policy: tuple[str, int], planned_at: datetime
) -> ContactLedgerEntry:
    return find_entry(session, key) or ContactLedgerEntry(
        **key.__dict__,
        policy_name=policy[0],
        policy_version=policy[1],
        planned_at=planned_at,
    )


# Built once and run with parameters: the gate runs before every contact of a profile.
_LOCK_DEBTOR = (
    update(Customer)
    .where(col(Customer.id) == bindparam("debtor_id"))
    .values(customer_id=Customer.customer_id)
)
# Only the columns a decision reads, and only the last weeks: a debtor with years of
# invoices would otherwise load every contact it ever had, as entities, on every send.
_CONTACTS_OF_DEBTOR = (
    select_columns(
        col(ContactLedgerEntry.tenant),
        col(ContactLedgerEntry.invoice_number),
        col(ContactLedgerEntry.step_id),
        col(ContactLedgerEntry.channel),
        col(ContactLedgerEntry.planned_at),
        col(ContactLedgerEntry.decided_at),
    )
    .join(
        Invoice,
        and_(
            col(Invoice.tenant) == col(ContactLedgerEntry.tenant),
            col(Invoice.invoice_number) == col(ContactLedgerEntry.invoice_number),
        ),
    )
    .where(
        col(Invoice.tenant) == bindparam("tenant"),
        col(Invoice.customer_id) == bindparam("customer_id"),
        # A held contact may have reached the debtor: it counts until a person knows.
        col(ContactLedgerEntry.status).in_(
            [ContactStatus.SENT, ContactStatus.PENDING, ContactStatus.HELD]
        ),
        col(ContactLedgerEntry.attempts) > 0,
        or_(
            col(ContactLedgerEntry.decided_at) >= bindparam("since"),
            col(ContactLedgerEntry.planned_at) >= bindparam("since"),
        ),
    )
)
