"""Opening and steering invoice cases from outside Temporal: connect, start, pay, credit, close."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import DateTime, String, and_, bindparam, insert
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from receivables.case import (
    CASE_BEHAVIOUR,
    CaseClosed,
    CaseState,
    CreditApplied,
    DueDateChanged,
    InvoiceCase,
    PaymentReceived,
    Stage,
    case_workflow_id,
)
from receivables.case_attributes import initial_attributes
from receivables.money import MAX_MINOR_UNITS, format_amount
from receivables.operator_actions import ActionKind, record_action
from receivables.payloads import CASE_DATA_CONVERTER
from receivables.planning import days_past_due, plan_case, upcoming_step
from receivables.policy import Policy, PolicyBook
from receivables.settings import CONCURRENT_STARTS, TemporalSettings
from receivables.store import (
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    find_customer,
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
    try:
        return await Client.connect(
            settings.address,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=tls,
            data_converter=CASE_DATA_CONVERTER,
            runtime=metrics_runtime(settings.metrics_address),
        )
    except RuntimeError as error:
        # The SDK says "Failed client connect" with the transport's reason, and no more.
        raise TemporalUnreachable(
            f"cannot reach Temporal at {settings.address} (namespace "
            f"{settings.namespace}): {transport_reason(error)}; start the local one with "
            "'python starter.py server' (or 'make run', which also starts a worker) or "
            "check TEMPORAL_ADDRESS and its credentials"
        ) from None


# The transport's own words inside the SDK's debug rendering of a Rust error, e.g.
# '... Os { code: 111, kind: ConnectionRefused, message: "Connection refused" } ...'.
_TRANSPORT_MESSAGE = re.compile(r'message: "([^"]+)"')


def transport_reason(error: BaseException) -> str:
    """Why a connection failed, in the operating system's words where the SDK gives them."""
    text = str(error)
    reasons = _TRANSPORT_MESSAGE.findall(text)
    return reasons[-1].lower() if reasons else text


class TemporalUnreachable(RuntimeError):
    """The configured Temporal frontend did not answer; the message says where and why."""


_RUNTIMES: dict[str, Runtime] = {}


def metrics_runtime(address: str | None) -> Runtime | None:
    """A runtime exporting Prometheus metrics on ``address``, one per address and process."""
    if not address:
        return None
    if address not in _RUNTIMES:
        telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=address))
        _RUNTIMES[address] = Runtime(telemetry=telemetry)
    return _RUNTIMES[address]


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
        disputed=invoice.disputed,
        behaviour=CASE_BEHAVIOUR,
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
        spread_key=case.invoice_number,
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
    amount = format_amount(case.amount_minor, case.currency)
    return (
        f"Invoice {case.invoice_number} · customer {case.customer_id} · "
        f"{amount} due {case.due_date}"
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


def unknown_invoice(tenant: str, invoice_number: str) -> LookupError:
    """The refusal for a folio the store does not hold, saying what to check."""
    return LookupError(
        f"no invoice {invoice_number!r} for tenant {tenant}; check the folio "
        "(leading zeros count) or import it first"
    )


def stored_invoice(engine: Engine, tenant: str, invoice_number: str) -> Invoice:
    """The tenant's invoice with that folio, or the refusal of an unknown folio."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, invoice_number)
    if invoice is None:
        raise unknown_invoice(tenant, invoice_number)
    return invoice


class CaseCommandRefused(ValueError):
    """A command the store's facts forbid; nothing was changed. The message says why."""


@dataclass(frozen=True)
class StoredMoveResult:
    """What committing a payment or credit did to the store."""

    applied: bool  # False for a reference already recorded on this invoice
    balance_minor: int
    status: str

    @property
    def overpaid_minor(self) -> int:
        """How much more than the balance was received: a refund or a credit to decide."""
        return max(0, -self.balance_minor)


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
    entered_by: str | None = None,
) -> StoredMoveResult:
    """Commit a payment or credit to the store first, so a racing send sees it.

    A movement entered by hand names its person (``entered_by``): the operator actions
    log gets its line in the same transaction. A bank file's movements name nobody.
    """
    _refuse_unless_recordable(reference, amount_minor, kind)
    try:
        with session_scope(engine) as session:
            invoice = _payable_invoice(session, tenant, invoice_number, currency)
            if invoice.status != InvoiceStatus.OPEN and _recorded(
                session, tenant, reference
            ):
                # A repeat of a movement that closed the invoice: the same answer as before.
                raise _Repeat
            _refuse_to_reopen(invoice, reference, kind, amount_minor)
            _refuse_unless_open(invoice, f"record {reference} on")
            connection = session.connection()
            connection.execute(
                _INSERT_MOVEMENT,
                {
                    "tenant": tenant,
                    "invoice_number": invoice_number,
                    "reference": reference,
                    "kind": str(kind),
                    "amount_minor": amount_minor,
                    "currency": currency,
                    "received_at": at,
                },
            )
            # Subtract in SQL, not from the balance read above: a movement committed since
            # that read must count, and the write holds the row until this one commits.
            subtracted = connection.execute(
                _SUBTRACT_MOVEMENT,
                {"invoice_id": invoice.id, "moved_minor": amount_minor, "moved_at": at},
            ).first()
            if subtracted is None:
                # Closed (paid, cancelled) since the read above: as refused as it would
                # be a moment later, and the movement's row goes with the rollback.
                raise _ClosedMeanwhile
            balance, status = subtracted
            if balance <= 0 and status == InvoiceStatus.OPEN:
                status = (
                    InvoiceStatus.PAID
                    if kind == PaymentKind.PAYMENT
                    else InvoiceStatus.CLOSED_BY_CREDIT
                )
                connection.execute(
                    _CLOSE_SETTLED, {"invoice_id": invoice.id, "closed_as": str(status)}
                )
            if entered_by is not None:
                record_action(
                    session,
                    tenant=tenant,
                    customer_id=invoice.customer_id,
                    invoice_number=invoice_number,
                    kind=_ACTION_OF_MOVEMENT[kind],
                    person_id=entered_by,
                    reason=reference,
                    before=format_amount(balance + amount_minor, currency),
                    after=format_amount(balance, currency),
                    effective_at=at,
                )
            return StoredMoveResult(True, balance, InvoiceStatus(status))
    except (IntegrityError, _Repeat):
        return _already_recorded(
            engine, tenant, invoice_number, reference, (kind, amount_minor)
        )
    except _ClosedMeanwhile:
        with session_scope(engine) as session:
            invoice = _payable_invoice(session, tenant, invoice_number, currency)
        _refuse_unless_open(invoice, f"record {reference} on")
        raise CaseCommandRefused(
            f"invoice {invoice_number} changed while {reference} was being recorded; "
            "nothing was recorded: run the command again"
        ) from None


