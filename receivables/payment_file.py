"""A file of payments received (a bank export, a cartola), read and checked row by row."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receivables.importer import RowError
from receivables.money import MoneyError, format_amount, parse_operator_amount
from receivables.planning import (
    CLOCK_SKEW_ALLOWED,
    format_local,
    local_date_of,
    local_instant,
)
from receivables.store import (
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    session_scope,
)

# Each column under the names people give it, English first, then the Spanish of a cartola.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "folio": ("folio", "invoice", "invoice_number", "factura"),
    "amount": ("amount", "monto", "importe"),
    "reference": ("reference", "referencia", "ref"),
    "received": ("received", "fecha", "date", "received_at", "fecha_pago"),
    "kind": ("kind", "tipo"),
    "currency": ("currency", "moneda", "divisa"),
}
REQUIRED_COLUMNS = ("folio", "amount", "reference", "received")
KIND_NAMES = {
    "payment": PaymentKind.PAYMENT,
    "pago": PaymentKind.PAYMENT,
    "credit_note": PaymentKind.CREDIT_NOTE,
    "nota_de_credito": PaymentKind.CREDIT_NOTE,
    "nc": PaymentKind.CREDIT_NOTE,
}
_DAY_FIRST = re.compile(r"([0-9]{2})[-/]([0-9]{2})[-/]([0-9]{4})")
_YEAR_FIRST = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_OUTSIDE_THE_CALENDAR = "is outside the calendar the store keeps; check the year"
DATE_HINT = (
    "write the day received as YYYY-MM-DD or DD-MM-YYYY, or the instant with its "
    "offset, like 2026-03-30T15:20-03:00"
)


class PaymentFileError(ValueError):
    """A file that cannot be read at all: not UTF-8, no header, or a column missing."""


@dataclass(frozen=True)
class PaymentRow:
    """One movement of the file, checked and ready to record as ``pay`` would."""

    row: int  # as a spreadsheet numbers it: the header is row 1
    folio: str
    amount_minor: int
    currency: str
    reference: str
    received_at: datetime  # aware, UTC
    kind: PaymentKind
    repeat_of_row: int | None = None  # the same movement written twice in the file


@dataclass
class CheckedFile:
    """The rows fit to record, and why each other row is refused."""

    name: str
    rows_read: int = 0
    rows: list[PaymentRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def refused_rows(self) -> list[int]:
        """The row numbers with at least one error, in file order."""
        return sorted({error.row for error in self.errors})


@dataclass(frozen=True)
class _StoreFacts:
    """What the store knows about the folios and references the file names."""

    invoices: dict[str, Invoice]
    zones: dict[str, str]  # folio -> the debtor's time zone
    recorded: dict[str, Payment]  # reference -> the movement already recorded


def read_payment_file(
    path: Path,
    engine: Engine,
    tenant: str,
    *,
    default_kind: PaymentKind,
    allow_overpayment: bool,
    now: datetime,
) -> CheckedFile:
    """Read every row and check it against the store; nothing is written."""
    header, delimiter, records = _read_table(path)
    columns = _columns(header, path.name)
    checked = CheckedFile(path.name, rows_read=len(records))
    facts = _store_facts(engine, tenant, [cells for _, cells in records], columns)
    shape = (len(header), delimiter)
    checker = _RowChecker(checked, facts, columns, default_kind, now, shape)
    for number, cells in records:
        checker.check(number, cells)
    if not allow_overpayment:
        _refuse_overpayments(checked, facts, columns)
    return checked


def _read_table(path: Path) -> tuple[list[str], str, list[tuple[int, list[str]]]]:
    """The header, the delimiter, and each non-blank row numbered as a spreadsheet shows it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PaymentFileError(
            f"{path.name} is not UTF-8 (byte {error.start}); save it from the "
            "spreadsheet as 'CSV UTF-8' and run the command again"
        ) from None
    except OSError as error:
        raise PaymentFileError(f"cannot read {path}: {error.strerror}") from None
    lines = text.splitlines()  # only to look at the header line
    if not lines or not lines[0].strip():
        raise PaymentFileError(
            f"{path.name} has no header row; its first line names the columns: "
            "folio, amount, reference, received (and optionally kind)"
        )
    # A cartola saved by a Spanish spreadsheet separates with ';', since ',' is decimal.
    # The header's commonest separator: spreadsheets export ';' where ',' is the decimal
    # mark, banks often tabs.
    delimiter = max((",", ";", "\t"), key=lines[0].count)
    # Blank lines keep their number, so a row is named as the spreadsheet shows it.
    table = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    records = [
        (number, cells)
        for number, cells in enumerate(table[1:], start=2)
        if any(cell.strip() for cell in cells)
    ]
    return table[0], delimiter, records


