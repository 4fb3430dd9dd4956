"""Stop facts after import: recording them, and reading them back for the case views."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receivables.contact_gate import profile_for
from receivables.contact_rules import PaymentForm
from receivables.jurisdictions import (
    HoldRule,
    JurisdictionProfile,
    StopCondition,
    StopRule,
)
from receivables.planning import CLOCK_SKEW_ALLOWED, local_date_of
from receivables.policy import load_policy_book
from receivables.store import (
    Customer,
    Invoice,
    StopFactRecord,
    find_customer,
    find_invoice,
    session_scope,
)


class StopFact(enum.StrEnum):
    """What an operator may record; the first two are the debtor's, cession the invoice's."""

    LAWSUIT_SERVED = "lawsuit-served"
    INSOLVENCY_OPENED = "insolvency"
    CEDED = "ceded"
    # Not a stop but a hold: the buyer may reclaim the invoice for eight days after it.
    SII_RECEIVED = "sii-received"

    @property
    def about_invoice(self) -> bool:
        """True when the fact belongs to one invoice rather than to the debtor."""
        return self in (StopFact.CEDED, StopFact.SII_RECEIVED)


class StopFactRefused(ValueError):
    """A stop fact that cannot be recorded; the message says what to do."""


@dataclass(frozen=True)
class StopFactChange:
    """What the record changed, for the operator's confirmation."""

    customer_id: str
    invoice_number: str | None
    fact: StopFact
    on: date
    already_recorded: bool


def record_stop_fact(
    engine: Engine,
    tenant: str,
    fact: StopFact,
    *,
    target: str,
    on: date,
    recorded_by: str,
    reason: str,
    assignee: str | None = None,
) -> StopFactChange:
    """Set a stop fact on a customer (by id) or an invoice (by folio), with an audit line.

    Cases learn it at their next send: the contact gate reads the fact under the debtor's
    lock and denies the contact with the rule's id, and the case stops its reminders.
    """
    if not reason.strip() or not recorded_by.strip():
        raise StopFactRefused("say who records it (--by) and why (--reason)")
    with session_scope(engine) as session:
        if fact.about_invoice:
            invoice = find_invoice(session, tenant, target)
            if invoice is None:
                raise StopFactRefused(
                    f"invoice {target} is not in the store of tenant {tenant}; "
                    "give the folio as imported, leading zeros included"
                )
            customer_id, invoice_number = invoice.customer_id, invoice.invoice_number
            debtor = find_customer(session, tenant, customer_id)
            refuse_a_future_date(fact, on, debtor.time_zone if debtor else "UTC")
            if fact is StopFact.SII_RECEIVED:
                already = invoice.sii_received_on is not None
                if not already:
                    invoice.sii_received_on = on
            else:
                already = invoice.ceded_on is not None
                if not already:
                    invoice.ceded_on, invoice.ceded_to = on, assignee
            session.add(invoice)
        else:
            customer = find_customer(session, tenant, target)
            if customer is None:
                raise StopFactRefused(
                    f"customer {target} is not in the store of tenant {tenant}; "
                    "give the customer id as imported"
                )
            customer_id, invoice_number = customer.customer_id, None
            refuse_a_future_date(fact, on, customer.time_zone)
            field = (
                "lawsuit_served_on"
                if fact is StopFact.LAWSUIT_SERVED
                else "insolvency_opened_on"
            )
            already = getattr(customer, field) is not None
            if not already:
                setattr(customer, field, on)
                session.add(customer)
        # A fact already recorded keeps its first date; the audit still shows the attempt.
        session.add(
            StopFactRecord(
                tenant=tenant,
                customer_id=customer_id,
                invoice_number=invoice_number,
                fact=fact.value,
                value=str(on) + (f" to {assignee}" if assignee else ""),
                source="operator"
                + (" (already recorded, unchanged)" if already else ""),
                recorded_by=recorded_by,
                reason=reason,
            )
        )
    return StopFactChange(customer_id, invoice_number, fact, on, already)


def refuse_a_future_date(
    fact: StopFact, on: date, time_zone: str, now: datetime | None = None
) -> None:
    """A stop fact is something that happened: a date still to come is refused.

    It is a typo, and would stop (or hold) contacts on a fact nobody can vouch for yet.
    The day is the debtor's, read on a clock allowed to run a few minutes slow: an
    operator just past midnight there is already on the new day.
    """
    moment = (now or datetime.now(UTC)) + CLOCK_SKEW_ALLOWED
    today = local_date_of(moment, time_zone)
    if on > today:
        raise StopFactRefused(
            f"--on {on} is in the future (today is {today} in {time_zone}, the debtor's "
            f"zone); record {fact} once it has happened, with the date it did; nothing "
            "was recorded"
        )


# -- reading them back for `case` and `case-file` ------------------------------------------

# The audit names a fact as its writer did: the operator's command, the importer, the SII.
_AUDIT_NAMES = {
    StopCondition.LAWSUIT_SERVED: ("lawsuit-served", "lawsuit_served"),
    StopCondition.INSOLVENT: ("insolvency", "insolvency_opened"),
    StopCondition.INVOICE_CEDED: ("ceded",),
    StopCondition.PAYMENT_FORM_CASH: ("payment_form",),
    StopCondition.PAYMENT_FORM_FREE: ("payment_form",),
}
_SII_RECEIVED_NAMES = ("sii-received", "sii_received")
STOPS_COLLECTION = "the next reminder will be denied: collection stops"


@dataclass(frozen=True)
class StopFactShown:
    """A stop fact in force for an invoice, and what it means for contacting the debtor."""

    what: str  # "lawsuit served on 2026-03-02 (debtor CLI-0001)"
    recorded: str  # who recorded it and why, from the audit; "" if the audit has none
    meaning: str  # "the next reminder will be denied: collection stops"

    def __str__(self) -> str:
        recorded = f"; {self.recorded}" if self.recorded else ""
        return f"{self.what}{recorded}: {self.meaning}"