# What a hand-entered movement is called in the operator actions log.
_ACTION_OF_MOVEMENT = {
    PaymentKind.PAYMENT: ActionKind.PAYMENT,
    PaymentKind.CREDIT_NOTE: ActionKind.CREDIT_NOTE,
    PaymentKind.ADJUSTMENT: ActionKind.CREDIT_NOTE,
}


class _Repeat(Exception):
    """The movement's reference is already recorded; nothing is written again."""


class _ClosedMeanwhile(Exception):
    """The invoice stopped being open between its read and the movement's write."""


def _refuse_to_reopen(
    invoice: Invoice, reference: str, kind: str, amount_minor: int
) -> None:
    """A reversal after settlement: the case has ended, so the debt needs a document."""
    settled = (InvoiceStatus.PAID, InvoiceStatus.CLOSED_BY_CREDIT)
    if (
        kind == PaymentKind.ADJUSTMENT
        and amount_minor < 0
        and invoice.status in settled
    ):
        owed = format_amount(-amount_minor, invoice.currency)
        raise CaseCommandRefused(
            f"cannot record {reference} on invoice {invoice.invoice_number}: it is "
            f"{invoice.status} and its case has ended; to collect {owed} again (a bounced "
            "cheque, a reversed transfer) issue a debit note (nota de débito) and import "
            "it as an invoice of its own; nothing was changed"
        )


def _refuse_unless_recordable(reference: str, amount_minor: int, kind: str) -> None:
    """Refuse, before anything is read, a movement that could never be recorded right."""
    if not reference.strip():
        raise CaseCommandRefused(
            "a movement needs its bank or document reference, and this one is blank: "
            "the reference is what makes recording the same movement twice harmless"
        )
    if amount_minor == 0 or (amount_minor < 0 and kind != PaymentKind.ADJUSTMENT):
        raise CaseCommandRefused(
            f"{reference}: an amount must be above zero (got {amount_minor}); "
            "a reversal is an adjustment, not a negative payment"
            if kind != PaymentKind.ADJUSTMENT
            else f"{reference}: an adjustment of 0 changes nothing; nothing was recorded"
        )
    if abs(amount_minor) > MAX_MINOR_UNITS:
        raise CaseCommandRefused(
            f"{reference}: {amount_minor} minor units is beyond the largest amount "
            f"recorded ({MAX_MINOR_UNITS}); check the amount for extra digits"
        )