def _columns(header: list[str], file_name: str) -> dict[str, tuple[int, str]]:
    """Each known column's position and its header as written in the file."""
    found: dict[str, tuple[int, str]] = {}
    for position, title in enumerate(header):
        name = title.strip().lower().replace(" ", "_")
        for column, aliases in COLUMN_NAMES.items():
            if name not in aliases:
                continue
            if column in found:
                raise PaymentFileError(
                    f"{file_name}: columns {found[column][1]!r} and {title!r} both give "
                    f"the {column}; keep one of them"
                )
            found[column] = (position, title.strip())
    missing = [column for column in REQUIRED_COLUMNS if column not in found]
    if missing:
        names = "; ".join(f"{c}: {', '.join(COLUMN_NAMES[c])}" for c in missing)
        raise PaymentFileError(
            f"{file_name} has no column for {', '.join(missing)}; name the header "
            f"cells one of ({names})"
        )
    return found


def _store_facts(
    engine: Engine,
    tenant: str,
    records: list[list[str]],
    columns: dict[str, tuple[int, str]],
) -> _StoreFacts:
    folios = {_cell(cells, columns, "folio") for cells in records}
    references = {_cell(cells, columns, "reference") for cells in records}
    with session_scope(engine) as session:
        invoices = session.exec(
            select(Invoice).where(
                Invoice.tenant == tenant, col(Invoice.invoice_number).in_(folios)
            )
        ).all()
        customer_ids = {invoice.customer_id for invoice in invoices}
        customers = session.exec(
            select(Customer).where(
                Customer.tenant == tenant, col(Customer.customer_id).in_(customer_ids)
            )
        ).all()
        recorded = session.exec(
            select(Payment).where(
                Payment.tenant == tenant, col(Payment.reference).in_(references)
            )
        ).all()
    zone_of = {customer.customer_id: customer.time_zone for customer in customers}
    return _StoreFacts(
        invoices={invoice.invoice_number: invoice for invoice in invoices},
        zones={i.invoice_number: zone_of.get(i.customer_id, "UTC") for i in invoices},
        recorded={payment.reference: payment for payment in recorded},
    )


def _cell(cells: list[str], columns: dict[str, tuple[int, str]], name: str) -> str:
    if name not in columns:
        return ""
    position = columns[name][0]
    return cells[position].strip() if position < len(cells) else ""


