"""Replay activities: open a day's cases, end disputes, pay settlements; raise its disputes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client

from receivables.case import (
    DisputeCategory,
    DisputeOpened,
    DisputeResolution,
    DisputeResolved,
    PaymentReceived,
)
from receivables.cases import case_from_store, case_handle, report_payment, start_case
from receivables.policy import Policy, PolicyBook
from receivables.store import Customer, Invoice, InvoiceStatus, session_scope
from workflows.invoice import InvoiceWorkflow

# Who the case file names as having opened and rejected the replayed disputes.
REPLAY_ACTOR = "replay"
REPLAY_DISPUTE_ID = "replay"


@dataclass(frozen=True)
class ReplayDispute:
    """A dispute replayed on an invoice the portfolio marks disputed, and when it ends."""

    invoice_number: str
    amount_minor: int
    category: DisputeCategory
    opens_on: date
    resolves_on: date | None  # None: never settled, so the dispute stays open


@dataclass(frozen=True)
class ReplayDay:
    """One replayed calendar day of one tenant's portfolio."""

    tenant: str
    day: date
    case_task_queue: str
    # Only the disputes the activity acts on: those ending, or those opening, on this day.
    disputes: list[ReplayDispute] = field(default_factory=list)
    jurisdiction: str | None = None  # replaces every policy's contact-rule profile


@dataclass(frozen=True)
class ReplayDayResult:
    """What a replayed day did, summed over the whole replay by the driver."""

    cases_opened: int = 0
    payments_reported: int = 0
    disputes_opened: int = 0
    disputes_resolved: int = 0

    def plus(self, other: ReplayDayResult) -> ReplayDayResult:
        """Add another day's counts."""
        return ReplayDayResult(
            cases_opened=self.cases_opened + other.cases_opened,
            payments_reported=self.payments_reported + other.payments_reported,
            disputes_opened=self.disputes_opened + other.disputes_opened,
            disputes_resolved=self.disputes_resolved + other.disputes_resolved,
        )


class ReplayActivities:
    """Opens cases, disputes and payments through the same code an operator's commands use."""

    def __init__(self, client: Client, engine: Engine, book: PolicyBook) -> None:
        self._client = client
        self._engine = engine
        self._book = book

    @activity.defn(name="replay_day")
    async def replay_day(self, request: ReplayDay) -> ReplayDayResult:
        """The day's morning: open its cases, end its disputes, then record its settlements."""
        opened = await self._open_cases(request)
        disputes_resolved = await self._resolve_disputes(request)
        paid = await self._report_payments(request)
        return ReplayDayResult(opened, paid, disputes_resolved=disputes_resolved)

    @activity.defn(name="raise_disputes")
    async def raise_disputes(self, request: ReplayDay) -> ReplayDayResult:
        """The day's evening: open the disputes raised that day."""
        return ReplayDayResult(disputes_opened=await self._open_disputes(request))

    async def _open_cases(self, request: ReplayDay) -> int:
        now = activity.info().current_attempt_scheduled_time
        issued = self._issued_on(request)
        for invoice, customer in issued:
            policy = self._policy_of(invoice, request.jurisdiction)
            case = case_from_store(invoice, customer, policy, invoice.segment or "")
            await start_case(
                self._client, case, task_queue=request.case_task_queue, now=now
            )
        return len(issued)

    def _policy_of(self, invoice: Invoice, jurisdiction: str | None) -> Policy:
        policy = self._book.policies[invoice.policy_name or ""]
        if jurisdiction is None:
            return policy
        # The case pins a copy: the book, shared by the worker, stays as loaded.
        return policy.model_copy(update={"jurisdiction": jurisdiction})

    async def _open_disputes(self, request: ReplayDay) -> int:
        opened = 0
        for dispute in request.disputes:
            raised = DisputeOpened(
                dispute_id=REPLAY_DISPUTE_ID,
                amount_minor=dispute.amount_minor,
                category=dispute.category,
                opened_by=REPLAY_ACTOR,
                note="marked disputed in the replayed portfolio",
            )
            handle = case_handle(self._client, request.tenant, dispute.invoice_number)
            # A signal, not an update: the time-skipping test server can time out waiting on
            # updates sent from inside an activity; the case records a repeat as ignored.
            await handle.signal(InvoiceWorkflow.report_dispute, raised)
            opened += 1
        return opened

    async def _resolve_disputes(self, request: ReplayDay) -> int:
        resolved = 0
        for dispute in request.disputes:
            rejected = DisputeResolved(
                dispute_id=REPLAY_DISPUTE_ID,
                resolution=DisputeResolution.REJECTED,
                resolved_by=REPLAY_ACTOR,
                note="the portfolio shows the invoice paid in full",
            )
            handle = case_handle(self._client, request.tenant, dispute.invoice_number)
            await handle.signal(InvoiceWorkflow.report_dispute_resolution, rejected)
            resolved += 1
        return resolved

    async def _report_payments(self, request: ReplayDay) -> int:
        now = activity.info().current_attempt_scheduled_time
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
        return len(settled)

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
                .join(Customer, col(Customer.customer_id) == col(Invoice.customer_id))
                .where(
                    Invoice.tenant == request.tenant,
                    Customer.tenant == request.tenant,
                    Invoice.issue_date == request.day,
                    Invoice.status == InvoiceStatus.OPEN,
                )
            ).all()
            return [(invoice, customer) for invoice, customer in issued]
