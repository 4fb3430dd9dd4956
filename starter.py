"""Command line for operators: run the demo, import, simulate, pay, inspect the outbox."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from receivables.bank_matching import (
    REFERENCE_PREFIX,
    Allocation,
    Decision,
    OpenItems,
    Outcome,
    decide,
)
from receivables.bank_movements import BankMovement
from receivables.bank_statements import StatementFormat, read_bank_statement
from receivables.case import (
    CaseClosed,
    CreditApplied,
    DueDateChanged,
    PaymentReceived,
    Stage,
)
from receivables.cases import (
    CaseCommandRefused,
    CasesNotOpened,
    StoredMoveResult,
    TemporalUnreachable,
    case_handle,
    change_due_date,
    close_in_store,
    commit_money_movement,
    connect,
    invoices_waiting_for_a_due_date,
    open_cases_without_one,
    set_due_date_command,
    stored_invoice,
    tell_case,
)
from receivables.debtor_data import (
    Erasure,
    erase_customer,
    erase_settled_before,
    export_customer,
)
from receivables.decision_text import brief_decisions
from receivables.devserver import DevServerError
from receivables.governance import (
    GOVERNANCE_FILE,
    PERSON_FLAG,
    PERSON_HELP,
    check_person,
    sync_governance,
)
from receivables.importer import (
    PortfolioFileError,
    import_portfolio,
)
from receivables.kpis import DEFAULT_TIME_ZONE
from receivables.ledger import ContactLedger
from receivables.logs import configure_logging
from receivables.mapping import MappingError
from receivables.messages import format_lint_report, lint_templates
from receivables.money import MoneyError, format_amount, parse_operator_amount
from receivables.payment_file import (
    PaymentFileError,
    PaymentRow,
    ReceivedRefusal,
    read_payment_file,
    received_instant,
    totals_by_currency,
    why_not_received,
)
from receivables.people_cli import FOLIO_HELP, add_people_commands
from receivables.planning import (
    calendar_date,
    format_local,
    local_date_of,
)
from receivables.policy import PolicyError, load_policy_book
from receivables.pulse import PULSE_SECONDS, check_pulse_interval
from receivables.reconciliation import (
    describe,
    how_to_record,
    left_to_record,
    mark_checked,
    payment_reference,
    payments_of,
    payments_under,
    reconciled_before,
    resolve_recorded_by_hand,
    returned_details,
    save_decisions,
    shown_amount,
    summary,
    waiting_movements,
)
from receivables.schema import migrate
from receivables.settings import Settings, load_settings
from receivables.simulation import DisputeTiming
from receivables.store import (
    ContactStatus,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    PaymentKind,
    as_utc,
    find_customer,
    find_invoice,
    make_engine,
    session_scope,
)
from workflows.invoice import InvoiceWorkflow

log = logging.getLogger("starter")
# An operator at a terminal reads the warnings as they come: no timestamp needed.
CLI_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class OperatorError(Exception):
    """A command that cannot proceed; the message says what to do."""


# -- importing and opening cases ---------------------------------------------------------


def open_missing_cases(settings: Settings) -> str:
    """Open a case for every open invoice of the tenant that has none; say what happened."""

    async def run() -> Counter[str]:
        client = await connect(settings.temporal)
        return await open_cases_without_one(
            client,
            make_engine(settings.resolved_database_url),
            load_policy_book(settings.policies_dir),
            settings.tenant,
            task_queue=settings.temporal.task_queue,
            concurrent_starts=settings.temporal.concurrent_starts,
        )

    try:
        outcome = asyncio.run(run())
    except CasesNotOpened as error:
        raise OperatorError(str(error)) from None
    except RuntimeError as error:
        if "connect" not in str(error).lower():
            raise
        raise OperatorError(
            f"Temporal does not answer at {settings.temporal.address} ({error}). The "
            "invoices are stored: start Temporal (starter.py server) and run "
            "'starter.py open-cases'"
        ) from None
    opened = (
        f"cases opened: {outcome['opened']}; already open: {outcome['already open']}"
    )
    waiting = invoices_waiting_for_a_due_date(
        make_engine(settings.resolved_database_url), settings.tenant
    )
    if not waiting:
        return opened
    shown = ", ".join(waiting[:5]) + (", ..." if len(waiting) > 5 else "")
    return (
        f"{opened}; waiting for a due date: {len(waiting)} ({shown}). Give each its "
        f"due date, which opens its case: '{set_due_date_command('FOLIO')}'"
    )


def cmd_open_cases(args: argparse.Namespace, settings: Settings) -> int:
    """Open the missing cases of stored open invoices (after an import without Temporal)."""
    migrate(settings.resolved_database_url)
    print(open_missing_cases(settings))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Validate and store a portfolio file, then open a case for each new open invoice."""
    migrate(settings.resolved_database_url)
    sync_governance(
        make_engine(settings.resolved_database_url),
        settings.tenant,
        settings.policies_dir / GOVERNANCE_FILE,
    )
    report = import_portfolio(
        Path(args.file),
        args.mapping,
        database_url=settings.resolved_database_url,
        tenant=settings.tenant,
        policies_dir=settings.policies_dir,
        accept_valid=args.accept_valid,
        progress=_print_progress,
    )
    print(report.summary())
    if args.report:
        report.write_csv(Path(args.report))
        print(f"row-by-row report written to {args.report}")
    if report.rejected_rows and not args.accept_valid:
        return 2
    if args.no_start:
        return 0
    # Every open invoice without a case gets one, not only this file's: an earlier import
    # may have stored invoices while Temporal was down.
    print(open_missing_cases(settings))
    return 0


def _print_progress(done: int, total: int) -> None:
    print(f"  ... {done}/{total} rows", file=sys.stderr)


# -- money and closing -------------------------------------------------------------------


def _invoice(engine: Engine, tenant: str, number: str) -> Invoice:
    return stored_invoice(engine, tenant, number)


def _acting_person(
    args: argparse.Namespace, settings: Settings, engine: Engine | None = None
) -> str:
    """The person --by names, once the governance knows them; nobody named is refused."""
    engine = engine or make_engine(settings.resolved_database_url)
    return check_person(engine, settings.tenant, args.by).person_id