class _RowChecker:
    """Checks one row at a time, remembering the references seen earlier in the file."""

    def __init__(
        self,
        checked: CheckedFile,
        facts: _StoreFacts,
        columns: dict[str, tuple[int, str]],
        default_kind: PaymentKind,
        now: datetime,
        header: tuple[int, str],  # how many columns, and the file's delimiter
    ) -> None:
        self.checked, self.facts, self.columns = checked, facts, columns
        self.default_kind, self.now = default_kind, now
        self.header_width, self.delimiter = header
        self.first_row_of: dict[str, PaymentRow] = {}

    def fail(self, row: int, name: str, value: str, reason: str, hint: str) -> None:
        """Note why the row cannot be recorded, naming the column as the file does."""
        column = self.columns[name][1] if name in self.columns else None
        self.checked.errors.append(
            RowError(row, name, value, reason, hint, None, column)
        )

    def check(self, row: int, cells: list[str]) -> None:
        """Check one row; a row fit to record joins the file's rows."""
        text = {name: _cell(cells, self.columns, name) for name in COLUMN_NAMES}
        errors_before = len(self.checked.errors)
        self._width(row, cells)
        invoice = self._invoice(row, text["folio"])
        self._currency(row, text["currency"], invoice)
        kind = self._kind(row, text["kind"])
        reference = self._reference(row, text["reference"])
        amount = self._amount(row, text["amount"], invoice)
        received = self._received(row, text["received"], invoice)
        if len(self.checked.errors) > errors_before:
            return
        assert invoice and kind and reference and amount and received
        movement = PaymentRow(
            row,
            invoice.invoice_number,
            amount,
            invoice.currency,
            reference,
            received,
            kind,
        )
        self._add(movement, text["reference"])

    def _add(self, movement: PaymentRow, reference_text: str) -> None:
        first = self.first_row_of.get(movement.reference)
        if first is None:
            if self._fits_what_is_recorded(movement):
                self.first_row_of[movement.reference] = movement
                self.checked.rows.append(movement)
            return
        if _same_movement(first, movement):
            self.checked.rows.append(_as_repeat(movement, first.row))
            return
        self.fail(
            movement.row,
            "reference",
            reference_text,
            f"row {first.row} already uses this reference for another movement",
            "give each movement its own bank or document reference",
        )

    def _fits_what_is_recorded(self, movement: PaymentRow) -> bool:
        """A reference already in the store must name this very movement (a re-run)."""
        held = self.facts.recorded.get(movement.reference)
        if held is None:
            return self._invoice_takes_money(movement)
        recorded = (held.invoice_number, held.kind, held.amount_minor)
        if recorded == (movement.folio, movement.kind, movement.amount_minor):
            return True
        shown = format_amount(held.amount_minor, held.currency)
        self.fail(
            movement.row,
            "reference",
            movement.reference,
            f"is already recorded as a {held.kind} of {shown} on invoice "
            f"{held.invoice_number}",
            "give this movement its own bank or document reference",
        )
        return False

    def _invoice_takes_money(self, movement: PaymentRow) -> bool:
        invoice = self.facts.invoices[movement.folio]
        if invoice.status == InvoiceStatus.OPEN:
            return True
        self.fail(
            movement.row,
            "folio",
            movement.folio,
            f"the invoice is {invoice.status}, so it takes no more money",
            "check the folio; a payment beyond the invoice is a refund to decide",
        )
        return False

    def _width(self, row: int, cells: list[str]) -> None:
        """A cell beyond the header is a separator inside a value: 1,500 read as 1 and 500."""
        if not any(cell.strip() for cell in cells[self.header_width :]):
            return
        self.checked.errors.append(
            RowError(
                row,
                "cells beyond the header",
                self.delimiter.join(cells[self.header_width :]),
                f"the row has {len(cells)} cells but the header names "
                f"{self.header_width} columns",
                'a separator inside a value splits it: quote that cell ("1,500") or '
                "write the amount without thousands separators",
            )
        )

    def _currency(self, row: int, text: str, invoice: Invoice | None) -> None:
        if invoice is None or not text or text.upper() == invoice.currency:
            return
        self.fail(
            row,
            "currency",
            text,
            f"invoice {invoice.invoice_number} is in {invoice.currency}",
            "record a movement in the invoice's currency; convert it first if the bank "
            "received another one",
        )

    def _invoice(self, row: int, folio: str) -> Invoice | None:
        invoice = self.facts.invoices.get(folio)
        if invoice is None:
            self.fail(
                row,
                "folio",
                folio,
                "no invoice has this folio",
                "check the folio (leading zeros count) or import the invoice first",
            )
        return invoice

    def _kind(self, row: int, text: str) -> PaymentKind | None:
        if not text:
            return self.default_kind
        kind = KIND_NAMES.get(text.lower().replace(" ", "_"))
        if kind is None:
            self.fail(
                row,
                "kind",
                text,
                "is not a kind of movement",
                "write payment or credit_note",
            )
        return kind

    def _reference(self, row: int, text: str) -> str | None:
        if text:
            return text
        self.fail(
            row,
            "reference",
            text,
            "is blank",
            "copy the bank or document reference: it is what makes a re-run harmless",
        )
        return None

    def _amount(self, row: int, text: str, invoice: Invoice | None) -> int | None:
        if invoice is None:
            return None
        try:
            return parse_operator_amount(text, invoice.currency)
        except MoneyError as error:
            hint = f"write the amount in {invoice.currency} as you would type it"
            self.fail(row, "amount", text, str(error), hint)
            return None

    def _received(
        self, row: int, text: str, invoice: Invoice | None
    ) -> datetime | None:
        if invoice is None:
            return None
        zone = self.facts.zones[invoice.invoice_number]
        try:
            received = received_instant(text, zone)
        except ValueError as error:
            self.fail(row, "received", text, str(error), DATE_HINT)
            return None
        refusal = why_not_received(received, invoice, zone, self.now)
        if refusal is not None:
            later = "; leave this row for a later file" if refusal.not_yet else ""
            self.fail(row, "received", text, refusal.reason, refusal.hint + later)
            return None
        return received


@dataclass(frozen=True)
class ReceivedRefusal:
    """Why an instant cannot be when a payment was received, and what to do."""

    reason: str
    hint: str
    not_yet: bool = False  # in the future: it may still arrive, and be recorded then


def why_not_received(
    received: datetime, invoice: Invoice, time_zone: str, now: datetime
) -> ReceivedRefusal | None:
    """The rules a received instant keeps, for pay and pay-file alike; None when it may.

    It has happened (with a few minutes of clock skew), and not before the invoice
    existed: that is most often a mistyped year, and an advance paid earlier is applied
    to the invoice once it is issued, on or after that day.
    """
    if received > now + CLOCK_SKEW_ALLOWED:
        return ReceivedRefusal(
            f"is in the future (it is {format_local(now, time_zone)} now)",
            "record a payment once it was received",
            not_yet=True,
        )
    if local_date_of(received, time_zone) < invoice.issue_date:
        return ReceivedRefusal(
            f"is before invoice {invoice.invoice_number} was issued "
            f"({invoice.issue_date})",
            "check the year; an advance paid earlier is applied on or after the issue "
            "date",
        )
    return None