def _recorded(session: Session, tenant: str, reference: str) -> bool:
    params = {"tenant": tenant, "reference": reference}
    return (
        session.connection().execute(_MOVEMENT_BY_REFERENCE, params).first() is not None
    )


# Built once: a statement built per call costs more CPU than running it on SQLite.
_INSERT_MOVEMENT = insert(Payment)
_SUBTRACT_MOVEMENT = (
    update(Invoice)
    .where(
        col(Invoice.id) == bindparam("invoice_id"),
        col(Invoice.status) == InvoiceStatus.OPEN.value,
    )
    .values(
        balance_minor=col(Invoice.balance_minor) - bindparam("moved_minor"),
        updated_at=bindparam("moved_at", type_=DateTime()),
    )
    .returning(col(Invoice.balance_minor), col(Invoice.status))
)
_CLOSE_SETTLED = (
    update(Invoice)
    .where(col(Invoice.id) == bindparam("invoice_id"))
    .values(status=bindparam("closed_as", type_=String()))
)
_MOVEMENT_BY_REFERENCE = sa_select(col(Payment.id)).where(
    col(Payment.tenant) == bindparam("tenant"),
    col(Payment.reference) == bindparam("reference"),
)


def _already_recorded(
    engine: Engine,
    tenant: str,
    invoice_number: str,
    reference: str,
    movement: tuple[str, int],
) -> StoredMoveResult:
    with session_scope(engine) as session:
        holder = session.exec(
            select(Payment).where(
                Payment.tenant == tenant, Payment.reference == reference
            )
        ).first()
        invoice = find_invoice(session, tenant, invoice_number)
    assert holder is not None and invoice is not None
    if holder.invoice_number != invoice_number:
        raise CaseCommandRefused(
            f"reference {reference} is already recorded on invoice {holder.invoice_number}; "
            "give this movement its own bank or document reference"
        )
    kind, amount_minor = movement
    if (holder.kind, holder.amount_minor) != (str(kind), amount_minor):
        recorded = format_amount(holder.amount_minor, holder.currency)
        raise CaseCommandRefused(
            f"reference {reference} is already recorded on invoice {invoice_number} as a "
            f"{holder.kind.replace('_', ' ')} of {recorded}; a different movement needs "
            "its own bank or document reference"
        )
    return StoredMoveResult(False, invoice.balance_minor, invoice.status)


def _refuse_unless_open(invoice: Invoice, action: str) -> None:
    if invoice.status != InvoiceStatus.OPEN:
        raise CaseCommandRefused(
            f"cannot {action} invoice {invoice.invoice_number}: it is {invoice.status}"
            + (
                f"; set its due date first: '{set_due_date_command(invoice.invoice_number)}'"
                if invoice.status == InvoiceStatus.NEEDS_DUE_DATE
                else "; nothing was changed"
            )
        )


