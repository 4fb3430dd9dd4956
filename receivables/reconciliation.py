"""The reconciled bank movements: what each statement line became, and the lines left open.

A line is reconciled once per tenant (its bank transaction id is unique), so running the
same statement again records nothing twice. Its payments carry the reference
``BANK:<transaction id>`` (``/<folio>`` added to each part of a split), which ``pay`` can
use too: an unmatched line a person records by hand with that reference is resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import BigInteger, ColumnElement, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, and_, col, or_, select

from receivables.bank_matching import (
    REFERENCE_PREFIX,
    Allocation,
    Decision,
    Outcome,
    stated_payer,
)
from receivables.bank_movements import BankMovement
from receivables.money import MoneyError, format_amount
from receivables.operator_actions import ActionKind, record_action
from receivables.store import Payment, session_scope, utc_now

logger = logging.getLogger(__name__)


class ReconciledMovement(SQLModel, table=True):
    """One bank movement as reconciliation left it; an unmatched one waits for a person."""

    __table_args__ = (UniqueConstraint("tenant", "bank_transaction_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    bank_transaction_id: str
    account: str
    booking_date: date
    value_date: date
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    direction: str
    outcome: str = Field(index=True)
    invoice_numbers: str = ""  # space-separated folios a payment went to
    # How it was matched; on a returned line, who checked it (empty: it still waits).
    matched_by: str = ""
    reason: str = ""  # why unmatched, skipped or returned
    candidates: str = ""  # the folios or customers that came close, for the person
    remittance: str = ""
    source_file: str
    place: str  # where in the file: "entry 3, detail 2", "row 29"
    reconciled_by: str
    reconciled_at: datetime = Field(default_factory=utc_now)


def payment_reference(
    movement: BankMovement, allocation: Allocation, parts: int
) -> str:
    """The Payment reference of one part of a movement: the same on every run."""
    if allocation.reference:
        return allocation.reference
    reference = REFERENCE_PREFIX + movement.transaction_id
    return f"{reference}/{allocation.folio}" if parts > 1 else reference


def reconciled_before(
    engine: Engine, tenant: str, movements: Sequence[BankMovement]
) -> dict[str, ReconciledMovement]:
    """The stored rows of these movements, by transaction id."""
    ids = [movement.transaction_id for movement in movements]
    with session_scope(engine) as session:
        rows = session.exec(
            select(ReconciledMovement).where(
                ReconciledMovement.tenant == tenant,
                col(ReconciledMovement.bank_transaction_id).in_(ids),
            )
        ).all()
    return {row.bank_transaction_id: row for row in rows}


def payments_of(engine: Engine, tenant: str, movement: BankMovement) -> list[Payment]:
    """Payments already recorded under the movement's reference, by a run or by hand."""
    return payments_under(engine, tenant, movement.transaction_id)


def payments_under(engine: Engine, tenant: str, transaction_id: str) -> list[Payment]:
    """Payments recorded under ``BANK:<id>`` or one of its ``/FOLIO`` parts."""
    reference = REFERENCE_PREFIX + transaction_id
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Payment).where(
                    Payment.tenant == tenant,
                    or_(
                        Payment.reference == reference,
                        col(Payment.reference).startswith(
                            reference + "/", autoescape=True
                        ),
                    ),
                )
            ).all()
        )


def save_decisions(
    engine: Engine,
    tenant: str,
    decisions: Sequence[Decision],
    *,
    source_file: str,
    person: str,
) -> None:
    """Write each decision's row, replacing an earlier unmatched row of the same movement.

    Each row commits alone: a row another run of the statement wrote meanwhile is kept.
    """
    held = reconciled_before(engine, tenant, [d.movement for d in decisions])
    for decision in decisions:
        try:
            _save_decision(engine, tenant, decision, held, source_file, person)
        except IntegrityError:
            logger.info(
                "kept the row another run wrote for %s",
                decision.movement.transaction_id,
            )