def received_instant(text: str, time_zone: str) -> datetime:
    """The instant a movement was received: a day alone is that day's start where the debtor is.

    A bank export often gives the day only; its start is the one instant of it sure to
    have passed, so a payment received today is never refused as a future one.
    """
    if not text:
        raise ValueError("is blank")
    day_first = _DAY_FIRST.fullmatch(text)
    try:
        if day_first:
            day, month, year = (int(part) for part in day_first.groups())
            return local_instant(date(year, month, day), time(0), time_zone)
        if _YEAR_FIRST.fullmatch(text):
            return local_instant(date.fromisoformat(text), time(0), time_zone)
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not a date") from None
    except OverflowError:
        raise ValueError(_OUTSIDE_THE_CALENDAR) from None
    if instant.tzinfo is None:
        raise ValueError("is an instant without its UTC offset")
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise ValueError(_OUTSIDE_THE_CALENDAR) from None


def _same_movement(first: PaymentRow, again: PaymentRow) -> bool:
    # The day counts too: one reference on two days is two movements, or a typo to see.
    return (first.folio, first.kind, first.amount_minor, first.received_at) == (
        again.folio,
        again.kind,
        again.amount_minor,
        again.received_at,
    )


def _as_repeat(movement: PaymentRow, first_row: int) -> PaymentRow:
    return PaymentRow(
        movement.row,
        movement.folio,
        movement.amount_minor,
        movement.currency,
        movement.reference,
        movement.received_at,
        movement.kind,
        repeat_of_row=first_row,
    )


def _refuse_overpayments(
    checked: CheckedFile, facts: _StoreFacts, columns: dict[str, tuple[int, str]]
) -> None:
    """Refuse a row that would take a folio below zero, counting the file's earlier rows."""
    open_balance = {
        folio: invoice.balance_minor for folio, invoice in facts.invoices.items()
    }
    kept: list[PaymentRow] = []
    refused: set[int] = set()
    for movement in checked.rows:
        if movement.repeat_of_row in refused:
            checked.errors.append(_repeat_of_refused(movement, columns["reference"][1]))
            continue
        if not _new_money(movement, facts):
            kept.append(movement)
            continue
        balance = open_balance[movement.folio]
        if movement.amount_minor > balance:
            checked.errors.append(
                _overpayment(movement, balance, facts, columns["amount"][1])
            )
            refused.add(movement.row)
            continue
        open_balance[movement.folio] = balance - movement.amount_minor
        kept.append(movement)
    checked.rows = kept


def _new_money(movement: PaymentRow, facts: _StoreFacts) -> bool:
    """Neither already in the store nor a second line of a movement earlier in the file."""
    return movement.repeat_of_row is None and movement.reference not in facts.recorded


def _repeat_of_refused(movement: PaymentRow, column: str) -> RowError:
    return RowError(
        movement.row,
        "reference",
        movement.reference,
        f"repeats row {movement.repeat_of_row}, which is refused",
        f"correct row {movement.repeat_of_row}; this row then counts as the same movement",
        movement.folio,
        column,
    )


def _overpayment(
    movement: PaymentRow, balance: int, facts: _StoreFacts, column: str
) -> RowError:
    stored = facts.invoices[movement.folio].balance_minor
    earlier = (
        f" after this file's earlier rows (open balance in the store: "
        f"{format_amount(stored, movement.currency)})"
        if balance != stored
        else ""
    )
    return RowError(
        movement.row,
        "amount",
        format_amount(movement.amount_minor, movement.currency),
        f"is more than the open balance of {movement.folio}, "
        f"{format_amount(balance, movement.currency)}{earlier}",
        "check the amount, or add --allow-overpayment if the debtor did pay more",
        movement.folio,
        column,
    )


def totals_by_currency(rows: Iterable[tuple[int, str]]) -> str:
    """``1.250.000 CLP, 55,94 USD``: each currency's sum, es-CL style, or ``nothing``."""
    sums: dict[str, int] = {}
    for amount_minor, currency in rows:
        sums[currency] = sums.get(currency, 0) + amount_minor
    shown = [format_amount(total, currency) for currency, total in sorted(sums.items())]
    return ", ".join(shown) or "nothing"