def _payable_invoice(
    session: Session, tenant: str, invoice_number: str, currency: str
) -> Invoice:
    invoice = find_invoice(session, tenant, invoice_number)
    if invoice is None:
        raise unknown_invoice(tenant, invoice_number)
    if invoice.currency != currency:
        raise CaseCommandRefused(
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
    """Record a payment in the store, then tell the invoice's case (again, for a repeat)."""
    # In a thread: a caller's event loop may also be running a worker's polls.
    result = await asyncio.to_thread(
        commit_money_movement,
        engine,
        tenant,
        invoice_number,
        kind=PaymentKind.PAYMENT,
        reference=payment.reference,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        at=payment.received_at,
    )
    # A repeat is signalled too: if the first signal was lost, this one delivers it, and the
    # case ignores a reference it already applied.
    await tell_case(
        case_handle(client, tenant, invoice_number),
        InvoiceWorkflow.record_payment,
        payment,
        repeat=not result.applied,
    )
    return result


_Told = TypeVar("_Told")


async def tell_case(
    handle: WorkflowHandle[InvoiceWorkflow, CaseState],
    signal: Callable[[InvoiceWorkflow, _Told], None],
    fact: _Told,
    *,
    repeat: bool,
) -> None:
    """Signal a fact the store already holds; a repeat need not reach a case that ended."""
    try:
        await handle.signal(signal, fact)
    except RPCError as error:
        # The case heard the fact the first time, and ended (paid, say) since then.
        if repeat and error.status == RPCStatusCode.NOT_FOUND:
            return
        raise


async def report_credit(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_number: str,
    credit: CreditApplied,
) -> StoredMoveResult:
    """Record a credit note or adjustment in the store, then tell the invoice's case."""
    result = await asyncio.to_thread(
        commit_money_movement,
        engine,
        tenant,
        invoice_number,
        kind=PaymentKind(credit.kind),
        reference=credit.reference,
        amount_minor=credit.amount_minor,
        currency=credit.currency,
        at=credit.applied_at,
    )
    await tell_case(
        case_handle(client, tenant, invoice_number),
        InvoiceWorkflow.apply_credit,
        credit,
        repeat=not result.applied,
    )
    return result


@dataclass(frozen=True)
class ClosedInStore:
    """What closing an invoice in the store did, and whether its case must be told."""

    tell_case: bool
    # Closed so already: the case may not have heard the first time.
    repeat: bool = False


def close_in_store(
    engine: Engine, tenant: str, invoice_number: str, stage: Stage, closing: CaseClosed
) -> ClosedInStore:
    """Cancel or write off an open invoice in the store, or see it was closed so before.

    The operator actions log gets who and why in the same transaction; a repeat adds
    nothing, since it changed nothing.
    """
    closed_as = _CLOSED_AS[stage]
    for _ in range(_CLOSE_ATTEMPTS):
        with session_scope(engine) as session:
            invoice = find_invoice(session, tenant, invoice_number)
            if invoice is None:
                raise unknown_invoice(tenant, invoice_number)
            if invoice.status == closed_as:
                return ClosedInStore(tell_case=True, repeat=True)
            if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.NEEDS_DUE_DATE):
                _refuse_unless_open(invoice, _CLOSING_VERB[stage])
            # Written only if the status is still the one read: a payment that settled
            # the invoice since then wins, and the loop reads again.
            params = {
                "invoice_id": invoice.id,
                "expected": str(invoice.status),
                "closed_as": str(closed_as),
            }
            if session.connection().execute(_CLOSE_IF_UNCHANGED, params).rowcount:
                record_action(
                    session,
                    tenant=tenant,
                    customer_id=invoice.customer_id,
                    invoice_number=invoice_number,
                    kind=_CLOSING_ACTION[stage],
                    person_id=closing.closed_by,
                    reason=closing.reason,
                    before=invoice.status,
                    after=closed_as,
                )
                return ClosedInStore(tell_case=invoice.status == InvoiceStatus.OPEN)
    raise CaseCommandRefused(
        f"invoice {invoice_number} kept changing while it was being closed; "
        "run the command again"
    )


_CLOSED_AS = {
    Stage.CANCELLED: InvoiceStatus.CANCELLED,
    Stage.WRITTEN_OFF: InvoiceStatus.WRITTEN_OFF,
}
_CLOSING_ACTION = {
    Stage.CANCELLED: ActionKind.CANCEL,
    Stage.WRITTEN_OFF: ActionKind.WRITE_OFF,
}
_CLOSING_VERB = {Stage.CANCELLED: "cancel", Stage.WRITTEN_OFF: "write off"}
_CLOSE_ATTEMPTS = 3
_CLOSE_IF_UNCHANGED = (
    update(Invoice)
    .where(
        col(Invoice.id) == bindparam("invoice_id"),
        col(Invoice.status) == bindparam("expected", type_=String()),
    )
    .values(status=bindparam("closed_as", type_=String()))
)