def _save_decision(
    engine: Engine,
    tenant: str,
    decision: Decision,
    held: dict[str, ReconciledMovement],
    source_file: str,
    person: str,
) -> None:
    with session_scope(engine) as session:
        movement = decision.movement
        row = held.get(movement.transaction_id) or ReconciledMovement(
            tenant=tenant,
            bank_transaction_id=movement.transaction_id,
            account=movement.account,
            booking_date=movement.booking_date,
            value_date=movement.value_date,
            amount_minor=movement.amount_minor,
            currency=movement.currency,
            direction=str(movement.direction),
            outcome=str(decision.outcome),
            source_file=source_file,
            place=movement.place,
            reconciled_by=person,
        )
        row.outcome = str(decision.outcome)
        row.invoice_numbers = " ".join(a.folio for a in decision.allocations)
        row.matched_by = decision.matched_by
        row.reason = decision.reason
        row.candidates = "; ".join(decision.candidates)
        row.remittance = movement.remittance[:500]
        row.reconciled_by = person
        row.reconciled_at = utc_now()
        session.add(row)


def unmatched_movements(engine: Engine, tenant: str) -> list[ReconciledMovement]:
    """The lines still waiting for a person, oldest booking first."""
    return _movements_where(
        engine, tenant, col(ReconciledMovement.outcome) == Outcome.UNMATCHED
    )


def waiting_movements(engine: Engine, tenant: str) -> list[ReconciledMovement]:
    """The unmatched lines and the returned ones nobody has checked, oldest booking first."""
    return _movements_where(
        engine,
        tenant,
        or_(
            col(ReconciledMovement.outcome) == Outcome.UNMATCHED,
            and_(
                col(ReconciledMovement.outcome) == Outcome.RETURNED,
                col(ReconciledMovement.matched_by) == "",
            ),
        ),
    )


def _movements_where(
    engine: Engine, tenant: str, condition: ColumnElement[bool]
) -> list[ReconciledMovement]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(ReconciledMovement)
                .where(col(ReconciledMovement.tenant) == tenant, condition)
                .order_by(
                    col(ReconciledMovement.booking_date), col(ReconciledMovement.id)
                )
            ).all()
        )


def mark_checked(engine: Engine, tenant: str, transaction_id: str, person: str) -> None:
    """Record that a person checked a returned line; it stops waiting, in the actions log."""
    with session_scope(engine) as session:
        row = session.exec(
            select(ReconciledMovement).where(
                ReconciledMovement.tenant == tenant,
                ReconciledMovement.bank_transaction_id == transaction_id,
                ReconciledMovement.outcome == Outcome.RETURNED,
            )
        ).first()
        if row is None:
            raise LookupError(f"no returned line {transaction_id} in tenant {tenant}")
        row.matched_by = f"checked by {person}"
        row.reconciled_by = person
        row.reconciled_at = utc_now()
        session.add(row)
        record_action(
            session,
            tenant=tenant,
            customer_id="",
            invoice_number=None,
            kind=ActionKind.RETURN_CHECKED,
            person_id=person,
            reason=REFERENCE_PREFIX + transaction_id,
        )


def left_to_record(
    amount_minor: int, currency: str, parts: Sequence[tuple[str, int]]
) -> str:
    """What a line's recorded (folio, amount) parts cover and what is left; empty if all."""
    recorded = sum(amount for _, amount in parts)
    if recorded >= amount_minor:
        return ""
    shown = ", ".join(
        f"{folio} {format_amount(amount, currency)}" for folio, amount in parts
    )
    return (
        f"{format_amount(recorded, currency)} recorded under its reference ({shown}); "
        f"{format_amount(amount_minor - recorded, currency)} left"
    )


