"""Opening and steering invoice cases from outside Temporal: connect, start, pay, credit, close."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, update
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import TLSConfig

from receivables.case import (
    CaseClosed,
    CaseState,
    CreditApplied,
    InvoiceCase,
    PaymentReceived,
    Stage,
    case_workflow_id,
)
from receivables.case_attributes import initial_attributes
from receivables.money import format_money
from receivables.planning import days_past_due, plan_case, upcoming_step
from receivables.policy import Policy
from receivables.settings import TemporalSettings
from receivables.store import (
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    find_invoice,
    session_scope,
)
from workflows.invoice import InvoiceWorkflow

log = logging.getLogger(__name__)


async def connect(settings: TemporalSettings) -> Client:
    """Connect to Temporal as configured: the local dev server, a cluster, or Temporal Cloud."""
    tls: bool | TLSConfig = settings.tls
    if settings.tls_client_cert_path or settings.tls_server_ca_path:
        tls = TLSConfig(
            client_cert=_read(settings.tls_client_cert_path),
            client_private_key=_read(settings.tls_client_key_path),
            server_root_ca_cert=_read(settings.tls_server_ca_path),
            domain=settings.tls_server_name,
        )
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=tls,
        data_converter=pydantic_data_converter,
    )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def case_from_store(
    invoice: Invoice, customer: Customer | None, policy: Policy, segment: str
) -> InvoiceCase:
    """Build a case's start input from its committed invoice row and governing policy."""
    if invoice.due_date is None:
        raise ValueError(
            f"invoice {invoice.invoice_number} has no due date; "
            "set one or the customer's payment terms before opening its case"
        )
    time_zone = customer.time_zone if customer else policy.time_zone
    return InvoiceCase(
        tenant=invoice.tenant,
        invoice_number=invoice.invoice_number,
        customer_id=invoice.customer_id,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        # What is owed when the case opens: earlier payments are already netted out.
        amount_minor=invoice.balance_minor,
        currency=invoice.currency,
        time_zone=time_zone,
        segment=segment,
        policy=policy,
    )


@dataclass(frozen=True)
class StartResult:
    """Whether a case was opened now or already existed (a re-import)."""

    workflow_id: str
    started: bool


async def start_case(
    client: Client, case: InvoiceCase, *, task_queue: str, now: datetime
) -> StartResult:
    """Open the case of an invoice; a second start of the same invoice opens nothing."""
    workflow_id = case_workflow_id(case.tenant, case.invoice_number)
    plan = plan_case(
        case.policy,
        issue_date=case.issue_date,
        due_date=case.due_date,
        time_zone=case.time_zone,
    )
    upcoming = upcoming_step(plan, set(), now)
    late = days_past_due(case.due_date, now, case.time_zone)
    stage = Stage.OVERDUE if late > 0 else Stage.NOT_DUE
    try:
        await client.start_workflow(
            InvoiceWorkflow.run,
            case,
            id=workflow_id,
            task_queue=task_queue,
            # Never a second case for the same invoice, not even after the first one closed.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_attributes(
                case, stage=stage, next_action_at=upcoming.at if upcoming else None
            ),
            static_summary=_summary(case),
            static_details=_details(case),
        )
    except WorkflowAlreadyStartedError:
        return StartResult(workflow_id, started=False)
    return StartResult(workflow_id, started=True)


def _summary(case: InvoiceCase) -> str:
    amount = format_money(case.amount_minor, case.currency)
    return (
        f"Invoice {case.invoice_number} · customer {case.customer_id} · "
        f"{amount} {case.currency} due {case.due_date}"
    )


def _details(case: InvoiceCase) -> str:
    steps = ", ".join(step.id for step in case.policy.steps)
    return (
        f"**Segment:** {case.segment}\n"
        f"**Policy:** {case.policy.name}@{case.policy.version} ({steps})\n"
        f"**Issued:** {case.issue_date} · **Time zone:** {case.time_zone}"
    )


def case_handle(
    client: Client, tenant: str, invoice_number: str
) -> WorkflowHandle[InvoiceWorkflow, CaseState]:
    """The handle of an invoice's case, by its deterministic id."""
    return client.get_workflow_handle_for(
        InvoiceWorkflow.run, case_workflow_id(tenant, invoice_number)
    )


