"""The lawful-contact gate: each contact decided against the committed ledger, per debtor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receivables.contact_rules import (
    ContactAttempt,
    ContactDecision,
    DebtorFacts,
    PastContact,
    Verdict,
    decide,
)
from receivables.jurisdictions import JurisdictionProfile, load_profile
from receivables.ledger import ContactKey
from receivables.store import (
    ContactAttempt as AttemptRow,
)
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    Invoice,
    as_utc,
    session_scope,
)

# Caps look back a week (rolling or by dates); two weeks of history covers every rule.
HISTORY_WINDOW = timedelta(days=14)
# Region names as imports write them, to the ISO 3166-2 codes the holiday calendars use.
CHILEAN_REGIONS = {
    "arica y parinacota": "AP",
    "tarapacá": "TA",
    "antofagasta": "AN",
    "atacama": "AT",
    "coquimbo": "CO",
    "valparaíso": "VS",
    "metropolitana": "RM",
    "o'higgins": "LI",
    "maule": "ML",
    "ñuble": "NB",
    "biobío": "BI",
    "la araucanía": "AR",
    "los ríos": "LR",
    "los lagos": "LL",
    "aysén": "AI",
    "magallanes": "MA",
}


@lru_cache(maxsize=32)
def profile_for(jurisdiction: str) -> JurisdictionProfile:
    """The jurisdiction's profile, loaded once per worker."""
    return load_profile(jurisdiction)


def subdivision_of(region: str | None) -> str | None:
    """The region's ISO code, or None (the rules then avoid every regional holiday)."""
    if not region:
        return None
    text = region.strip()
    return (
        text.upper()
        if text.upper() in CHILEAN_REGIONS.values()
        else (CHILEAN_REGIONS.get(text.lower()))
    )


@dataclass(frozen=True)
class GateResult:
    """The decision for one contact and, when allowed, the ledger entry now pending."""

    decision: ContactDecision
    entry_id: int | None
    attempts: int


def gate_contact(
    engine: Engine,
    key: ContactKey,
    *,
    customer: Customer,
    jurisdiction: str,
    policy: tuple[str, int],
    planned_at: datetime,
    now: datetime,
) -> GateResult:
    """Decide a contact and, if allowed, mark it pending, in one transaction per debtor.

    Locking the debtor's row first makes two workers contacting the same debtor at the same
    instant take turns: the second sees the first one's pending contact and is deferred.
    """
    profile = profile_for(jurisdiction)
    debtor = DebtorFacts(
        time_zone=customer.time_zone or None,
        subdivision=subdivision_of(customer.region),
    )
    with session_scope(engine) as session:
        _lock_debtor(session, customer)
        history = _recent_contacts(session, customer, now, exclude=key)
        attempt = ContactAttempt(
            key.channel, now, key.tenant, customer.customer_id, (key.invoice_number,)
        )
        decision = decide(attempt, history, profile, debtor)
        entry = _entry(session, key, policy, planned_at)
        if decision.verdict is Verdict.ALLOW:
            entry.attempts += 1
            entry.status = ContactStatus.PENDING
        else:
            status = (
                ContactStatus.DEFERRED
                if decision.verdict is Verdict.DEFER
                else (ContactStatus.CANCELLED)
            )
            entry.status, entry.reason, entry.decided_at = status, trace(decision), now
        session.add(entry)
        session.flush()
        assert entry.id is not None
        session.add(
            AttemptRow(
                ledger_entry_id=entry.id,
                attempt=entry.attempts,
                outcome=str(decision.verdict),
                detail=trace(decision),
                # The decision's instant (the case's clock), which the KPIs date it by.
                at=now,
            )
        )
        return GateResult(decision, entry.id, entry.attempts)


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
    session.exec(
        update(Customer)
        .where(col(Customer.id) == customer.id)
        .values(customer_id=Customer.customer_id)
    )


def _recent_contacts(
    session: Session, customer: Customer, now: datetime, *, exclude: ContactKey
) -> list[PastContact]:
    """Contacts sent or in flight to this debtor, across all of their invoices."""
    rows = session.exec(
        select(ContactLedgerEntry)
        .join(
            Invoice,
            and_(
                col(Invoice.tenant) == col(ContactLedgerEntry.tenant),
                col(Invoice.invoice_number) == col(ContactLedgerEntry.invoice_number),
            ),
        )
        .where(
            Invoice.tenant == customer.tenant,
            Invoice.customer_id == customer.customer_id,
            col(ContactLedgerEntry.status).in_(
                [ContactStatus.SENT, ContactStatus.PENDING]
            ),
            col(ContactLedgerEntry.attempts) > 0,
        )
    ).all()
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
    entry = session.exec(
        select(ContactLedgerEntry).where(
            ContactLedgerEntry.tenant == key.tenant,
            ContactLedgerEntry.invoice_number == key.invoice_number,
            ContactLedgerEntry.step_id == key.step_id,
            ContactLedgerEntry.channel == key.channel,
            ContactLedgerEntry.recipient == key.recipient,
        )
    ).first()
    return entry or ContactLedgerEntry(
        **key.__dict__,
        policy_name=policy[0],
        policy_version=policy[1],
        planned_at=planned_at,
    )
