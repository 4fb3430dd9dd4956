"""The operator actions log: who changed what by hand, when, why, and from what to what."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, or_, select

from receivables.store import session_scope, utc_now


class ActionKind(enum.StrEnum):
    """What an operator did by hand; each kind is recorded by the command that does it."""

    CANCEL = "cancel"
    WRITE_OFF = "write_off"
    MOVE_DUE = "move_due"
    PAYMENT = "payment"
    CREDIT_NOTE = "credit_note"
    RETURN_CHECKED = "return_checked"  # a returned bank line a person has looked into
    # A debtor's personal data rights (receivables.debtor_data): the request answered,
    # with counts only, never the data itself.
    EXPORT_PERSONAL_DATA = "export_personal_data"
    ERASE_PERSONAL_DATA = "erase_personal_data"


class OperatorAction(SQLModel, table=True):
    """One hand-entered change, appended in the transaction that made it; never updated.

    Supervisor commands keep their own log (SupervisorAction), stop facts theirs
    (StopFactRecord), tasks, promises and disputes their rows: this one holds the changes
    that had no record of their own, such as the reason of a write-off or every due date
    an invoice had before the current one.
    """

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str | None = Field(default=None, index=True)
    customer_id: str = Field(index=True)
    kind: str
    person_id: str
    recorded_at: datetime = Field(default_factory=utc_now)
    # When the fact took effect, where it has a day or an instant of its own.
    effective_on: date | None = None
    effective_at: datetime | None = None
    reason: str = ""
    before_value: str | None = None
    after_value: str | None = None


def record_action(
    session: Session,
    *,
    tenant: str,
    customer_id: str,
    invoice_number: str | None,
    kind: ActionKind,
    person_id: str,
    reason: str = "",
    before: object = None,
    after: object = None,
    effective_on: date | None = None,
    effective_at: datetime | None = None,
) -> OperatorAction:
    """Append one action in the caller's transaction: it commits with the change, or not."""
    action = OperatorAction(
        tenant=tenant,
        invoice_number=invoice_number,
        customer_id=customer_id,
        kind=kind.value,
        person_id=person_id,
        reason=reason,
        before_value=None if before is None else str(before),
        after_value=None if after is None else str(after),
        effective_on=effective_on,
        effective_at=effective_at,
    )
    session.add(action)
    return action


def actions_of(
    engine: Engine, tenant: str, invoice_number: str, customer_id: str
) -> list[OperatorAction]:
    """The actions on one invoice and on its debtor as a whole, oldest first."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(OperatorAction)
            .where(
                OperatorAction.tenant == tenant,
                or_(
                    OperatorAction.invoice_number == invoice_number,
                    (col(OperatorAction.invoice_number).is_(None))
                    & (OperatorAction.customer_id == customer_id),
                ),
            )
            .order_by(col(OperatorAction.recorded_at), col(OperatorAction.id))
        ).all()
    return list(rows)
