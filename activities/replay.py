"""Replay activities: on a replayed day, open the cases issued and pay the invoices settled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio import activity
from temporalio.client import Client

from receivables.case import PaymentReceived
from receivables.cases import case_from_store, report_payment, start_case
from receivables.policy import PolicyBook
from receivables.store import Customer, Invoice, InvoiceStatus, session_scope


@dataclass(frozen=True)
class ReplayDay:
    """One replayed calendar day of one tenant's portfolio."""

    tenant: str
    day: date
    case_task_queue: str


@dataclass(frozen=True)
class ReplayDayResult:
    """What a replayed day did, summed over the whole replay by the driver."""

    cases_opened: int = 0
    payments_reported: int = 0

    def plus(self, other: ReplayDayResult) -> ReplayDayResult:
        """Add another day's counts."""
        return ReplayDayResult(
            self.cases_opened + other.cases_opened,
            self.payments_reported + other.payments_reported,
        )


class ReplayActivities:
    """Opens cases and reports payments through the same code an operator's commands use."""

    def __init__(self, client: Client, engine: Engine, book: PolicyBook) -> None:
        self._client = client
        self._engine = engine
        self._book = book

    @activity.defn(name="replay_day")
    async def replay_day(self, request: ReplayDay) -> ReplayDayResult:
        """Open the cases issued that day, then record the day's settlements."""
        now = activity.info().current_attempt_scheduled_time
        issued = self._issued_on(request)
        for invoice, customer in issued:
            policy = self._book.policies[invoice.policy_name or ""]
            case = case_from_store(invoice, customer, policy, invoice.segment or "")
            await start_case(
                self._client, case, task_queue=request.case_task_queue, now=now
            )
        settled = self._settled_on(request)
        for invoice in settled:
            payment = PaymentReceived(
                reference=f"replay-{invoice.invoice_number}",
                amount_minor=invoice.balance_minor,
                currency=invoice.currency,
                received_at=now,
            )
            await report_payment(
                self._client,
                self._engine,
                request.tenant,
                invoice.invoice_number,
                payment,
            )
        return ReplayDayResult(len(issued), len(settled))

    def _settled_on(self, request: ReplayDay) -> list[Invoice]:
        with session_scope(self._engine) as session:
            settled = session.exec(
                select(Invoice).where(
                    Invoice.tenant == request.tenant,
                    Invoice.settled_date == request.day,
                    Invoice.status == InvoiceStatus.OPEN,
                )
            ).all()
            return list(settled)

    def _issued_on(self, request: ReplayDay) -> list[tuple[Invoice, Customer]]:
        with session_scope(self._engine) as session:
            issued = session.exec(
                select(Invoice, Customer)
                .join(Customer, Customer.customer_id == Invoice.customer_id)  # type: ignore[arg-type]
                .where(
                    Invoice.tenant == request.tenant,
                    Customer.tenant == request.tenant,
                    Invoice.issue_date == request.day,
                    Invoice.status == InvoiceStatus.OPEN,
                )
            ).all()
            return [(invoice, customer) for invoice, customer in issued]