def case_profile(policies_dir: Path, invoice: Invoice) -> JurisdictionProfile | None:
    """The contact-rule profile the invoice's policy sends under; None if it names none."""
    policies = load_policy_book(policies_dir).policies.values()
    policy = next((p for p in policies if p.name == invoice.policy_name), None)
    if policy is None or policy.jurisdiction is None:
        return None
    return profile_for(policy.jurisdiction)


def stop_facts_shown(
    engine: Engine,
    invoice: Invoice,
    profile: JurisdictionProfile | None,
    today: date,
) -> list[StopFactShown]:
    """The stop facts recorded on the invoice or its debtor, read as the contact gate would.

    ``today`` is the debtor's local date; a fact dated later is shown as coming.
    """
    with session_scope(engine) as session:
        customer = find_customer(session, invoice.tenant, invoice.customer_id)
        audit = _audit_of(session, invoice)
    shown = [
        StopFactShown(
            what,
            _recorded(audit, _AUDIT_NAMES[condition]),
            _stop_meaning(condition, on, profile, today),
        )
        for condition, on, what in _stops_of(invoice, customer)
    ]
    if invoice.sii_received_on is not None:
        shown.append(
            StopFactShown(
                f"received at the SII on {invoice.sii_received_on}",
                _recorded(audit, _SII_RECEIVED_NAMES),
                _hold_meaning(invoice.sii_received_on, profile, today),
            )
        )
    return shown


def stop_facts_today(
    engine: Engine, policies_dir: Path, invoice: Invoice, time_zone: str
) -> list[StopFactShown]:
    """The invoice's stop facts as they stand on the debtor's date of now."""
    # A few minutes past the debtor's midnight on a fast clock is still today.
    today = local_date_of(datetime.now(UTC) + CLOCK_SKEW_ALLOWED, time_zone)
    return stop_facts_shown(engine, invoice, case_profile(policies_dir, invoice), today)


def _stops_of(
    invoice: Invoice, customer: Customer | None
) -> list[tuple[StopCondition, date | None, str]]:
    debtor = f"(debtor {invoice.customer_id})"
    stops: list[tuple[StopCondition, date | None, str]] = []
    if customer is not None and customer.lawsuit_served_on is not None:
        on = customer.lawsuit_served_on
        stops.append(
            (StopCondition.LAWSUIT_SERVED, on, f"lawsuit served on {on} {debtor}")
        )
    if customer is not None and customer.insolvency_opened_on is not None:
        on = customer.insolvency_opened_on
        stops.append(
            (StopCondition.INSOLVENT, on, f"insolvency opened on {on} {debtor}")
        )
    if invoice.ceded_on is not None:
        to = f" to {invoice.ceded_to}" if invoice.ceded_to else ""
        stops.append(
            (
                StopCondition.INVOICE_CEDED,
                invoice.ceded_on,
                f"ceded on {invoice.ceded_on}{to}",
            )
        )
    # Only cash and free invoices stop; a credit invoice is the one that is dunned.
    if invoice.payment_form == PaymentForm.CASH:
        stops.append((StopCondition.PAYMENT_FORM_CASH, None, "payment form 1 (cash)"))
    if invoice.payment_form == PaymentForm.FREE:
        stops.append((StopCondition.PAYMENT_FORM_FREE, None, "payment form 3 (free)"))
    return stops


def _stop_meaning(
    condition: StopCondition,
    on: date | None,
    profile: JurisdictionProfile | None,
    today: date,
) -> str:
    if profile is None:
        return (
            "the case's policy names no contact-rule profile, so nothing denies contact"
        )
    rules = [
        rule
        for rule in profile.rules_of(StopRule)
        if rule.condition is condition and rule.in_force(today)
    ]
    if not rules:
        return f"{profile.jurisdiction} has no stop rule for it: contacts go on"
    if on is not None and on > today:
        return f"from {on}, {STOPS_COLLECTION} ({rules[0].id})"
    return f"{STOPS_COLLECTION} ({rules[0].id})"


def _hold_meaning(
    received_on: date, profile: JurisdictionProfile | None, today: date
) -> str:
    holds = (
        [rule for rule in profile.rules_of(HoldRule) if rule.in_force(today)]
        if profile
        else []
    )
    if not holds:
        return "no hold after reception applies: contacts go on"
    # As the gate counts it: the days after reception, dunning from the day after them.
    rule = holds[0]
    contact_from = received_on + timedelta(days=rule.days + 1)
    if today >= contact_from:
        return f"the buyer's days to reclaim it ended; contacts go on ({rule.id})"
    return (
        f"contacts wait until {contact_from}: the buyer may reclaim it through "
        f"{contact_from - timedelta(days=1)} ({rule.id})"
    )


def _audit_of(session: Session, invoice: Invoice) -> list[StopFactRecord]:
    rows = session.exec(
        select(StopFactRecord)
        .where(
            StopFactRecord.tenant == invoice.tenant,
            StopFactRecord.customer_id == invoice.customer_id,
        )
        .order_by(col(StopFactRecord.at), col(StopFactRecord.id))
    ).all()
    # A debtor's fact has no folio; another invoice's facts are not this one's.
    return [row for row in rows if row.invoice_number in (None, invoice.invoice_number)]


def _recorded(audit: list[StopFactRecord], names: tuple[str, ...]) -> str:
    # The first record set the date the store keeps; later ones left it unchanged.
    first = next((row for row in audit if row.fact in names), None)
    if first is None:
        return ""
    return f"recorded by {first.recorded_by}: {first.reason}"