def _instant(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise OperatorError(
            f"--at {text!r} is not a date and time: write it like 2026-03-30T23:50-03:00"
        ) from None
    if instant.tzinfo is None:
        raise OperatorError(
            f"--at {text!r} needs a UTC offset, like 2026-03-30T23:50-03:00"
        )
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise OperatorError(
            f"--at {text!r} is outside the calendar the store keeps; check the year"
        ) from None


def cmd_pay(args: argparse.Namespace, settings: Settings) -> int:
    """Record a payment (or, with --credit, a credit note), then tell the invoice's case."""
    engine = make_engine(settings.resolved_database_url)
    invoice = _invoice(engine, settings.tenant, args.invoice)
    entered_by = _acting_person(args, settings, engine)
    amount = parse_operator_amount(args.amount, invoice.currency)
    at = _instant(args.at)
    zone = _debtor_zone(engine, invoice)
    refusal = why_not_received(at, invoice, zone, datetime.now(UTC))
    if refusal is not None:
        later = ", with the instant it arrived, or leave --at out for now"
        raise OperatorError(
            f"--at {format_local(at, zone)} {refusal.reason}; {refusal.hint}"
            f"{later if refusal.not_yet else ''}; nothing was recorded"
        )
    kind = PaymentKind.CREDIT_NOTE if args.credit else PaymentKind.PAYMENT
    # Pasted with a space, it would not match the same reference in a bank's file.
    reference = args.reference.strip()
    if amount > invoice.balance_minor > 0 and not args.allow_overpayment:
        # An extra digit typed would settle the invoice and end its case on the spot.
        raise OperatorError(
            f"{format_amount(amount, invoice.currency)} is more than the open balance of "
            f"{args.invoice} ({format_amount(invoice.balance_minor, invoice.currency)}); "
            "check the amount, or add --allow-overpayment if the debtor did pay more; "
            "nothing was recorded"
        )
    # The store decides first, so a refused movement never reaches the case.
    result = commit_money_movement(
        engine,
        settings.tenant,
        args.invoice,
        kind=kind,
        reference=reference,
        amount_minor=amount,
        currency=invoice.currency,
        at=at,
        entered_by=entered_by,
    )

    async def send() -> None:
        client = await connect(settings.temporal)
        handle = case_handle(client, settings.tenant, args.invoice)
        repeat = not result.applied
        if args.credit:
            credit = CreditApplied(reference, amount, invoice.currency, at)
            await tell_case(handle, InvoiceWorkflow.apply_credit, credit, repeat=repeat)
        else:
            payment = PaymentReceived(reference, amount, invoice.currency, at)
            await tell_case(
                handle, InvoiceWorkflow.record_payment, payment, repeat=repeat
            )

    _tell_case_after_store(send, f"{reference} is recorded on invoice {args.invoice}")
    note = (
        ""
        if result.applied
        else " (reference already recorded: the store is unchanged, its case told again)"
    )
    if result.overpaid_minor:
        note += (
            f"; overpaid by {format_amount(result.overpaid_minor, invoice.currency)}: "
            "refund it or apply it to another invoice"
        )
    print(
        f"{args.invoice}: balance {format_amount(result.balance_minor, invoice.currency)}, "
        f"{result.status}{note}"
    )
    return 0


def _tell_case_after_store(
    telling: Callable[[], Coroutine[Any, Any, None]], stored: str
) -> None:
    """Tell the case what the store already holds; if it cannot be told, say how to finish."""
    try:
        asyncio.run(telling())
    except (RPCError, TemporalUnreachable) as error:
        why = _explain(error) if isinstance(error, RPCError) else str(error)
        raise OperatorError(
            f"{stored} in the store, but its case was not told: {why}; run the same "
            "command again: it changes nothing in the store and tells the case"
        ) from None


# -- a file of payments ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _RowRecorded:
    """What the store made of one row of a payments file; None when it refused it."""

    movement: PaymentRow
    result: StoredMoveResult | None
    refusal: str = ""  # why the store refused a row that passed the file's checks
    place: str = ""  # where a report names it, when not "row N" of a payments file

    @property
    def shown_as(self) -> str:
        """The row as the report names it: ``row 29``, ``entry 1, detail 2``."""
        return self.place or f"row {self.movement.row}"


def cmd_pay_file(args: argparse.Namespace, settings: Settings) -> int:
    """Record a file of payments row by row as 'pay' would, then tell each case."""
    engine = make_engine(settings.resolved_database_url)
    entered_by = _acting_person(args, settings, engine)
    checked = read_payment_file(
        Path(args.file),
        engine,
        settings.tenant,
        default_kind=PaymentKind.CREDIT_NOTE if args.credit else PaymentKind.PAYMENT,
        allow_overpayment=args.allow_overpayment,
        now=datetime.now(UTC),
    )
    refusals = [
        (e.row, f"row {e.row}: refused: {e.describe(checked.name)}")
        for e in checked.errors
    ]
    if refusals and not args.accept_valid:
        _print_by_row(refusals)
        print(
            f"{checked.name}: {checked.rows_read} rows, "
            f"{len(checked.refused_rows())} refused; nothing was recorded: correct those "
            "rows and run the command again, or add --accept-valid to record only the "
            "valid rows"
        )
        return 2
    recorded = [
        _record_row(engine, settings.tenant, row, entered_by) for row in checked.rows
    ]
    _print_by_row(refusals + [(r.movement.row, _recorded_line(r)) for r in recorded])
    untold = _tell_cases_of_rows(settings, recorded)
    print(_pay_file_summary(checked.name, checked.rows_read, recorded))
    if untold:
        raise OperatorError(
            f"{untold} the store keeps every row it accepted; run the same pay-file command "
            "again: it records nothing twice and tells the cases"
        )
    return 0


def _print_by_row(lines: list[tuple[int, str]]) -> None:
    for _, line in sorted(lines, key=lambda numbered: numbered[0]):
        print(line)


def _record_row(
    engine: Engine, tenant: str, movement: PaymentRow, entered_by: str
) -> _RowRecorded:
    """The same store transaction and operator-actions line as 'pay' writes."""
    if movement.repeat_of_row is not None:
        return _RowRecorded(movement, None)
    try:
        result = commit_money_movement(
            engine,
            tenant,
            movement.folio,
            kind=movement.kind,
            reference=movement.reference,
            amount_minor=movement.amount_minor,
            currency=movement.currency,
            at=movement.received_at,
            entered_by=entered_by,
        )
    except (CaseCommandRefused, LookupError) as error:
        # Checked a moment ago; only a change made since (a closing, say) refuses it now.
        return _RowRecorded(movement, None, refusal=str(error))
    return _RowRecorded(movement, result)


def _recorded_line(recorded: _RowRecorded) -> str:
    movement = recorded.movement
    what = (
        f"{movement.folio} {movement.reference} "
        f"{format_amount(movement.amount_minor, movement.currency)} {movement.kind}"
    )
    if movement.repeat_of_row is not None:
        return f"row {movement.row}: {what}: same as row {movement.repeat_of_row}, counted once"
    if recorded.result is None:
        return f"row {movement.row}: {what}: refused: {recorded.refusal}"
    balance = format_amount(recorded.result.balance_minor, movement.currency)
    outcome = "recorded" if recorded.result.applied else "already recorded"
    line = f"row {movement.row}: {what}: {outcome}; balance {balance}, {recorded.result.status}"
    if recorded.result.overpaid_minor:
        overpaid = format_amount(recorded.result.overpaid_minor, movement.currency)
        line += f"; overpaid by {overpaid}: refund it or apply it to another invoice"
    return line


def _tell_cases_of_rows(settings: Settings, rows: list[_RowRecorded]) -> str:
    """Tell each stored row's case, as 'pay' does; say which were not told, and why."""
    stored = [row for row in rows if row.result is not None]
    untold: list[str] = []
    reasons: list[str] = []

    async def tell_all() -> None:
        client = await connect(settings.temporal)
        for position, row in enumerate(stored):
            try:
                await _tell_case_of_row(client, settings.tenant, row)
            except RPCError as error:
                untold.append(row.shown_as)
                reasons.append(f"{row.shown_as}: {_explain(error)}")
                if error.status in (
                    RPCStatusCode.UNAVAILABLE,
                    RPCStatusCode.DEADLINE_EXCEEDED,
                ):
                    # The server went away mid-file: the rest would only wait and fail.
                    untold.extend(later.shown_as for later in stored[position + 1 :])
                    return

    try:
        asyncio.run(tell_all())
    except TemporalUnreachable as error:
        untold = [row.shown_as for row in stored]
        reasons = [str(error)]
    if not untold:
        return ""
    # A split line is one row of the report, however many cases its parts told.
    places = list(dict.fromkeys(untold))
    are = "is" if len(places) == 1 else "are"
    their = "its case was" if len(places) == 1 else "their cases were"
    shown_reasons = "; ".join(reasons[:UNTOLD_REASONS_SHOWN])
    if len(reasons) > UNTOLD_REASONS_SHOWN:
        shown_reasons += f"; and {len(reasons) - UNTOLD_REASONS_SHOWN} more"
    return (
        f"{_places_briefly(places)} {are} recorded in the store, but {their} not told "
        f"({shown_reasons});"
    )


UNTOLD_REASONS_SHOWN = 3
PLACES_SHOWN = 10


def _places_briefly(places: list[str]) -> str:
    """``row 3``, ``lines 5, 7``, ``rows 2–301 (300 rows)``; other places, the first few."""
    word = places[0].split(" ", 1)[0]
    numbers = [p.removeprefix(f"{word} ") for p in places]
    if not all(n.isdigit() for n in numbers):
        shown = "; ".join(places[:PLACES_SHOWN])
        more = len(places) - PLACES_SHOWN
        return shown + (f"; and {more} more" if more > 0 else "")
    if len(places) == 1:
        return places[0]
    rows = sorted(int(n) for n in numbers)
    runs: list[str] = []
    start = previous = rows[0]
    for row in [*rows[1:], None]:
        if row is not None and row == previous + 1:
            previous = row
            continue
        runs.append(f"{start}–{previous}" if previous - start >= 2 else str(start))
        if previous - start == 1:
            runs.append(str(previous))
        if row is not None:
            start = previous = row
    count = f" ({len(rows)} {word}s)" if len(rows) > PLACES_SHOWN else ""
    shown = ", ".join(runs[:PLACES_SHOWN])
    if len(runs) > PLACES_SHOWN:
        shown += ", ..."
    return f"{word}s {shown}{count}"


async def _tell_case_of_row(client: Client, tenant: str, row: _RowRecorded) -> None:
    movement, result = row.movement, row.result
    assert result is not None
    handle = case_handle(client, tenant, movement.folio)
    facts = (movement.reference, movement.amount_minor, movement.currency)
    repeat = not result.applied
    if movement.kind == PaymentKind.CREDIT_NOTE:
        credit = CreditApplied(*facts, movement.received_at)
        await tell_case(handle, InvoiceWorkflow.apply_credit, credit, repeat=repeat)
    else:
        payment = PaymentReceived(*facts, movement.received_at)
        await tell_case(handle, InvoiceWorkflow.record_payment, payment, repeat=repeat)


def _pay_file_summary(name: str, rows_read: int, rows: list[_RowRecorded]) -> str:
    applied = [r for r in rows if r.result is not None and r.result.applied]
    repeats = [r for r in rows if r.result is not None and not r.result.applied]
    repeats += [r for r in rows if r.movement.repeat_of_row is not None]
    refused = rows_read - len(applied) - len(repeats)
    total = totals_by_currency(
        (r.movement.amount_minor, r.movement.currency) for r in applied
    )
    return (
        f"{name}: {rows_read} rows, {len(applied)} recorded, {len(repeats)} already "
        f"recorded, {refused} refused; recorded {total}"
    )


# -- a bank statement ----------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    """Match a bank statement's credits to open invoices and record them as pay-file does."""
    engine = make_engine(settings.resolved_database_url)
    if args.list_unmatched:
        return _list_unmatched(engine, settings.tenant, dry_run=args.dry_run)
    if args.checked:
        return _mark_checked(engine, args, settings)
    if not args.file:
        raise OperatorError("name the statement FILE, or use --list-unmatched")
    person = _acting_person(args, settings, engine)
    path = Path(args.file)
    chosen = StatementFormat(args.format) if args.format else None
    movements = read_bank_statement(path, chosen)
    held = reconciled_before(engine, settings.tenant, movements)
    items = OpenItems(engine, settings.tenant)
    decisions: list[Decision] = []
    repeats: list[Decision] = []  # reconciled by an earlier run: their cases told again
    for movement in movements:
        earlier = held.get(movement.transaction_id)
        recorded = payments_of(engine, settings.tenant, movement)
        if earlier is not None and earlier.outcome != Outcome.UNMATCHED:
            repeats.append(_as_recorded(movement, recorded, Outcome(earlier.outcome)))
        elif recorded:
            # A run cut short after paying, a split refused in part, or a person who
            # recorded it by hand with pay: applied only once the parts cover the line.
            decisions.append(_as_recorded(movement, recorded))
        else:
            decisions.append(
                decide(movement, items, allow_overpayment=args.allow_overpayment)
            )
    if args.dry_run:
        decisions = [
            _checked(engine, settings.tenant, decision) for decision in decisions
        ]
        _print_reconciliation(path.name, decisions, len(repeats), args.by)
        print("dry run: nothing was recorded")
        return 1 if _needing_person(decisions) else 0
    told: list[_RowRecorded] = []
    applied = [
        _apply_decision(engine, settings, decision, person, told)
        for decision in decisions
    ]
    decisions = [decision for decision in applied if decision is not None]
    # Recorded by a run that read the statement at the same time: that run keeps its row.
    done_elsewhere = len(applied) - len(decisions)
    for repeat in repeats:
        _apply_decision(engine, settings, repeat, person, told)
    save_decisions(
        engine, settings.tenant, decisions, source_file=path.name, person=person
    )
    _print_reconciliation(path.name, decisions, len(repeats) + done_elsewhere, person)
    untold = _tell_cases_of_rows(settings, told)
    if untold:
        raise OperatorError(
            f"{untold} the store keeps every payment it applied; run the same reconcile "
            "command again: it records nothing twice and tells the cases"
        )
    return 1 if _needing_person(decisions) else 0


def _as_recorded(
    movement: BankMovement, payments: Sequence[Payment], outcome: Outcome | None = None
) -> Decision:
    """A line's payments as recorded, each under the reference it already has."""
    allocations = tuple(
        Allocation(p.invoice_number, p.amount_minor, p.reference) for p in payments
    )
    parts = [(a.folio, a.amount_minor) for a in allocations]
    if outcome is None and left_to_record(
        movement.amount_minor, movement.currency, parts
    ):
        reason = "only part of it is recorded: record the rest with pay"
        return Decision(
            movement, Outcome.UNMATCHED, reason=reason, allocations=allocations
        )
    how = "recorded earlier under its reference" if payments else ""
    return Decision(
        movement, outcome or Outcome.APPLIED, matched_by=how, allocations=allocations
    )


def _apply_decision(
    engine: Engine,
    settings: Settings,
    decision: Decision,
    person: str,
    told: list[_RowRecorded],
) -> Decision | None:
    """Record an applied decision's payments as pay-file does; a refusal leaves it unmatched.

    None when every part was already recorded, by another run of the same statement.

    Parts already recorded (an unmatched line's too) are recorded again under their own
    reference, which changes nothing in the store and tells their cases once more.
    """
    if decision.outcome is not Outcome.APPLIED:
        for allocation in [a for a in decision.allocations if a.reference]:
            received, _ = _receipt(
                engine, settings.tenant, decision.movement, allocation
            )
            row = _payment_row(
                decision.movement, allocation, allocation.reference, received
            )
            again = _record_row(engine, settings.tenant, row, person)
            told.append(dataclasses.replace(again, place=decision.movement.place))
        return decision
    movement = decision.movement
    rows: list[_RowRecorded] = []
    for allocation in decision.allocations:
        received, refusal = _receipt(engine, settings.tenant, movement, allocation)
        reference = payment_reference(movement, allocation, len(decision.allocations))
        if refusal is not None:
            recorded = _RowRecorded(_payment_row(movement, allocation, reference), None)
            rows.append(dataclasses.replace(recorded, refusal=refusal.reason))
            continue
        row = _payment_row(movement, allocation, reference, received)
        stored = _record_row(engine, settings.tenant, row, person)
        rows.append(dataclasses.replace(stored, place=movement.place))
    told.extend(row for row in rows if row.result is not None)
    refused = [row for row in rows if row.result is None]
    if not refused:
        fresh = not any(a.reference for a in decision.allocations)
        if fresh and not any(row.result and row.result.applied for row in rows):
            return None
        return decision
    # A split whose other parts were recorded keeps them: the line waits for a person,
    # who is shown those parts, under their references, and what is left.
    reasons = "; ".join(f"{r.movement.folio}: {r.refusal}" for r in refused)
    kept = tuple(
        dataclasses.replace(
            allocation, reference=payment_reference(movement, allocation, len(rows))
        )
        for allocation, row in zip(decision.allocations, rows, strict=True)
        if row.result is not None
    )
    return Decision(
        movement,
        Outcome.UNMATCHED,
        reason=f"the store refused it ({reasons})",
        allocations=kept,
    )


def _receipt(
    engine: Engine, tenant: str, movement: BankMovement, allocation: Allocation
) -> tuple[datetime, ReceivedRefusal | None]:
    """When a part of a line was received, and why the store would refuse it, if it would."""
    invoice = _invoice(engine, tenant, allocation.folio)
    zone = _debtor_zone(engine, invoice)
    # The day the bank booked it, from its start where the debtor is, as pay-file reads
    # a day alone: sure to have passed, so never refused as a future payment.
    received = received_instant(movement.booking_date.isoformat(), zone)
    return received, why_not_received(received, invoice, zone, datetime.now(UTC))


def _checked(engine: Engine, tenant: str, decision: Decision) -> Decision:
    """A dry run's decision after the checks a real run makes before recording it."""
    if decision.outcome is not Outcome.APPLIED or any(
        a.reference for a in decision.allocations
    ):
        return decision
    refusals = [
        f"{allocation.folio}: {refusal.reason}"
        for allocation in decision.allocations
        if (refusal := _receipt(engine, tenant, decision.movement, allocation)[1])
        is not None
    ]
    if not refusals:
        return decision
    return Decision(
        decision.movement,
        Outcome.UNMATCHED,
        reason=f"the store would refuse it ({'; '.join(refusals)})",
    )


def _payment_row(
    movement: BankMovement,
    allocation: Allocation,
    reference: str,
    received: datetime | None = None,
) -> PaymentRow:
    return PaymentRow(
        movement.line,
        allocation.folio,
        allocation.amount_minor,
        movement.currency,
        reference,
        received or datetime.now(UTC),
        PaymentKind.PAYMENT,
    )


def _unmatched(decisions: Sequence[Decision]) -> list[Decision]:
    return [d for d in decisions if d.outcome is Outcome.UNMATCHED]


def _needing_person(decisions: Sequence[Decision]) -> list[Decision]:
    # A return may undo a payment applied earlier: as an unmatched line, a person decides.
    waiting = (Outcome.UNMATCHED, Outcome.RETURNED)
    return [d for d in decisions if d.outcome in waiting]


def _mark_checked(engine: Engine, args: argparse.Namespace, settings: Settings) -> int:
    """Close a returned line a person has looked into, in the operator actions log."""
    person = _acting_person(args, settings, engine)
    try:
        mark_checked(engine, settings.tenant, args.checked, person)
    except LookupError as error:
        raise OperatorError(
            f"{error}: give the id shown after --checked under the returned line"
        ) from None
    print(f"{args.checked}: checked by {person}")
    return 0


def _print_reconciliation(
    name: str, decisions: Sequence[Decision], repeats: int, person: str
) -> None:
    for outcome in Outcome:
        chosen = [d for d in decisions if d.outcome is outcome]
        if chosen:
            print(f"{outcome}:")
        for decision in chosen:
            print("\n".join(describe(decision, person=person)))
    print(summary(decisions, repeats, name))
    unmatched = len(_unmatched(decisions))
    if unmatched:
        print(
            f"{unmatched} unmatched: find each one's invoice and record it with the pay "
            "command shown under it; 'starter.py reconcile --list-unmatched' lists them "
            "until then"
        )
    returned = len(_needing_person(decisions)) - unmatched
    if returned:
        print(
            f"{returned} returned: check whether each undoes a payment shown under it, "
            "then close it with the --checked command shown; 'starter.py reconcile "
            "--list-unmatched' lists them until then"
        )


def _list_unmatched(engine: Engine, tenant: str, *, dry_run: bool) -> int:
    """The lines still waiting for a person; those since recorded with pay are resolved."""
    resolved = 0 if dry_run else resolve_recorded_by_hand(engine, tenant)
    waiting = waiting_movements(engine, tenant)
    for row in waiting:
        amount = shown_amount(row.amount_minor, row.currency)
        print(
            f"{row.source_file} {row.place} ({row.booking_date}) {amount}: {row.reason}"
        )
        if row.outcome == Outcome.RETURNED:
            details = returned_details(
                row.remittance, row.candidates, row.bank_transaction_id, person="PERSON"
            )
            print("\n".join(details))
            continue
        if row.candidates:
            print(f"      candidates: {row.candidates}")
        payments = payments_under(engine, tenant, row.bank_transaction_id)
        parts = [(p.invoice_number, p.amount_minor) for p in payments]
        if parts:
            print(f"      {left_to_record(row.amount_minor, row.currency, parts)}")
        reference = REFERENCE_PREFIX + row.bank_transaction_id
        print("\n".join(how_to_record(reference, person="PERSON")))
    returned = sum(row.outcome == Outcome.RETURNED for row in waiting)
    print(
        f"{len(waiting) - returned} unmatched, {returned} returned to check, "
        f"{resolved} resolved by pay since the last look"
    )
    return 1 if waiting else 0


def cmd_move_due(args: argparse.Namespace, settings: Settings) -> int:
    """Move an invoice's due date (its case re-plans), or set a missing one (its case opens)."""
    new_due = calendar_date(args.new_due_date, "the new due date")
    change = DueDateChanged(new_due, args.reason, _acting_person(args, settings))

    async def send() -> str:
        client = await connect(settings.temporal)
        return await change_due_date(
            client,
            make_engine(settings.resolved_database_url),
            load_policy_book(settings.policies_dir),
            settings.tenant,
            args.invoice,
            change,
            task_queue=settings.temporal.task_queue,
        )

    print(f"{args.invoice}: {asyncio.run(send())}")
    return 0


def cmd_close(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel an invoice or write it off; its case ends with no further contact."""
    stage = Stage.CANCELLED if args.command == "cancel" else Stage.WRITTEN_OFF
    closing = CaseClosed(args.reason, _acting_person(args, settings))
    engine = make_engine(settings.resolved_database_url)
    # The store decides first: a paid or closed invoice is refused before Temporal is asked.
    closed = close_in_store(engine, settings.tenant, args.invoice, stage, closing)
    if closed.tell_case:

        async def send() -> None:
            client = await connect(settings.temporal)
            handle = case_handle(client, settings.tenant, args.invoice)
            signal = (
                InvoiceWorkflow.cancel
                if stage == Stage.CANCELLED
                else (InvoiceWorkflow.write_off)
            )
            await tell_case(handle, signal, closing, repeat=closed.repeat)

        _tell_case_after_store(send, f"invoice {args.invoice} is {stage}")
    again = (
        " (already so in the store: its case was told again)" if closed.repeat else ""
    )
    print(f"{args.invoice}: {stage}{again}")
    return 0


def cmd_stop_fact(args: argparse.Namespace, settings: Settings) -> int:
    """Record a lawsuit served, an insolvency or a cession; reminders stop at the next send."""
    from receivables.stop_facts import StopFact, StopFactRefused, record_stop_fact

    migrate(settings.resolved_database_url)
    fact = StopFact(args.fact)
    recorded_by = _acting_person(args, settings)
    try:
        change = record_stop_fact(
            make_engine(settings.resolved_database_url),
            settings.tenant,
            fact,
            target=args.target,
            on=calendar_date(args.on, "--on"),
            recorded_by=recorded_by,
            reason=args.reason,
            assignee=args.assignee,
        )
    except StopFactRefused as error:
        raise OperatorError(str(error)) from None
    subject = change.invoice_number or f"customer {change.customer_id}"
    if change.already_recorded:
        print(f"{subject}: {fact} was already recorded; its first date is kept")
    elif fact is StopFact.SII_RECEIVED:
        print(
            f"{subject}: received at the SII on {change.on}; no reminder before the "
            "buyer's days to reclaim it have passed (cl.b2b rule CL-B-05)"
        )
    else:
        print(
            f"{subject}: {fact} on {change.on} recorded; the next reminder is denied "
            "and the case stops contacting the debtor"
        )
    return 0


def cmd_import_sii(args: argparse.Namespace, settings: Settings) -> int:
    """Read SII DTE and AEC files and set payment form and cession on the invoices."""
    from receivables.sii_documents import import_sii_documents

    report = import_sii_documents(
        make_engine(settings.resolved_database_url),
        settings.tenant,
        [Path(name) for name in args.files],
        recorded_by=_acting_person(args, settings),
    )
    print(report.summary())
    if report.refused:
        print(
            "fix or leave out the refused files and run import-sii again; what was "
            "applied stays applied and is not applied twice",
            file=sys.stderr,
        )
        return 2
    return 0


# -- inspecting --------------------------------------------------------------------------


def cmd_case(args: argparse.Namespace, settings: Settings) -> int:
    """Show a case as its workflow sees it: stage, balance, next step, timeline and ledger."""
    engine = make_engine(settings.resolved_database_url)
    invoice = _invoice(engine, settings.tenant, args.invoice)
    if invoice.status == InvoiceStatus.NEEDS_DUE_DATE:
        # No case runs without a due date: asking Temporal would only say "not found".
        print(
            f"invoice {args.invoice}: waiting for a due date; no case is open and nobody "
            "is contacted. Give it a due date, which opens its case: "
            f"'{set_due_date_command(args.invoice)}'"
        )
        return 0
    zone = _debtor_zone(engine, invoice)

    async def show() -> Stage:
        client = await connect(settings.temporal)
        handle = case_handle(client, settings.tenant, args.invoice)
        state = await handle.query(InvoiceWorkflow.state)
        timeline = await handle.query(InvoiceWorkflow.timeline)
        print(
            f"invoice {args.invoice}: {state.stage}, balance "
            f"{format_amount(state.balance_minor, state.currency)}, due {state.due_date}, "
            f"policy {state.policy_name}@{state.policy_version}"
        )
        if state.stage.is_terminal:
            print(f"case ended: {state.stage}; nothing is pending")
        elif state.waiting_for:
            print(f"waiting for: {brief_decisions(state.waiting_for, zone)}")
        if not state.stage.is_terminal:
            _print_stop_facts(settings, invoice, zone)
        for entry in timeline:
            detail = brief_decisions(entry.detail, zone)
            print(f"  {format_local(entry.at, zone)}  {entry.kind:<18} {detail}")
        return state.stage

    stage = asyncio.run(show())
    print("contact ledger (step, channel, status, attempts, last reason):")
    entries = ContactLedger(make_engine(settings.resolved_database_url)).entries_for(
        settings.tenant, args.invoice
    )
    if not entries:
        print("  no contact yet")
    for entry in entries:
        shown = "" if entry.reason in (None, "sent") else f"  {entry.reason}"
        reason = brief_decisions(shown, zone)
        status = ledger_status_shown(entry.status, stage)
        print(
            f"  {entry.step_id:<8} {entry.channel:<8} {status:<10} x{entry.attempts}{reason}"
        )
    return 0


def _print_stop_facts(settings: Settings, invoice: Invoice, zone: str) -> None:
    # The case learns a stop fact only at its next send; until then its state still reads
    # as before, so the store's facts are shown beside it.
    from receivables.stop_facts import stop_facts_today

    engine = make_engine(settings.resolved_database_url)
    for fact in stop_facts_today(engine, settings.policies_dir, invoice, zone):
        print(f"stop fact: {fact}")


def ledger_status_shown(status: str, stage: Stage) -> str:
    """A ledger status as `case` shows it: an ended case's deferred step was superseded."""
    # A deferred contact waits for its new instant only while the case runs; once the case
    # ended that instant never comes, and "deferred" would read as still pending.
    if stage.is_terminal and status == ContactStatus.DEFERRED:
        return "superseded"
    return status


def _debtor_zone(engine: Engine, invoice: Invoice) -> str:
    with session_scope(engine) as session:
        customer = find_customer(session, invoice.tenant, invoice.customer_id)
    return customer.time_zone if customer else "UTC"


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    """List the tenant's outbox, newest first, or show one message in full."""
    engine = make_engine(settings.resolved_database_url)
    if args.outbox_command == "list" and args.invoice:
        # An unknown folio is a typo to fix, not a folio that had no messages yet.
        stored_invoice(engine, settings.tenant, args.invoice)
    with session_scope(engine) as session:
        if args.outbox_command == "show":
            message = session.get(OutboxMessage, args.id)
            if message is None or message.tenant != settings.tenant:
                raise OperatorError(
                    f"no outbox message {args.id} for tenant {settings.tenant}; "
                    "list them with 'outbox list'"
                )
            print(_full_message(message, _debtor_zones(session, [message])))
            return 0
        statement = (
            select(OutboxMessage)
            .where(OutboxMessage.tenant == settings.tenant)
            .order_by(col(OutboxMessage.id).desc())
        )
        if args.invoice:
            statement = statement.where(OutboxMessage.invoice_number == args.invoice)
        messages = session.exec(statement.limit(args.limit)).all()
        zones = _debtor_zones(session, messages)
    if not messages:
        print(f"no messages for tenant {settings.tenant}" + _folio_hint(args.invoice))
        return 0
    print(
        f"{'id':>5}  {'stored (debtor time)':<34} {'channel':<8} {'folio':<12} "
        f"{'step':<6} recipient"
    )
    for message in messages:
        stored = format_local(as_utc(message.created_at), zones[message.invoice_number])
        print(
            f"{message.id:>5}  {stored:<34} {message.channel:<8} "
            f"{message.invoice_number:<12} {message.step_id:<6} {message.recipient}"
        )
    return 0


def _debtor_zones(
    session: Session, messages: Sequence[OutboxMessage]
) -> dict[str, str]:
    """The debtor's time zone for each folio of the messages; UTC if the store lost it."""
    zones: dict[str, str] = {}
    for message in messages:
        if message.invoice_number in zones:
            continue
        invoice = find_invoice(session, message.tenant, message.invoice_number)
        customer = (
            find_customer(session, invoice.tenant, invoice.customer_id)
            if invoice
            else None
        )
        zones[message.invoice_number] = customer.time_zone if customer else "UTC"
    return zones


def _folio_hint(folio: str | None) -> str:
    return f" and folio {folio!r}" if folio else ""


def _full_message(message: OutboxMessage, zones: dict[str, str]) -> str:
    stored = format_local(as_utc(message.created_at), zones[message.invoice_number])
    lines = [
        f"id:        {message.id}",
        f"invoice:   {message.invoice_number} (tenant {message.tenant})",
        f"step:      {message.step_id} of {message.policy_name}@{message.policy_version}",
        f"channel:   {message.channel} to {message.recipient}",
        f"stored at: {stored}",
    ]
    if message.subject:
        lines.append(f"subject:   {message.subject}")
    return "\n".join([*lines, "", message.body])


def cmd_lint_templates(args: argparse.Namespace, settings: Settings) -> int:
    """Render every template of every policy against sample data; fail on any problem."""
    problems = lint_templates(settings.policies_dir, settings.templates_dir)
    print(format_lint_report(problems))
    return 1 if problems else 0


# -- simulation, demo, benchmark ---------------------------------------------------------


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a historical portfolio through the real workflows on the time-skipping server."""
    from receivables.simulation import SimulationError

    try:
        return _simulate(args, settings)
    except SimulationError as error:
        # What the replay could not do is the operator's to fix (file, slice, settings).
        raise OperatorError(f"the replay stopped: {error}") from error


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from receivables.replay_channels import ProviderReplay, configured_endpoints
    from receivables.report import headline_text, write_html_report
    from receivables.simulation import replay_kpis, simulate

    providers = None
    if args.through_providers:
        providers = ProviderReplay(
            dict(os.environ), allow_remote=args.allow_remote_providers
        )
    elif args.allow_remote_providers:
        raise OperatorError(
            "--allow-remote-providers only goes with --through-providers"
        )
    elif configured_endpoints(os.environ):
        print(
            "note: provider settings are ignored; the replay writes its reminders to a "
            "scratch outbox (--through-providers sends them through the providers)"
        )
    timing = DisputeTiming(args.dispute_opens_after, args.dispute_resolves_before)
    runs = [("policies", settings)]
    if args.compare_policies:
        alternative = dataclasses.replace(
            settings, policies_dir=Path(args.compare_policies)
        )
        runs.append((Path(args.compare_policies).name, alternative))
    results = []
    for label, run_settings in runs:
        with tempfile.TemporaryDirectory(prefix="dunning-replay-") as work_dir:
            summary = asyncio.run(
                simulate(
                    Path(args.file),
                    args.mapping,
                    settings=run_settings,
                    work_dir=Path(work_dir),
                    jurisdiction=args.jurisdiction,
                    disputes=timing if args.replay_disputes else None,
                    providers=providers,
                )
            )
            kpis = replay_kpis(Path(work_dir)) if args.report else None
        print(f"== {label}\n{summary.to_text()}")
        results.append((label, summary, kpis))
    if args.json:
        Path(args.json).write_text(results[0][1].to_json() + "\n", encoding="utf-8")
        print(f"summary written to {args.json}")
    if args.report and results[0][2] is not None:
        compare = results[1] if len(results) > 1 else None
        write_html_report(
            results[0][2],
            Path(args.report),
            title=f"Replay of {Path(args.file).name}",
            compare=compare[2] if compare else None,
            compare_label=compare[0] if compare else None,
        )
        print(headline_text(results[0][2]))
        print(f"report written to {args.report}")
    return 0 if all(r[1].reminders_after_payment == 0 for r in results) else 3


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """KPIs of the tenant's portfolio: headline in the terminal, HTML and CSV on request."""
    from receivables.kpis import compute_kpis
    from receivables.report import headline_text, write_csv_export, write_html_report

    as_of = (
        calendar_date(args.as_of, "--as-of") if args.as_of else datetime.now(UTC).date()
    )
    period = (calendar_date(args.since, "--since"), as_of) if args.since else None
    kpis = compute_kpis(
        make_engine(settings.resolved_database_url),
        tenant=settings.tenant,
        as_of=as_of,
        period=period,
        group_by=args.group_by,
    )
    print(headline_text(kpis))
    if args.html:
        write_html_report(
            kpis, Path(args.html), title=f"Portfolio {settings.tenant}, {as_of}"
        )
        print(f"report written to {args.html}")
    if args.csv:
        write_csv_export(kpis, Path(args.csv))
        print(f"figures written to {args.csv}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The main job: dev server with Web UI, worker, and a live sample portfolio."""
    from receivables.demo import run_demo

    pulse_every = check_pulse_interval(args.pulse_every)
    return asyncio.run(
        run_demo(
            settings,
            exit_after=args.exit_after,
            size=args.size,
            pulse_every=pulse_every,
        )
    )


def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    """Run only the embedded dev server (with its Web UI) until interrupted."""
    from receivables.demo import serve_forever

    return asyncio.run(serve_forever(settings))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker against the configured Temporal until SIGINT or SIGTERM."""
    from worker import serve

    serve(settings)


def cmd_bench_scale(args: argparse.Namespace, settings: Settings) -> int:
    """Import, open and burst-send a replicated IBM portfolio at each size; print the table."""
    from receivables.scale_benchmark import run_scale_benchmark

    sizes = [int(size) for size in args.sizes.split(",")]
    # A large size runs for an hour or more: say how far it got as it goes.
    logging.getLogger("receivables.scale_benchmark").setLevel(logging.INFO)
    report = asyncio.run(
        run_scale_benchmark(
            sizes=sizes,
            work_dir=Path(args.work_dir),
            spread_minutes=args.spread_minutes,
            spread_burst=not args.unspread_only,
        )
    )
    print(report.to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """Receive Twilio and SendGrid callbacks: deliveries, bounces and opt-outs update the store."""
    import time

    from receivables.deliveries import event_handler
    from receivables.webhooks import WebhookApp, WebhookSecrets, WebhookServer

    secrets = WebhookSecrets(
        public_url=os.environ.get("DUNNING_WEBHOOK_PUBLIC_URL", ""),
        twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN") or None,
        sendgrid_public_key=os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
    )
    if not secrets.public_url or not (
        secrets.twilio_auth_token or secrets.sendgrid_public_key
    ):
        raise OperatorError(
            "set DUNNING_WEBHOOK_PUBLIC_URL (the https address the providers call) and "
            "TWILIO_AUTH_TOKEN and/or SENDGRID_WEBHOOK_PUBLIC_KEY to verify their signatures"
        )
    engine = make_engine(settings.resolved_database_url)
    app = WebhookApp(secrets, event_handler(engine, settings.tenant))
    with WebhookServer(app, host=args.host, port=args.port) as server:
        print(
            f"webhooks on {server.url} (/twilio/status, /twilio/inbound, /sendgrid/events)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Measure case starts, lifecycles, billable actions and memory on a dev server."""
    from receivables.benchmark import run_benchmark

    report = asyncio.run(run_benchmark(cases=args.cases, work_dir=Path(args.work_dir)))
    print(report.to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


# -- personal data rights ----------------------------------------------------------------


def cmd_debtor_data(args: argparse.Namespace, settings: Settings) -> int:
    """Answer a debtor's access request, or erase their data once nothing is owed."""
    engine = make_engine(settings.resolved_database_url)
    if args.debtor_data_command == "export":
        return _export_debtor_data(args, settings, engine)
    if (args.customer is None) == (args.settled_before is None):
        given = "both" if args.customer is not None else "neither"
        raise OperatorError(
            f"{given} given: name one CUSTOMER_ID, or --settled-before YYYY-MM-DD for "
            "every customer settled before that day"
        )
    by = _acting_person(args, settings)
    if args.customer is not None:
        erasure = erase_customer(
            engine,
            settings.tenant,
            args.customer,
            by=by,
            reason=args.reason,
            dry_run=args.dry_run,
        )
        print(_describe_erasure(erasure))
        return 0
    cutoff = calendar_date(args.settled_before, "--settled-before")
    today = local_date_of(datetime.now(UTC), DEFAULT_TIME_ZONE)
    if cutoff > today:
        # A mistyped year would erase everyone who paid up to today, payments that can
        # still bounce included.
        raise OperatorError(
            f"--settled-before {cutoff} is after today ({today} in {DEFAULT_TIME_ZONE}); "
            "give a day that has passed"
        )
    run = erase_settled_before(
        engine, settings.tenant, cutoff, by=by, reason=args.reason, dry_run=args.dry_run
    )
    for erasure in run.erasures:
        print(_describe_erasure(erasure))
    for customer_id in run.refused:
        print(f"customer {customer_id}: left, an invoice was reopened meanwhile")
    changed = sum(1 for erasure in run.erasures if erasure.rows_changed)
    print(
        f"{len(run.erasures)} customers settled before {cutoff}: {changed} "
        f"{'would be erased' if args.dry_run else 'erased'}, "
        f"{len(run.erasures) - changed} erased before"
    )
    return 0


def _export_debtor_data(
    args: argparse.Namespace, settings: Settings, engine: Engine
) -> int:
    by = _acting_person(args, settings) if args.by else None
    exported = export_customer(engine, settings.tenant, args.customer, requested_by=by)
    text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    Path(args.out).write_text(text, encoding="utf-8")
    rows = sum(len(table) for table in exported["tables"].values())
    print(
        f"customer {args.customer}: {rows} rows written to {args.out}", file=sys.stderr
    )
    return 0


def _describe_erasure(erasure: Erasure) -> str:
    if not erasure.rows_changed:
        return f"customer {erasure.customer_id}: already erased, nothing changed"
    verb = "would change" if erasure.dry_run else "changed"
    tables = ", ".join(f"{name} {count}" for name, count in erasure.changed.items())
    return (
        f"customer {erasure.customer_id}: {verb} {erasure.rows_changed} rows ({tables})"
    )


def add_debtor_data_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """The debtor-data export and erase subcommands."""
    debtor = commands.add_parser(
        "debtor-data",
        help="a debtor's personal data: export it, or erase it when settled",
    )
    actions = debtor.add_subparsers(dest="debtor_data_command", required=True)
    export = actions.add_parser("export", help="everything the store holds, as JSON")
    export.add_argument("customer", metavar="CUSTOMER_ID")
    export.add_argument("--out", help="write the JSON to this file, not to stdout")
    export.add_argument(
        PERSON_FLAG,
        metavar="PERSON",
        help=f"who answers the access request, to log it (optional): {PERSON_HELP}",
    )
    erase = actions.add_parser(
        "erase", help="suppress the personal data of a customer who owes nothing"
    )
    erase.add_argument("customer", metavar="CUSTOMER_ID", nargs="?")
    erase.add_argument(
        "--settled-before",
        metavar="YYYY-MM-DD",
        help="every customer whose invoices are all closed, the last before this day",
    )
    erase.add_argument(
        "--reason",
        required=True,
        help="why, for the log: the request or the retention rule, no personal data",
    )
    erase.add_argument(PERSON_FLAG, metavar="PERSON", help=f"who erases: {PERSON_HELP}")
    erase.add_argument("--dry-run", action="store_true", help="count, change nothing")
    debtor.set_defaults(handler=cmd_debtor_data)


# -- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand with its arguments."""
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="dev server + Web UI + worker + sample portfolio"
    )
    run.add_argument("--size", type=int, default=40, help="sample invoices to generate")
    run.add_argument(
        "--exit-after", type=float, default=None, help="stop after N seconds"
    )
    run.add_argument(
        "--pulse-every",
        type=float,
        default=PULSE_SECONDS,
        metavar="SECONDS",
        help="how often to print cases, contacts and tasks when they changed",
    )
    run.set_defaults(handler=cmd_run)
    commands.add_parser(
        "open-cases", help="open the missing cases of stored open invoices"
    ).set_defaults(handler=cmd_open_cases)
    commands.add_parser("server", help="only the dev server").set_defaults(
        handler=cmd_server
    )
    commands.add_parser("worker", help="only a worker").set_defaults(handler=cmd_worker)

    imp = commands.add_parser(
        "import", help="import a portfolio CSV and open its cases"
    )
    imp.add_argument("file", help="the portfolio CSV")
    imp.add_argument("--mapping", required=True, help="a name in policies/mappings/")
    imp.add_argument(
        "--accept-valid",
        action="store_true",
        help="write the valid rows of a batch with errors",
    )
    imp.add_argument("--no-start", action="store_true", help="store only; open no case")
    imp.add_argument("--report", help="write a row-by-row CSV report here")
    imp.set_defaults(handler=cmd_import)

    sim = commands.add_parser("simulate", help="replay a historical portfolio")
    sim.add_argument("file", help="a historical portfolio CSV, with settled dates")
    sim.add_argument("--mapping", required=True, help="a name in policies/mappings/")
    sim.add_argument("--json", help="write the summary as JSON here")
    sim.add_argument("--report", help="write the replay's KPI report (HTML) here")
    sim.add_argument(
        "--replay-disputes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open each disputed row's dispute after issue and reject it before "
        "settlement (the default); with --no-replay-disputes disputed rows open in "
        "dispute and stay so",
    )
    sim.add_argument(
        "--dispute-opens-after",
        type=int,
        default=DisputeTiming.opens_after_days,
        metavar="DAYS",
        help="days after issue a replayed dispute opens (default %(default)s)",
    )
    sim.add_argument(
        "--dispute-resolves-before",
        type=int,
        default=DisputeTiming.resolves_days_before,
        metavar="DAYS",
        help="days before settlement a replayed dispute is rejected (default %(default)s)",
    )
    sim.add_argument(
        "--jurisdiction",
        help="replay every policy under this contact-rule profile, e.g. cl.consumer",
    )
    sim.add_argument(
        "--through-providers",
        action="store_true",
        help="send every replayed reminder through the SendGrid and Twilio settings of the "
        "environment instead of a scratch outbox (the default, which ignores them); meant "
        "for the local fakes: refused unless SENDGRID_HOST and TWILIO_API_BASE_URL are "
        "loopback addresses such as http://127.0.0.1:PORT",
    )
    sim.add_argument(
        "--allow-remote-providers",
        action="store_true",
        help="with --through-providers, let the replay reach providers beyond this machine: "
        "real messages to the portfolio's debtors, and real charges",
    )
    sim.add_argument(
        "--compare-policies",
        metavar="DIR",
        help="replay again under the policies of DIR and compare them in the report",
    )
    sim.set_defaults(handler=cmd_simulate)

    pay = commands.add_parser(
        "pay", help="record a payment (or --credit note) for an invoice"
    )
    pay.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    pay.add_argument(
        "amount", help="in the invoice's currency: 340320 or 340.320 (CLP), 55.94 (USD)"
    )
    pay.add_argument(
        "--reference",
        required=True,
        help="bank or document reference; no name or phone (it reaches the case's history)",
    )
    pay.add_argument(
        "--at",
        help="when it was received, ISO 8601 with offset, not in the future; default now",
    )
    pay.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who entered it: {PERSON_HELP}"
    )
    pay.add_argument(
        "--credit", action="store_true", help="a credit note, not a payment"
    )
    pay.add_argument(
        "--allow-overpayment",
        action="store_true",
        help="record an amount above the open balance (the excess is reported)",
    )
    pay.set_defaults(handler=cmd_pay)

    pay_file = commands.add_parser(
        "pay-file", help="record a CSV of payments received, row by row as pay does"
    )
    pay_file.add_argument(
        "file",
        help="CSV with columns folio, amount, reference, received (YYYY-MM-DD, "
        "DD-MM-YYYY or ISO instant with offset) and optionally kind; Spanish headers "
        "folio, monto, referencia, fecha, tipo also work",
    )
    pay_file.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who entered it: {PERSON_HELP}"
    )
    pay_file.add_argument(
        "--accept-valid",
        action="store_true",
        help="record the valid rows of a file with errors",
    )
    pay_file.add_argument(
        "--credit",
        action="store_true",
        help="rows without a kind are credit notes, not payments",
    )
    pay_file.add_argument(
        "--allow-overpayment",
        action="store_true",
        help="record amounts above the open balance (the excess is reported)",
    )
    pay_file.set_defaults(handler=cmd_pay_file)

    reconcile = commands.add_parser(
        "reconcile",
        help="apply a bank statement's incoming payments to open invoices",
    )
    reconcile.add_argument(
        "file",
        nargs="?",
        help="camt.053 XML, MT940, or a Banco de Chile cartola (.xlsx, even named .xls, "
        "or CSV)",
    )
    reconcile.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who reconciles: {PERSON_HELP}"
    )
    reconcile.add_argument(
        "--format",
        choices=[str(f) for f in StatementFormat],
        help="the statement's format; sniffed from its content when left out",
    )
    reconcile.add_argument(
        "--dry-run", action="store_true", help="show what would happen; record nothing"
    )
    reconcile.add_argument(
        "--allow-overpayment",
        action="store_true",
        help="apply a credit above its folio's open balance (the excess is reported)",
    )
    reconcile.add_argument(
        "--list-unmatched",
        action="store_true",
        help="list the lines still waiting for a person, instead of reading a file",
    )
    reconcile.add_argument(
        "--checked",
        metavar="BANK-ID",
        help="close a returned line a person has checked (with --by), instead of a file",
    )
    reconcile.set_defaults(handler=cmd_reconcile)

    move = commands.add_parser("move-due", help="change an invoice's due date")
    move.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    move.add_argument("new_due_date", help="the new due date, YYYY-MM-DD")
    move.add_argument("--reason", required=True, help="why, for the case file")
    move.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who agreed or decided it: {PERSON_HELP}"
    )
    move.set_defaults(handler=cmd_move_due)

    for name in ("cancel", "write-off"):
        close = commands.add_parser(
            name, help=f"{name.replace('-', ' ')} an invoice: no further contact"
        )
        close.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
        close.add_argument("--reason", required=True, help="why, for the case file")
        close.add_argument(
            PERSON_FLAG, metavar="PERSON", help=f"who decided it: {PERSON_HELP}"
        )
        close.set_defaults(handler=cmd_close)

    stop = commands.add_parser(
        "stop-fact",
        help="record a lawsuit served, an insolvency, a cession or an SII reception",
    )
    stop.add_argument(
        "fact",
        choices=["lawsuit-served", "insolvency", "ceded", "sii-received"],
        help="lawsuit-served and insolvency are the debtor's; ceded and sii-received "
        "(the SII's reception, which starts the buyer's 8 days to reclaim) an invoice's",
    )
    stop.add_argument(
        "target",
        metavar="CUSTOMER_OR_FOLIO",
        help="customer id, or folio if ceded or sii-received",
    )
    stop.add_argument(
        "--on",
        required=True,
        help="the date it happened, YYYY-MM-DD, today or before in the debtor's zone",
    )
    stop.add_argument("--reason", required=True, help="the source, for the audit")
    stop.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who records it: {PERSON_HELP}"
    )
    stop.add_argument("--assignee", help="for ceded: the factor (cesionario)")
    stop.set_defaults(handler=cmd_stop_fact)

    sii = commands.add_parser(
        "import-sii", help="set FmaPago and cessions from SII DTE and AEC XML files"
    )
    sii.add_argument("files", nargs="+", metavar="FILE", help="DTE or AEC XML files")
    sii.add_argument(
        PERSON_FLAG, metavar="PERSON", help=f"who imports them: {PERSON_HELP}"
    )
    sii.set_defaults(handler=cmd_import_sii)

    case = commands.add_parser("case", help="show one case: stage, timeline, ledger")
    case.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    case.set_defaults(handler=cmd_case)

    outbox = commands.add_parser("outbox", help="messages the outbox channel holds")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = outbox_commands.add_parser("list")
    listing.add_argument("--invoice")
    listing.add_argument("--limit", type=int, default=50)
    show = outbox_commands.add_parser("show")
    show.add_argument("id", type=int)
    outbox.set_defaults(handler=cmd_outbox)

    commands.add_parser(
        "lint-templates", help="render every template; fail on problems"
    ).set_defaults(handler=cmd_lint_templates)

    add_people_commands(commands)

    report = commands.add_parser(
        "report", help="KPIs: aging, DSO, recovery, contacts, tasks"
    )
    report.add_argument("--as-of", help="report date, YYYY-MM-DD; default today")
    report.add_argument("--html", help="write the HTML report here")
    report.add_argument("--csv", help="write the figures as CSV here")
    report.add_argument(
        "--group-by", choices=["segment", "customer", "policy", "executive"]
    )
    report.add_argument(
        "--since",
        help="period start, YYYY-MM-DD; default: the first day of the twelve calendar "
        "months that end with the month of --as-of",
    )
    report.set_defaults(handler=cmd_report)

    scale = commands.add_parser(
        "bench-scale", help="benchmark on replicated portfolios"
    )
    scale.add_argument(
        "--sizes", default="2466,5000", help="comma-separated invoice counts"
    )
    scale.add_argument("--work-dir", default="var/bench-scale", help="scratch folder")
    scale.add_argument(
        "--spread-minutes", type=int, default=5, help="policy send spread"
    )
    scale.add_argument(
        "--unspread-only",
        action="store_true",
        help="one tenant and its unspread burst per size: half the time, no spread figures",
    )
    scale.add_argument("--json", help="also write the figures as JSON here")
    scale.set_defaults(handler=cmd_bench_scale)

    hooks = commands.add_parser("webhooks", help="receive provider delivery callbacks")
    hooks.add_argument(
        "--host", default="127.0.0.1", help="bind address (put TLS in front)"
    )
    hooks.add_argument("--port", type=int, default=8088)
    hooks.set_defaults(handler=cmd_webhooks)

    bench = commands.add_parser("bench", help="benchmark on a fresh dev server")
    bench.add_argument(
        "--cases",
        type=int,
        default=300,
        help="cases per throughput measurement (memory is read over 450 cached cases)",
    )
    bench.add_argument(
        "--work-dir", default="var/bench", help="where the server keeps state"
    )
    bench.add_argument("--json", help="also write the figures as JSON here")
    bench.set_defaults(handler=cmd_bench)

    add_debtor_data_commands(commands)
    return parser