def resolve_recorded_by_hand(engine: Engine, tenant: str) -> int:
    """Mark applied the unmatched lines whose payments under their reference cover them."""
    resolved = 0
    for row in unmatched_movements(engine, tenant):
        payments = payments_under(engine, tenant, row.bank_transaction_id)
        parts = [(p.invoice_number, p.amount_minor) for p in payments]
        if not payments or left_to_record(row.amount_minor, row.currency, parts):
            continue
        with session_scope(engine) as session:
            row.outcome = Outcome.APPLIED
            row.invoice_numbers = " ".join(sorted(p.invoice_number for p in payments))
            row.matched_by = "recorded by hand with pay"
            row.reason = ""
            # The line stops waiting now; left alone, the KPI's reconciliation time would
            # end when the line was first read unmatched, before anyone decided it.
            row.reconciled_at = utc_now()
            session.add(row)
            resolved += 1
    return resolved


# -- the report a person reads --------------------------------------------------------------


def describe(decision: Decision, *, person: str = "PERSON") -> list[str]:
    """The report's lines for one movement: what it is, what became of it, and why."""
    movement = decision.movement
    amount = shown_amount(movement.amount_minor, movement.currency)
    line = f"  {movement.place} ({movement.booking_date}) {amount}"
    if decision.outcome is Outcome.APPLIED:
        parts = ", ".join(
            f"{a.folio} {format_amount(a.amount_minor, movement.currency)}"
            for a in decision.allocations
        )
        return [f"{line} -> {parts}: {decision.matched_by}"]
    if decision.outcome is Outcome.RETURNED:
        return [
            f"{line}: {decision.reason}",
            *returned_details(
                movement.remittance,
                "; ".join(decision.candidates),
                movement.transaction_id,
                person=person,
            ),
        ]
    if decision.outcome is not Outcome.UNMATCHED:
        return [f"{line}: {decision.reason}"]
    payer = f" from {stated_payer(movement)!r}" if stated_payer(movement) else ""
    lines = [f"{line}{payer} {movement.remittance[:80]!r}: {decision.reason}"]
    if decision.candidates:
        lines.append(f"      candidates: {', '.join(decision.candidates)}")
    recorded = [(a.folio, a.amount_minor) for a in decision.allocations]
    if recorded:
        left = left_to_record(movement.amount_minor, movement.currency, recorded)
        lines.append(f"      {left}")
    lines.extend(
        how_to_record(REFERENCE_PREFIX + movement.transaction_id, person=person)
    )
    return lines


def returned_details(
    remittance: str, bank_payments: str, transaction_id: str, *, person: str
) -> list[str]:
    """Under a returned line: its text, the bank payments it may undo, how to close it."""
    undone = bank_payments or "none on a folio its text names"
    return [
        f"      text: {remittance[:80]!r}",
        f"      bank payments it may undo: {undone}",
        f"      once checked: starter.py reconcile --checked {transaction_id} --by {person}",
    ]


def how_to_record(reference: str, *, person: str) -> list[str]:
    """The hint under an unmatched line: the pay command, and how to split it."""
    return [
        f"      once decided: starter.py pay FOLIO AMOUNT --reference {reference} "
        f"--by {person}",
        f"      paying several invoices: one pay each; add /FOLIO to the reference for "
        f"each invoice ({reference}/FOLIO)",
    ]


def shown_amount(minor_units: int, currency: str) -> str:
    """An amount as operators read it; a currency the store never invoices keeps 2 decimals."""
    try:
        return format_amount(minor_units, currency)
    except MoneyError:
        return f"{minor_units / 100:.2f} {currency}"


def summary(decisions: Sequence[Decision], repeats: int, name: str) -> str:
    """``bank.xml: 8 movements: 2 applied, 1 unmatched, ...``."""
    counts = {outcome: 0 for outcome in Outcome}
    for decision in decisions:
        counts[decision.outcome] += 1
    shown = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    return (
        f"{name}: {len(decisions) + repeats} movements: {shown}, "
        f"{repeats} already reconciled"
    )