@dataclass(frozen=True)
class StoredMoveResult:
    """What committing a payment or credit did to the store."""

    applied: bool  # False for a reference already recorded
    balance_minor: int
    status: str


def commit_money_movement(
    engine: Engine,
    tenant: str,
    invoice_number: str,
    *,
    kind: PaymentKind,
    reference: str,
    amount_minor: int,
    currency: str,
    at: datetime,
) -> StoredMoveResult:
    """Commit a payment or credit to the store first, so a racing send sees it."""
    try:
        with session_scope(engine) as session:
            invoice = _payable_invoice(session, tenant, invoice_number, currency)
            session.add(
                Payment(
                    tenant=tenant,
                    invoice_number=invoice_number,
                    reference=reference,
                    kind=kind,
                    amount_minor=amount_minor,
                    currency=currency,
                    received_at=at,
                )
            )
            # Subtract in SQL, not from the balance read above: a movement committed since
            # that read must count, and the write holds the row until this one commits.
            session.exec(
                update(Invoice)
                .where(col(Invoice.id) == invoice.id)
                .values(
                    balance_minor=col(Invoice.balance_minor) - amount_minor,
                    updated_at=at,
                )
            )
            session.refresh(invoice)
            if invoice.balance_minor <= 0 and invoice.status == InvoiceStatus.OPEN:
                invoice.status = (
                    InvoiceStatus.PAID
                    if kind == PaymentKind.PAYMENT
                    else InvoiceStatus.CLOSED_BY_CREDIT
                )
                session.add(invoice)
            return StoredMoveResult(True, invoice.balance_minor, invoice.status)
    except IntegrityError:
        with session_scope(engine) as session:
            invoice = _payable_invoice(session, tenant, invoice_number, currency)
            return StoredMoveResult(False, invoice.balance_minor, invoice.status)


def _payable_invoice(
    session: Session, tenant: str, invoice_number: str, currency: str
) -> Invoice:
    invoice = find_invoice(session, tenant, invoice_number)
    if invoice is None:
        raise LookupError(
            f"no invoice {invoice_number} for tenant {tenant}; import it first"
        )
    if invoice.currency != currency:
        raise ValueError(
            f"invoice {invoice_number} is in {invoice.currency}, not {currency}; "
            "convert the amount before recording it"
        )
    return invoice


async def report_payment(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_number: str,
    payment: PaymentReceived,
) -> StoredMoveResult:
    """Record a payment in the store, then tell the invoice's case."""
    result = commit_money_movement(
        engine,
        tenant,
        invoice_number,
        kind=PaymentKind.PAYMENT,
        reference=payment.reference,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        at=payment.received_at,
    )
    await case_handle(client, tenant, invoice_number).signal(
        InvoiceWorkflow.record_payment, payment
    )
    return result


async def report_credit(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_number: str,
    credit: CreditApplied,
) -> StoredMoveResult:
    """Record a credit note or adjustment in the store, then tell the invoice's case."""
    result = commit_money_movement(
        engine,
        tenant,
        invoice_number,
        kind=PaymentKind(credit.kind),
        reference=credit.reference,
        amount_minor=credit.amount_minor,
        currency=credit.currency,
        at=credit.applied_at,
    )
    await case_handle(client, tenant, invoice_number).signal(
        InvoiceWorkflow.apply_credit, credit
    )
    return result


async def close_case(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_number: str,
    *,
    stage: Stage,
    closing: CaseClosed,
) -> None:
    """Cancel or write off an invoice: the store first, then its case."""
    status = {
        Stage.CANCELLED: InvoiceStatus.CANCELLED,
        Stage.WRITTEN_OFF: InvoiceStatus.WRITTEN_OFF,
    }
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, invoice_number)
        if invoice is None:
            raise LookupError(f"no invoice {invoice_number} for tenant {tenant}")
        invoice.status = status[stage]
        session.add(invoice)
    signal = (
        InvoiceWorkflow.cancel
        if stage == Stage.CANCELLED
        else InvoiceWorkflow.write_off
    )
    await case_handle(client, tenant, invoice_number).signal(signal, closing)