COMMANDS_WITHOUT_STORE = {
    "server",
    "simulate",
    "bench",
    "bench-scale",
    "lint-templates",
}
USER_ERRORS = (
    OperatorError,
    TemporalUnreachable,
    PolicyError,
    PortfolioFileError,
    PaymentFileError,
    MappingError,
    MoneyError,
    ValueError,
    LookupError,
    DevServerError,
)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, and turn user errors into clear messages."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=CLI_TEXT_FORMAT)
    try:
        settings = load_settings()
        configure_logging(
            settings.log_format, logging.WARNING, text_format=CLI_TEXT_FORMAT
        )
        if args.command not in COMMANDS_WITHOUT_STORE:
            # Every command that reads or writes the store brings its schema up to date first.
            migrate(settings.resolved_database_url)
        return int(args.handler(args, settings))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RPCError as error:
        print(f"error: Temporal refused: {_explain(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`outbox list | head`): nothing more to say.
        return 0


def _explain(error: RPCError) -> str:
    if "already completed" in error.message:
        # Temporal answers NOT_FOUND for a case that ended as for one that never was.
        return (
            f"{error.message}: the invoice's case has ended (paid, closed or cancelled; "
            "'starter.py case FOLIO' shows how), so nothing was changed"
        )
    if error.status == RPCStatusCode.NOT_FOUND:
        return (
            f"{error.message}. No case exists for that invoice: check the folio, or open "
            "the missing cases with 'starter.py open-cases'"
        )
    return error.message


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
        sys.stderr.flush()
    # Leave without interpreter finalisation: the Temporal client's native threads can
    # abort a finalising interpreter (sdk-python issue 300), turning success into exit 134.
    os._exit(code)
