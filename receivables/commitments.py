"""Payment promises and disputes in the store: written by the cases, read by KPIs and imports."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import BigInteger, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from receivables.case import (
    DisputeRecord,
    DisputeStatus,
    PromiseOutcome,
    PromiseRecord,
)
from receivables.planning import local_date_of
from receivables.store import as_utc, session_scope

log = logging.getLogger(__name__)


class StoredPromise(SQLModel, table=True):
    """A debtor's payment promise on one invoice and how it ended."""

    __tablename__ = "paymentpromise"
    # A retried activity finds the row its first attempt wrote.
    __table_args__ = (UniqueConstraint("tenant", "invoice_number", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str = Field(index=True)
    customer_id: str = Field(index=True)
    sequence: int
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    promised_date: date
    deadline: datetime
    recorded_by: str
    recorded_at: datetime
    task_id: int | None = None
    outcome: str = Field(default=PromiseOutcome.OPEN, index=True)
    outcome_at: datetime | None = None
    paid_minor: int = Field(default=0, sa_type=BigInteger)


class StoredDispute(SQLModel, table=True):
    """A contested amount of one invoice: category, owner, and how it was resolved."""

    __tablename__ = "dispute"
    __table_args__ = (UniqueConstraint("tenant", "invoice_number", "dispute_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str = Field(index=True)
    customer_id: str = Field(index=True)
    dispute_id: str
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    category: str = Field(index=True)
    opened_at: datetime
    opened_by: str
    note: str = ""
    owner_id: str | None = Field(default=None, index=True)
    sla_due_at: datetime | None = None
    status: str = Field(default=DisputeStatus.OPEN, index=True)
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    credit_minor: int = Field(default=0, sa_type=BigInteger)
    resolution_note: str = ""


RecordT = TypeVar("RecordT")
RowT = TypeVar("RowT")

# Once a promise or a dispute has ended, a late write of an earlier state (an activity
# attempt that timed out but committed afterwards) must not reopen it.
_PROMISE_FINAL = {o.value for o in PromiseOutcome} - {PromiseOutcome.OPEN.value}
_DISPUTE_FINAL = {s.value for s in DisputeStatus} - {DisputeStatus.OPEN.value}


def _write_once(
    write: Callable[[Engine, RecordT], RowT], engine: Engine, record: RecordT
) -> RowT:
    """Write a record once, however many attempts race to insert it."""
    try:
        return write(engine, record)
    except IntegrityError:
        # A concurrent attempt inserted the same row between our read and our insert; the
        # second write finds that row and updates it.
        return write(engine, record)


def record_promise(engine: Engine, record: PromiseRecord) -> StoredPromise:
    """Write a promise as its case sees it now; the same record again changes nothing."""
    return _write_once(_write_promise, engine, record)


def _write_promise(engine: Engine, record: PromiseRecord) -> StoredPromise:
    with session_scope(engine) as session:
        row = session.exec(
            select(StoredPromise)
            .where(
                StoredPromise.tenant == record.tenant,
                StoredPromise.invoice_number == record.invoice_number,
                StoredPromise.sequence == record.sequence,
            )
            .with_for_update()
        ).first()
        if row is None:
            row = StoredPromise(
                tenant=record.tenant,
                invoice_number=record.invoice_number,
                customer_id=record.customer_id,
                sequence=record.sequence,
                amount_minor=record.amount_minor,
                currency=record.currency,
                promised_date=record.promised_date,
                deadline=record.deadline,
                recorded_by=record.recorded_by,
                recorded_at=record.recorded_at,
                task_id=record.task_id,
            )
        if row.outcome not in _PROMISE_FINAL:
            row.outcome = PromiseOutcome(record.outcome)
            row.outcome_at = record.outcome_at
            row.paid_minor = record.paid_minor
        session.add(row)
        session.flush()
    log.info(
        "promise %s of invoice %s: %s",
        record.sequence,
        record.invoice_number,
        row.outcome,
    )
    return row


def record_dispute(engine: Engine, record: DisputeRecord) -> StoredDispute:
    """Write a dispute as its case sees it now; the same record again changes nothing."""
    return _write_once(_write_dispute, engine, record)


def _write_dispute(engine: Engine, record: DisputeRecord) -> StoredDispute:
    with session_scope(engine) as session:
        row = session.exec(
            select(StoredDispute)
            .where(
                StoredDispute.tenant == record.tenant,
                StoredDispute.invoice_number == record.invoice_number,
                StoredDispute.dispute_id == record.dispute_id,
            )
            .with_for_update()
        ).first()
        if row is None:
            row = StoredDispute(
                tenant=record.tenant,
                invoice_number=record.invoice_number,
                customer_id=record.customer_id,
                dispute_id=record.dispute_id,
                amount_minor=record.amount_minor,
                currency=record.currency,
                category=record.category.value,
                opened_at=record.opened_at,
                opened_by=record.opened_by,
                note=record.note,
            )
        row.owner_id = record.owner_id or row.owner_id
        row.sla_due_at = record.sla_due_at or row.sla_due_at
        if row.status not in _DISPUTE_FINAL:
            row.status = DisputeStatus(record.status)
            row.resolved_at = record.resolved_at
            row.resolved_by = record.resolved_by
            row.credit_minor = record.credit_minor
            row.resolution_note = record.resolution_note
        session.add(row)
        session.flush()
    log.info(
        "dispute %s of invoice %s: %s",
        record.dispute_id,
        record.invoice_number,
        row.status,
    )
    return row


def promises_of(
    engine: Engine, tenant: str, invoice_number: str
) -> list[StoredPromise]:
    """An invoice's promises, first one first."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(StoredPromise)
                .where(
                    StoredPromise.tenant == tenant,
                    StoredPromise.invoice_number == invoice_number,
                )
                .order_by(col(StoredPromise.sequence))
            ).all()
        )


def disputes_of(
    engine: Engine, tenant: str, invoice_number: str
) -> list[StoredDispute]:
    """An invoice's disputes, in the order they were opened."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(StoredDispute)
                .where(
                    StoredDispute.tenant == tenant,
                    StoredDispute.invoice_number == invoice_number,
                )
                .order_by(col(StoredDispute.opened_at), col(StoredDispute.id))
            ).all()
        )


def broken_promise_dates(
    session: Session, tenant: str, customer_ids: Iterable[str]
) -> dict[str, list[datetime]]:
    """When each customer's promises were broken, oldest first, keyed by customer id."""
    ids = sorted(set(customer_ids))
    found: dict[str, list[datetime]] = {}
    for start in range(0, len(ids), 500):
        rows = session.exec(
            select(StoredPromise).where(
                StoredPromise.tenant == tenant,
                col(StoredPromise.customer_id).in_(ids[start : start + 500]),
                StoredPromise.outcome == PromiseOutcome.BROKEN,
                col(StoredPromise.outcome_at).is_not(None),
            )
        ).all()
        for row in rows:
            assert row.outcome_at is not None
            found.setdefault(row.customer_id, []).append(as_utc(row.outcome_at))
    return {customer: sorted(days) for customer, days in found.items()}


def broken_promises_before(
    broken_at: Iterable[datetime], issue_date: date, time_zone: str
) -> int:
    """Promises broken on a local date before ``issue_date``: what was known at issue."""
    days = Counter(local_date_of(at, time_zone) for at in broken_at)
    return sum(n for day, n in days.items() if day < issue_date)