async def change_due_date(
    client: Client,
    engine: Engine,
    book: PolicyBook,
    tenant: str,
    invoice_number: str,
    change: DueDateChanged,
    *,
    task_queue: str,
) -> str:
    """Move an open invoice's due date, or set a missing one and open the case."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, invoice_number)
        if invoice is None:
            raise unknown_invoice(tenant, invoice_number)
        if change.new_due_date < invoice.issue_date:
            raise CaseCommandRefused(
                f"{change.new_due_date} is before the issue date {invoice.issue_date}"
            )
        waiting = invoice.status == InvoiceStatus.NEEDS_DUE_DATE
        if not waiting:
            _refuse_unless_open(invoice, "move the due date of")
        # The store already has this date: a first run may have stopped before its case
        # heard it, so the case is told again, but nothing moved and nothing is logged.
        unchanged = invoice.due_date == change.new_due_date
        if not unchanged:
            # The log keeps every earlier due date; due_date_rule says who set this one.
            record_action(
                session,
                tenant=tenant,
                customer_id=invoice.customer_id,
                invoice_number=invoice_number,
                kind=ActionKind.MOVE_DUE,
                person_id=change.changed_by,
                reason=change.reason,
                before=invoice.due_date or "none",
                after=change.new_due_date,
                effective_on=change.new_due_date,
            )
            invoice.due_date = change.new_due_date
            invoice.due_date_rule = f"set by {change.changed_by}: {change.reason}"
        invoice.status = InvoiceStatus.OPEN
        session.add(invoice)
        customer = find_customer(session, tenant, invoice.customer_id)
    if waiting:
        policy = book.policies[invoice.policy_name or ""]
        case = case_from_store(invoice, customer, policy, invoice.segment or "")
        await start_case(client, case, task_queue=task_queue, now=datetime.now(UTC))
        return "due date set; case opened"
    await case_handle(client, tenant, invoice_number).signal(
        InvoiceWorkflow.change_due_date, change
    )
    if unchanged:
        return (
            f"the due date is already {change.new_due_date}; nothing moved (its case "
            "was told again, in case an earlier run stopped before telling it)"
        )
    return "due date moved; the case re-planned its steps"


class CasesNotOpened(RuntimeError):
    """Some invoices' cases could not be opened; every other case was. A re-run opens the rest."""

    def __init__(
        self, tenant: str, outcome: Counter[str], failures: dict[str, str]
    ) -> None:
        self.outcome, self.failures = outcome, failures
        listed = "; ".join(
            f"{number}: {reason}" for number, reason in sorted(failures.items())[:10]
        )
        more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
        super().__init__(
            f"{len(failures)} cases of tenant {tenant} were not opened ({listed}{more}); "
            f"{outcome['opened']} opened, {outcome['already open']} already open. "
            "Fix the cause and run open-cases again: cases already open are left alone"
        )


async def open_cases_without_one(
    client: Client,
    engine: Engine,
    book: PolicyBook,
    tenant: str,
    *,
    task_queue: str,
    concurrent_starts: int = CONCURRENT_STARTS,
) -> Counter[str]:
    """Start a case for every open invoice of a tenant; one that has a case is left alone.

    Up to ``concurrent_starts`` starts are in flight at once. An invoice whose start fails
    does not stop the others; the failures are raised together as ``CasesNotOpened``.
    """
    rows = _open_invoices(engine, tenant)
    outcome: Counter[str] = Counter()
    failures: dict[str, str] = {}
    now = datetime.now(UTC)
    # One iterator shared by every starter, so each invoice is taken exactly once.
    waiting = iter(rows)

    async def start_waiting_cases() -> None:
        for invoice, customer in waiting:
            number = invoice.invoice_number
            try:
                policy = book.policies[invoice.policy_name or ""]
                case = case_from_store(invoice, customer, policy, invoice.segment or "")
                result = await start_case(client, case, task_queue=task_queue, now=now)
            except Exception as error:  # reported per invoice; the others go on
                failures[number] = str(error) or type(error).__name__
                log.warning(
                    "case of %s not opened: %s",
                    number,
                    failures[number],
                    extra={"tenant": tenant, "invoice": number, "outcome": "failed"},
                )
                continue
            outcome["opened" if result.started else "already open"] += 1

    async with asyncio.TaskGroup() as starters:
        for _ in range(max(1, min(concurrent_starts, len(rows)))):
            starters.create_task(start_waiting_cases())
    if failures:
        raise CasesNotOpened(tenant, outcome, failures)
    return outcome


def invoices_waiting_for_a_due_date(engine: Engine, tenant: str) -> list[str]:
    """Folios of the tenant's invoices stored without a due date: no case opens for them."""
    with session_scope(engine) as session:
        folios = session.exec(
            select(Invoice.invoice_number)
            .where(
                Invoice.tenant == tenant,
                Invoice.status == InvoiceStatus.NEEDS_DUE_DATE,
            )
            .order_by(col(Invoice.invoice_number))
        ).all()
    return list(folios)


def set_due_date_command(folio: str) -> str:
    """The command that gives an invoice its due date and, if it had none, opens its case."""
    return f"starter.py move-due {folio} YYYY-MM-DD --reason TEXT --by PERSON"


def _open_invoices(engine: Engine, tenant: str) -> list[tuple[Invoice, Customer]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(Invoice, Customer)
            .join(
                Customer,
                and_(
                    col(Customer.tenant) == col(Invoice.tenant),
                    col(Customer.customer_id) == col(Invoice.customer_id),
                ),
            )
            .where(Invoice.tenant == tenant, Invoice.status == InvoiceStatus.OPEN)
        ).all()
    return list(rows)
