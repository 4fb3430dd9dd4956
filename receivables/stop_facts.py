"""Stop facts an operator records after import: lawsuit, insolvency, cession, SII reception."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from receivables.store import (
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
