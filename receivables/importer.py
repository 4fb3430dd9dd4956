"""Portfolio import: read a CSV under a declared mapping, check rows, segment, store."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import and_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from receivables.commitments import broken_promise_dates, broken_promises_before
from receivables.deliveries import is_erased
from receivables.locations import DebtorLocation, locate
from receivables.mapping import (
    CUSTOMER_TYPES,
    LATEST_YEAR,
    CellError,
    ImportMapping,
    check_payment_form,
    check_time_zone,
    load_mapping,
)
from receivables.money import exponent_of, format_amount
from receivables.policy import PolicyBook, SegmentFacts, load_policy_book
from receivables.store import (
    Customer,
    ImportBatch,
    Invoice,
    InvoiceStatus,
    StopFactRecord,
    make_engine,
    session_scope,
)

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 500
QUERY_CHUNK = 500  # keeps IN (...) lists well under every driver's parameter limit
MAX_TERMS_DAYS = 365
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Text-direction controls make a value show differently from what it holds, the way
# "Trojan Source" hides code; no field of an invoice needs them.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # the Arabic letter mark, the left and right marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, overrides and their pop
    "\u2066\u2067\u2068\u2069"  # isolates and their pop
)
_CONTROL_NAMES = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return"}
ASCII_DIGITS = frozenset("0123456789")
FOLIO_INNER = frozenset("-_/. ")
PHONE_CHARACTERS = ASCII_DIGITS | frozenset(" +-()")
ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")


class PortfolioFileError(ValueError):
    """A file that cannot be imported at all: unreadable, or without a mapped column."""

    def __init__(
        self, file: str, row: int | None, field: str, reason: str, hint: str
    ) -> None:
        self.file, self.row, self.field = file, row, field
        self.reason, self.hint = reason, hint
        where = f"{file} row {row}" if row is not None else file
        super().__init__(f"{where}, {field}: {reason}. {sentence(hint)}")


@dataclass(frozen=True)
class RowError:
    """Why one row of the file was rejected, and what to do about it."""

    row: int  # 1-based; the header is row 1, so the first invoice is row 2
    field: str
    value: str
    reason: str
    hint: str
    invoice_number: str | None = None
    column: str | None = None  # the file's own header for the field, as people know it

    def describe(self, file_name: str) -> str:
        """One line a person can act on: file, row, column, value, reason, remedy."""
        where = f"column {self.column!r} ({self.field})" if self.column else self.field
        return (
            f"{file_name} row {self.row}, {where} {self.value!r}: {self.reason}. "
            f"{sentence(self.hint)}"
        )


@dataclass(frozen=True)
class CustomerFacts:
    """What a row says about its customer; empty strings where the file says nothing."""

    name: str
    customer_type: str
    email: str
    phone: str
    whatsapp: str
    location: DebtorLocation
    region: str
    lawsuit_served_on: date | None = None
    insolvency_opened_on: date | None = None


@dataclass(frozen=True)
class InvoiceStopFacts:
    """What a row says about its invoice's DTE: payment form, SII reception, cession."""

    payment_form: int | None = None
    sii_received_on: date | None = None
    ceded_on: date | None = None
    ceded_to: str | None = None


@dataclass(frozen=True)
class InvoiceRow:
    """One valid row of the file, read into typed values."""

    row: int
    invoice_number: str
    customer_id: str
    issue_date: date
    due_date: date | None
    amount_minor: int
    currency: str
    settled_date: date | None
    disputed: bool
    terms_days: int | None
    customer: CustomerFacts
    stop_facts: InvoiceStopFacts = InvoiceStopFacts()


@dataclass(frozen=True)
class SettledInvoice:
    """An earlier invoice of a customer, as far as lateness is concerned."""

    due_date: date
    settled_date: date


@dataclass(frozen=True)
class OpenInvoice:
    """What the starter needs to open the case of one imported, open invoice."""

    tenant: str
    invoice_number: str
    customer_id: str
    issue_date: date
    due_date: date
    amount_minor: int
    currency: str
    time_zone: str
    segment: str | None
    policy_name: str | None
    policy_version: int | None


@dataclass
class ImportReport:
    """What an import did with each row: accepted, already there, rejected or held."""

    file: str
    mapping: str
    tenant: str
    total_rows: int = 0
    batch_id: int | None = None  # the batch written by this import, if it wrote one
    repeat_of_batch: int | None = None  # set when this very file was imported before
    accepted: list[str] = field(default_factory=list)
    already_imported: list[str] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)
    needs_due_date: list[str] = field(default_factory=list)
    # Valid rows left unwritten because other rows had errors and accept_valid was off.
    held_back: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)  # invoice number to its row
    # What a person must know about a written row beyond its outcome, by invoice number.
    notes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.summary()

    @property
    def rejected_rows(self) -> list[int]:
        """The rows with at least one error, in file order."""
        return sorted({error.row for error in self.rejected})

    def summary(self, max_errors: int = 20) -> str:
        """A short printable account of the import, spelling out the first errors."""
        name = Path(self.file).name
        head = f"{name} (mapping {self.mapping}, tenant {self.tenant}): "
        if self.repeat_of_batch is not None:
            return (
                head
                + f"already imported as batch {self.repeat_of_batch}; nothing to do."
            )
        lines = [
            head + counted(self.total_rows, "row"),
            f"  accepted and written: {len(self.accepted)}"
            + (f" (batch {self.batch_id})" if self.batch_id is not None else ""),
            f"  already imported: {len(self.already_imported)}",
            f"  rejected rows: {len(self.rejected_rows)}",
            f"  waiting for a due date: {len(self.needs_due_date)}",
        ]
        if self.held_back:
            lines.append(
                f"  held back: {counted(len(self.held_back), 'valid row')} NOT written "
                "because other rows have errors. Fix those rows and import the file "
                "again, or import it again with --accept-valid to write only the "
                "valid rows"
            )
        lines += [
            f"  {name} row {self.row_of[number]}: {note}"
            for number, note in self.notes.items()
        ]
        lines += [f"  {error.describe(name)}" for error in self.rejected[:max_errors]]
        if len(self.rejected) > max_errors:
            lines.append(f"  ... and {len(self.rejected) - max_errors} more errors")
        return "\n".join(lines)

    def outcome_lines(self) -> list[dict[str, str]]:
        """One record per row outcome, ordered by row, for CSV and JSON reports."""
        waiting = set(self.needs_due_date)
        lines = [
            _line(self.row_of[number], number, outcome, waiting, self.notes.get(number))
            for outcome, numbers in (
                ("accepted", self.accepted),
                ("already_imported", self.already_imported),
                ("held_back", self.held_back),
            )
            for number in numbers
        ]
        lines += [
            {
                "row": str(error.row),
                "invoice_number": error.invoice_number or "",
                "outcome": "rejected",
                "detail": f"{error.field} {error.value!r}: {error.reason}. "
                + sentence(error.hint),
            }
            for error in self.rejected
        ]
        return sorted(lines, key=lambda line: int(line["row"]))

    def write_csv(self, path: Path) -> Path:
        """Write one line per row outcome as UTF-8 CSV, safe to open in spreadsheets."""
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["row", "invoice_number", "outcome", "detail"]
            )
            writer.writeheader()
            writer.writerows(
                {name: inert_cell(cell) for name, cell in line.items()}
                for line in self.outcome_lines()
            )
        return path

    def to_dict(self) -> dict[str, object]:
        """The whole report as plain data."""
        data = asdict(self)
        data["rejected_rows"] = self.rejected_rows
        return data

    def write_json(self, path: Path) -> Path:
        """Write the whole report as UTF-8 JSON."""
        path.write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        return path


def inert_cell(text: str) -> str:
    """The text as a spreadsheet shows it and never runs it: a formula gets a ``'``."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def sentence(text: str) -> str:
    """The text with its first letter capitalised, to follow a full stop."""
    return text[:1].upper() + text[1:]


def counted(count: int, noun: str) -> str:
    """``1 row`` or ``2 rows``: a count with its noun in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _line(
    row: int, number: str, outcome: str, waiting: set[str], note: str | None
) -> dict[str, str]:
    details = ["needs_due_date"] if number in waiting else []
    details += [note] if note else []
    return {
        "row": str(row),
        "invoice_number": number,
        "outcome": outcome,
        "detail": "; ".join(details),
    }


# --- reading the file ---


def read_records(
    content: bytes, mapping: ImportMapping, file_name: str
) -> list[tuple[int, list[str], list[str]]]:
    """Split the file into (row number, header, cells); mapped headers must exist."""
    _refuse_utf8_under_single_byte(content, mapping, file_name)
    # surrogateescape keeps undecodable bytes in their cell, so errors can name the row.
    text = content.decode(mapping.encoding, errors="surrogateescape").removeprefix(
        "\ufeff"
    )
    rows = _split_rows(text, mapping, file_name)
    if not rows:
        raise PortfolioFileError(
            file_name,
            1,
            "(header)",
            "the file is empty",
            "export the portfolio again with its header row",
        )
    header = [cell.strip() for cell in rows[0]]
    _check_header(header, mapping, file_name)
    return [
        (number, header, cells)
        for number, cells in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in cells)
    ]


def _split_rows(text: str, mapping: ImportMapping, file_name: str) -> list[list[str]]:
    # strict: a quote that never closes, or text after a closing quote, is an error
    # instead of a value that silently swallows the rest of the line or of the file.
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True
    )
    rows: list[list[str]] = []
    first_line = 1  # of the record being read; a quoted value may span lines
    try:
        for cells in reader:
            rows.append(cells)
            _refuse_swallowed_lines(
                rows, (first_line, reader.line_num), mapping, file_name
            )
            first_line = reader.line_num + 1
    except csv.Error as error:
        raise PortfolioFileError(
            file_name,
            len(rows) + 1,
            "(file)",
            f"the quoting of the row starting on line {first_line} is broken "
            f"({error}); a quote opened there is not closed where its value ends",
            "close each quoted value with a quote right before the next "
            f"{mapping.delimiter!r} or the line end, and write a quote inside a "
            'value twice ("")',
        ) from None
    return rows


def _refuse_swallowed_lines(
    rows: list[list[str]],
    lines: tuple[int, int],
    mapping: ImportMapping,
    file_name: str,
) -> None:
    """Raise when the last row read has a value that took in whole lines of the file."""
    # No mapped field holds several lines, so a value spanning lines that also holds
    # the delimiter is rows taken in by a quote that opened too early.
    names = [name.strip() for name in rows[0]] if len(rows) > 1 else []
    for column, cell in enumerate(rows[-1], start=1):
        if ("\n" in cell or "\r" in cell) and mapping.delimiter in cell:
            name = names[column - 1] if column <= len(names) else f"column {column}"
            raise PortfolioFileError(
                file_name,
                len(rows),
                name if names else "(header)",
                f"a quote opened on line {lines[0]} runs to line {lines[1]}, taking "
                "in what look like rows of their own",
                "close the quote where the value ends or delete it, and write a "
                'quote inside a value twice ("")',
            )


def _refuse_utf8_under_single_byte(
    content: bytes, mapping: ImportMapping, file_name: str
) -> None:
    if codecs.lookup(mapping.encoding).name.startswith("utf"):
        return
    evidence = _utf8_evidence(content, mapping)
    if evidence is None:
        return
    line, shown = evidence
    raise PortfolioFileError(
        file_name,
        line,
        "(header)" if line == 1 else "(file)",
        f"the file looks UTF-8 while mapping {mapping.name} declares "
        f"{mapping.encoding}: {shown}",
        "declare encoding: utf-8 in a mapping for this export (a copy of "
        f"policies/mappings/{mapping.name}.yaml under another name), or save the file "
        f"again as {mapping.encoding} (in Excel: CSV, not CSV UTF-8)",
    )


def _utf8_evidence(content: bytes, mapping: ImportMapping) -> tuple[int, str] | None:
    """The line and words showing that a file is UTF-8; None when it is not."""
    if content.startswith(codecs.BOM_UTF8):
        return 1, "it starts with the UTF-8 byte order mark, read as 'ï»¿'"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return None  # Latin-1 text with accents is practically never valid UTF-8
    for number, line in enumerate(content.splitlines(), start=1):
        if line.isascii():
            continue
        right = line.decode("utf-8").split(mapping.delimiter)
        wrong = line.decode(mapping.encoding, errors="replace").split(mapping.delimiter)
        pairs = zip(wrong, right, strict=True)
        seen, meant = next(((w, r) for w, r in pairs if w != r), (wrong[0], right[0]))
        return number, f"line {number} reads {seen.strip()!r} for {meant.strip()!r}"
    return None


def _check_header(header: list[str], mapping: ImportMapping, file_name: str) -> None:
    if any(_undecodable(cell) for cell in header):
        raise PortfolioFileError(
            file_name,
            1,
            "(header)",
            f"not readable as {mapping.encoding}",
            _encoding_hint(mapping),
        )
    _refuse_repeated_columns(header, mapping, file_name)
    missing = [name for name in mapping.required_headers() if name not in header]
    if missing:
        raise PortfolioFileError(
            file_name,
            1,
            "(header)",
            f"missing column(s) {', '.join(map(repr, missing))}",
            f"the header has {', '.join(map(repr, header))}; fix the columns of "
            f"mapping {mapping.name} or the file (delimiter: {mapping.delimiter!r})",
        )


def _refuse_repeated_columns(
    header: list[str], mapping: ImportMapping, file_name: str
) -> None:
    # Only mapped columns matter: an unread column may repeat, as empty names often do.
    read = set(mapping.required_headers())
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        if name in read:
            positions.setdefault(name, []).append(position)
    for name, found in positions.items():
        if len(found) > 1:
            where = " and ".join(f"{n} ({_column_letters(n)})" for n in found)
            raise PortfolioFileError(
                file_name,
                1,
                "(header)",
                f"column {name!r} appears more than once, as columns {where}",
                f"keep the one mapping {mapping.name} should read and rename or "
                "delete the others",
            )


def _column_letters(position: int) -> str:
    """The spreadsheet name of a 1-based column: 1 is A, 27 is AA."""
    letters = ""
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _undecodable(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _visible(text: str) -> str:
    # Shows the undecodable bytes as \xNN instead of the surrogates that stand for them.
    raw = text.encode("utf-8", errors="surrogateescape")
    return raw.decode("utf-8", errors="backslashreplace")


def _encoding_hint(mapping: ImportMapping) -> str:
    return (
        f"declare the file's real encoding in mapping {mapping.name} (encoding: "
        f"latin-1 for most Excel exports from Chile), or save it as {mapping.encoding}"
    )


# --- checking one cell ---


def hidden_character(text: str) -> str | None:
    """The first control or text-direction character in the text, described; or None."""
    for char in text:
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS:
            name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "a control code")
            return f"U+{ord(char):04X}, {name}"
    return None


def check_folio(text: str) -> str:
    """Return a folio of letters, digits 0-9, and ``- _ / .`` or spaces inside."""
    for position, char in enumerate(text):
        inner = 0 < position < len(text) - 1
        if char in ASCII_DIGITS or char.isalpha() or (inner and char in FOLIO_INNER):
            continue
        if char.isdigit():
            raise ValueError(f"has the digit {char!r}, which is not one of 0-9")
        where = "starts with" if position == 0 else "ends with" if not inner else "has"
        raise ValueError(f"{where} {char!r}, which a folio cannot have there")
    return text


def check_email(text: str) -> str:
    """Return an e-mail address with one ``@`` and a dot in its domain, or raise."""
    local, _, domain = text.partition("@")
    if "@" not in text:
        raise ValueError("has no '@'")
    if text.count("@") > 1:
        raise ValueError("has more than one '@'; write one address per cell")
    if any(char.isspace() for char in text):
        raise ValueError("has a space, which an address cannot have")
    if not local:
        raise ValueError("has nothing before the '@'")
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        raise ValueError(f"{domain!r} after the '@' is not a domain like empresa.cl")
    return text


def check_phone(text: str) -> str:
    """Return a phone number: 8 to 15 digits 0-9, with spaces and ``+ - ( )``."""
    odd = next((char for char in text if char not in PHONE_CHARACTERS), None)
    if odd is not None:
        raise ValueError(f"has {odd!r}; a phone number has digits 0-9, spaces, + - ( )")
    if "+" in text[1:]:
        raise ValueError("has a '+' after the start")
    digits = sum(char in ASCII_DIGITS for char in text)
    if not 8 <= digits <= 15:
        raise ValueError(f"has {digits} digits; a phone number has 8 to 15")
    return text


# --- checking one row ---


def column_of(mapping: ImportMapping, field: str) -> str | None:
    """The file's column that holds a field, if the mapping names one."""
    if field == "currency":
        return mapping.currency.column
    header = getattr(mapping.columns, field, None)
    return header if isinstance(header, str) else None


class _RowReader:
    """Reads the mapped cells of one row, collecting every error instead of stopping."""

    def __init__(self, row: int, cells: dict[str, str], mapping: ImportMapping) -> None:
        self.row, self.cells, self.mapping = row, cells, mapping
        self.errors: list[RowError] = []

    def header(self, name: str) -> str | None:
        """The file's column that holds a field, if the mapping names one."""
        return column_of(self.mapping, name)

    def text(self, name: str) -> str:
        """The stripped cell of a field; empty when the mapping has no column for it."""
        header = self.header(name)
        return self.cells.get(header, "").strip() if header else ""

    def fail(self, name: str, value: str, reason: str, hint: str) -> None:
        """Record an error on a field of this row, under the file's own column name."""
        error = RowError(self.row, name, value, reason, hint, column=self.header(name))
        self.errors.append(error)

    def read(self, name: str, convert: Callable[[str], T], hint: str) -> T | None:
        """Convert a field's cell; on failure record why and return None."""
        value = self.text(name)
        try:
            return convert(value)
        except CellError as error:
            self.fail(name, value, str(error), error.hint)
        except ValueError as error:
            self.fail(name, value, str(error), hint)
        return None

    def optional(self, name: str, convert: Callable[[str], T], hint: str) -> T | None:
        """Like ``read``, but an empty cell is simply None."""
        return self.read(name, convert, hint) if self.text(name) else None

    def required(self, name: str, hint: str) -> str:
        """A field's text, recording an error when it is empty."""
        value = self.text(name)
        if not value:
            self.fail(name, value, "is empty", hint)
        return value


def _date_hint(mapping: ImportMapping, *, may_be_empty: bool = False) -> str:
    example = date(2026, 1, 24).strftime(mapping.date_format)
    tail = "; or leave it empty to derive it from payment terms" if may_be_empty else ""
    return (
        f"write it as {mapping.date_pattern()} (24 January 2026 is {example}), or "
        f"fix date_format in mapping {mapping.name} if the file has another order{tail}"
    )


def _read_terms(text: str) -> int:
    if not re.fullmatch("[0-9]+", text) or int(text) > MAX_TERMS_DAYS:
        raise ValueError(
            f"{text!r} is not a whole number of days from 0 to {MAX_TERMS_DAYS}"
        )
    return int(text)


def _iso_currency(text: str) -> str:
    code = text.upper()
    exponent_of(code)
    return code


def _read_currency(reader: _RowReader) -> str | None:
    if reader.mapping.currency.fixed is not None:
        return reader.mapping.currency.fixed
    return reader.read("currency", _iso_currency, "write an ISO code like CLP or USD")


def _read_amount(reader: _RowReader, currency: str | None) -> int | None:
    if currency is None:
        return None
    hint = (
        f"write the amount in {currency} like "
        f"{reader.mapping.amount_format.example(exponent_of(currency))}, above zero"
    )
    amount = reader.read(
        "amount", lambda text: reader.mapping.parse_amount(text, currency), hint
    )
    if amount is not None and amount <= 0:
        reader.fail(
            "amount",
            reader.text("amount"),
            "must be above zero",
            "import credit notes and refunds as payments, not invoices",
        )
        return None
    return amount


def _check_date_order(
    reader: _RowReader, issue: date, due: date | None, settled: date | None
) -> None:
    if due is not None and due < issue:
        reader.fail(
            "due_date",
            reader.text("due_date"),
            f"due date {due} is before the issue date {issue}",
            "correct one of the two dates in the file",
        )
    if settled is not None and settled < issue:
        reader.fail(
            "settled_date",
            reader.text("settled_date"),
            f"settled date {settled} is before the issue date {issue}",
            "correct one of the two dates, or leave settled_date empty if unpaid",
        )


def _read_dates(reader: _RowReader) -> tuple[date | None, date | None, date | None]:
    mapping = reader.mapping
    issue = reader.read("issue_date", mapping.parse_date, _date_hint(mapping))
    due = reader.optional(
        "due_date", mapping.parse_date, _date_hint(mapping, may_be_empty=True)
    )
    settled = reader.optional(
        "settled_date",
        mapping.parse_date,
        _date_hint(mapping) + "; leave it empty while unpaid",
    )
    if issue is not None:
        _check_date_order(reader, issue, due, settled)
    return issue, due, settled


def _read_customer(reader: _RowReader) -> CustomerFacts:
    words = [*reader.mapping.customer_type_values, *CUSTOMER_TYPES]
    kind = reader.optional(
        "customer_type",
        reader.mapping.parse_customer_type,
        f"use one of {', '.join(words)}, or leave it empty for the default "
        f"({reader.mapping.defaults.customer_type})",
    )
    zone = reader.optional(
        "time_zone",
        check_time_zone,
        "use an IANA name like America/Santiago, or leave it empty",
    )
    phone_hint = "write it like +56 9 1234 5678, or leave it empty"
    region = reader.text("region")
    stop_hint = _date_hint(reader.mapping) + "; leave it empty if it never happened"
    return CustomerFacts(
        name=reader.text("customer_name"),
        customer_type=kind or reader.mapping.defaults.customer_type,
        email=reader.optional(
            "email",
            check_email,
            "write one address like cobranza@empresa.cl, or leave it empty",
        )
        or "",
        phone=reader.optional("phone", check_phone, phone_hint) or "",
        whatsapp=reader.optional("whatsapp", check_phone, phone_hint) or "",
        location=locate(zone, region, reader.mapping.defaults.time_zone),
        region=region,
        lawsuit_served_on=reader.optional(
            "lawsuit_served_on", reader.mapping.parse_date, stop_hint
        ),
        insolvency_opened_on=reader.optional(
            "insolvency_opened_on", reader.mapping.parse_date, stop_hint
        ),
    )


def _read_invoice_stop_facts(reader: _RowReader) -> InvoiceStopFacts:
    stop_hint = _date_hint(reader.mapping) + "; leave it empty if it never happened"
    ceded_on = reader.optional("ceded_on", reader.mapping.parse_date, stop_hint)
    ceded_to = reader.text("ceded_to")
    if ceded_to and ceded_on is None and not reader.text("ceded_on"):
        reader.fail(
            "ceded_on",
            "",
            f"is empty but ceded_to names an assignee ({ceded_to!r})",
            "write the date of the cession, or empty ceded_to if it was not ceded",
        )
    return InvoiceStopFacts(
        payment_form=reader.optional(
            "payment_form",
            check_payment_form,
            "write the DTE's FmaPago: 1 (contado), 2 (crédito) or 3 (sin costo), "
            "or leave it empty",
        ),
        sii_received_on=reader.optional(
            "sii_received_on",
            reader.mapping.parse_date,
            _date_hint(reader.mapping) + "; or leave it empty if not known",
        ),
        ceded_on=ceded_on,
        ceded_to=ceded_to or None,
    )


def parse_row(
    row: int, cells: dict[str, str], mapping: ImportMapping
) -> tuple[InvoiceRow | None, list[RowError]]:
    """Read one data row under the mapping: the invoice, or every error it has."""
    reader = _RowReader(row, cells, mapping)
    number = _read_folio(reader)
    customer_id = reader.required("customer_id", "fill in the customer's id")
    issue, due, settled = _read_dates(reader)
    currency = _read_currency(reader)
    amount = _read_amount(reader, currency)
    disputed = reader.read(
        "disputed",
        mapping.parse_disputed,
        f"use one of {', '.join(mapping.disputed_yes_values)} or "
        f"{', '.join(mapping.disputed_no_values)}, or leave it empty",
    )
    terms = reader.optional(
        "payment_terms_days", _read_terms, "write whole days like 30, or leave it empty"
    )
    customer = _read_customer(reader)
    stop_facts = _read_invoice_stop_facts(reader)
    if issue is not None and due is None and terms is not None:
        _check_derived_due(reader, issue, terms)
    if reader.errors or issue is None or amount is None or currency is None:
        return None, [_with_number(error, number) for error in reader.errors]
    return InvoiceRow(
        row=row,
        invoice_number=number,
        customer_id=customer_id,
        issue_date=issue,
        due_date=due,
        amount_minor=amount,
        currency=currency,
        settled_date=settled,
        disputed=bool(disputed),
        terms_days=terms,
        customer=customer,
        stop_facts=stop_facts,
    ), []


def _read_folio(reader: _RowReader) -> str:
    number = reader.required(
        "invoice_number", "fill in the invoice number, or delete the row"
    )
    if number:
        reader.read(
            "invoice_number",
            check_folio,
            "a folio is an identifier: letters, digits 0-9, and - _ / . or spaces "
            "between them; correct it in the source (a leading = + - @ would run as a "
            "formula in a spreadsheet)",
        )
    return number


def _check_derived_due(reader: _RowReader, issue: date, terms: int) -> None:
    hint = "check the issue date and the payment terms"
    try:
        due = derive_due_date(issue, terms, None)[0]
    except ValueError as error:
        reader.fail("payment_terms_days", str(terms), str(error), hint)
        return
    if due is not None and due.year > LATEST_YEAR:
        reader.fail(
            "payment_terms_days",
            str(terms),
            f"gives the due date {due}: implausible year",
            hint,
        )


def _with_number(error: RowError, number: str) -> RowError:
    return replace(error, invoice_number=number or None)


def _shape_errors(
    row: int, header: list[str], cells: list[str], mapping: ImportMapping
) -> list[RowError]:
    if len(cells) != len(header):
        return [
            RowError(
                row,
                "(row)",
                mapping.delimiter.join(cells)[:80],
                f"has {len(cells)} cells but the header has {len(header)}",
                f"look for a stray {mapping.delimiter!r} or an unquoted value "
                "containing it",
            )
        ]
    mapped = {header: name for name, header in mapping.columns.declared().items()}
    read = set(mapping.required_headers())
    found = (
        _cell_error(row, mapped.get(name, name), cell, mapping)
        for name, cell in zip(header, cells, strict=True)
        if name in read
    )
    return [error for error in found if error is not None]


def _cell_error(
    row: int, field: str, cell: str, mapping: ImportMapping
) -> RowError | None:
    if _undecodable(cell):
        return RowError(
            row,
            field,
            _visible(cell),
            f"not readable as {mapping.encoding}",
            _encoding_hint(mapping),
        )
    hidden = hidden_character(cell.strip())
    if hidden is None:
        return None
    column = mapping.columns.declared().get(field)
    hint = (
        "delete it in the source: control and text-direction characters make a "
        "value show differently from what it holds"
    )
    if _windows_text_as_latin1(cell, mapping):
        hint = (
            "the file is likely Windows-1252 (curly quotes, the euro sign): declare "
            f"encoding: cp1252 in mapping {mapping.name}"
        )
    return RowError(
        row,
        field,
        cell.strip(),
        f"has an invisible character ({hidden})",
        hint,
        column=column,
    )


def _windows_text_as_latin1(cell: str, mapping: ImportMapping) -> bool:
    # Latin-1 reads the bytes 0x80-0x9F that Windows-1252 uses for curly quotes, dashes
    # and the euro sign as invisible control codes.
    is_latin1 = codecs.lookup(mapping.encoding).name == "iso8859-1"
    return is_latin1 and any("\x80" <= char <= "\x9f" for char in cell)


def check_rows(
    records: Sequence[tuple[int, list[str], list[str]]],
    mapping: ImportMapping,
    report: ImportReport,
    progress: ProgressCallback | None = None,
) -> list[InvoiceRow]:
    """Read every row: errors and duplicates go to the report, valid rows come back."""
    first_row: dict[str, int] = {}
    valid: list[InvoiceRow] = []
    for done, (row, header, cells) in enumerate(records, start=1):
        errors = _shape_errors(row, header, cells, mapping)
        parsed, errors = (
            (None, errors)
            if errors
            else parse_row(row, dict(zip(header, cells, strict=True)), mapping)
        )
        number = parsed.invoice_number if parsed else _cell(header, cells, mapping)
        if number and number in first_row:
            errors.append(_duplicate(row, number, first_row[number]))
        elif number:
            first_row[number] = row
        report.rejected.extend(errors)
        if parsed is not None and not errors:
            valid.append(parsed)
            report.row_of[parsed.invoice_number] = row
        if progress is not None and (
            done % PROGRESS_EVERY == 0 or done == len(records)
        ):
            progress(done, len(records))
    return valid


def _duplicate(row: int, number: str, first: int) -> RowError:
    return RowError(
        row,
        "invoice_number",
        number,
        f"appears already in row {first}",
        "keep one row per invoice: delete or renumber this one",
        number,
    )


def _cell(header: list[str], cells: list[str], mapping: ImportMapping) -> str:
    cells_by_name = dict(zip(header, cells, strict=False))
    return cells_by_name.get(mapping.columns.invoice_number, "").strip()


# --- lateness, due dates and segments ---


def average_days_late(history: Iterable[SettledInvoice], as_of: date) -> float | None:
    """Mean days late of the invoices settled strictly before ``as_of``; None if none.

    Only what was known on ``as_of`` counts, so segmenting an old invoice never looks
    ahead. Early payment counts as zero days late, as in the source systems' DaysLate.
    """
    # Limit: a scan per invoice makes a customer with n invoices cost n² steps; fine for
    # thousands, not millions. Sorting by settled date with prefix sums would lift it.
    late = [
        max(0, (item.settled_date - item.due_date).days)
        for item in history
        if item.settled_date < as_of
    ]
    return sum(late) / len(late) if late else None


def derive_due_date(
    issue_date: date, terms_in_file: int | None, customer_terms: int | None
) -> tuple[date | None, str | None]:
    """A due date from payment terms and the rule used; (None, None) with no terms."""
    if terms_in_file is not None:
        return _days_after(issue_date, terms_in_file), (
            f"issue + {terms_in_file} days (payment terms in file)"
        )
    if customer_terms is not None:
        return _days_after(issue_date, customer_terms), (
            f"issue + {customer_terms} days (customer terms)"
        )
    return None, None


def _days_after(day: date, days: int) -> date:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        raise ValueError(
            f"{day} + {days} days is past the last date the calendar holds"
        ) from None


# --- the store ---


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), QUERY_CHUNK):
        yield items[start : start + QUERY_CHUNK]


def _stored_invoices(
    session: Session, tenant: str, numbers: Sequence[str]
) -> dict[str, Invoice]:
    found: dict[str, Invoice] = {}
    for chunk in _chunks(numbers):
        statement = select(Invoice).where(
            Invoice.tenant == tenant, col(Invoice.invoice_number).in_(chunk)
        )
        found.update(
            (invoice.invoice_number, invoice) for invoice in session.exec(statement)
        )
    return found


def _stored_customers(
    session: Session, tenant: str, ids: Sequence[str]
) -> dict[str, Customer]:
    found: dict[str, Customer] = {}
    for chunk in _chunks(ids):
        statement = select(Customer).where(
            Customer.tenant == tenant, col(Customer.customer_id).in_(chunk)
        )
        found.update(
            (customer.customer_id, customer) for customer in session.exec(statement)
        )
    return found


def _value_text(value: object) -> str:
    """A stored or imported value as a person reads it: 'empty', not None."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _differences(stored: Invoice, row: InvoiceRow) -> list[tuple[str, str, str]]:
    pairs: list[tuple[str, object, object]] = [
        ("customer_id", stored.customer_id, row.customer_id),
        ("issue_date", stored.issue_date, row.issue_date),
        (
            "amount",
            format_amount(stored.amount_minor, stored.currency),
            format_amount(row.amount_minor, row.currency),
        ),
        ("disputed", stored.disputed, row.disputed),
        ("settled_date", stored.settled_date, row.settled_date),
    ]
    if row.due_date is not None:
        pairs.append(("due_date", stored.due_date, row.due_date))
    return [
        (name, _value_text(old), _value_text(new))
        for name, old, new in pairs
        if old != new
    ]


def sort_out_stored(
    session: Session,
    tenant: str,
    rows: Sequence[InvoiceRow],
    report: ImportReport,
    mapping: ImportMapping,
) -> list[InvoiceRow]:
    """Keep rows not yet stored; same data is already imported, other data conflicts."""
    stored = _stored_invoices(session, tenant, [row.invoice_number for row in rows])
    fresh: list[InvoiceRow] = []
    for row in rows:
        invoice = stored.get(row.invoice_number)
        if invoice is None:
            fresh.append(row)
            continue
        differences = _differences(invoice, row)
        if not differences:
            report.already_imported.append(row.invoice_number)
            continue
        field, _, value = differences[0]
        report.rejected.append(
            RowError(
                row.row,
                field,
                value,
                "conflicts with the invoice already imported: "
                + "; ".join(
                    f"{_field_text(mapping, f)} is {old} there, {new} here"
                    for f, old, new in differences
                ),
                "an import never changes a stored invoice: correct the file, or record "
                "the payment, credit note or due-date change on the invoice's case",
                row.invoice_number,
                column=column_of(mapping, field),
            )
        )
    return fresh


def _field_text(mapping: ImportMapping, field: str) -> str:
    column = column_of(mapping, field)
    return f"{column!r} ({field})" if column else field


def placeholder_contact(customer_id: str) -> tuple[str, str]:
    """A neutral name and an undeliverable e-mail for a customer without a name."""
    # Anonymised sources (the IBM sample) carry only an id. The address is on .invalid,
    # a top-level domain reserved by RFC 2606 that never resolves: it reaches nobody.
    local = re.sub(r"[^a-z0-9.-]+", "-", customer_id.lower()).strip("-.") or "customer"
    return f"Customer {customer_id}", f"{local}@customers.invalid"


def _new_customer(
    tenant: str, row: InvoiceRow, terms: int | None, mapping: ImportMapping
) -> Customer:
    facts = row.customer
    name, email = facts.name, facts.email
    if mapping.placeholder_contacts:
        fake_name, fake_email = placeholder_contact(row.customer_id)
        name, email = name or fake_name, email or fake_email
    return Customer(
        tenant=tenant,
        customer_id=row.customer_id,
        name=name or f"Customer {row.customer_id}",
        customer_type=facts.customer_type,
        email=email or None,
        phone=facts.phone or None,
        whatsapp=facts.whatsapp or None,
        time_zone=facts.location.time_zone,
        time_zone_candidates=",".join(facts.location.candidates) or None,
        region=facts.region or None,
        payment_terms_days=terms,
        lawsuit_served_on=facts.lawsuit_served_on,
        insolvency_opened_on=facts.insolvency_opened_on,
    )


def _fill_blanks(customer: Customer, row: InvoiceRow, terms: int | None) -> str | None:
    """Fill what the stored customer lacks from the row; a note when its data was erased."""
    # Stored customers are never overwritten; a file may only fill in what is missing.
    # An erased value counts as missing: a new debt is a new basis to hold the data.
    facts = row.customer
    was_erased = any(map(is_erased, _personal_values(customer)))
    if is_erased(customer.name) and facts.name:
        customer.name = facts.name
    customer.email = _kept(customer.email) or facts.email or customer.email
    customer.phone = _kept(customer.phone) or facts.phone or customer.phone
    customer.whatsapp = _kept(customer.whatsapp) or facts.whatsapp or customer.whatsapp
    customer.region = customer.region or facts.region or None
    if customer.payment_terms_days is None:
        customer.payment_terms_days = terms
    # A stop fact is never undone by a file that says nothing about it.
    customer.lawsuit_served_on = customer.lawsuit_served_on or facts.lawsuit_served_on
    customer.insolvency_opened_on = (
        customer.insolvency_opened_on or facts.insolvency_opened_on
    )
    if not was_erased:
        return None
    # The send path passes over a value still erased (activities.sending), and over every
    # address while the name is: the case needs the name and one address back.
    addresses = (customer.email, customer.phone, customer.whatsapp)
    restored = not is_erased(customer.name) and any(map(_kept, addresses))
    outcome = (
        "restored from this file"
        if restored
        else "the case has no contact until a file gives it"
    )
    return f"customer {customer.customer_id}'s data had been erased: {outcome}"


def _personal_values(customer: Customer) -> list[str | None]:
    return [customer.name, customer.email, customer.phone, customer.whatsapp]


def _kept(value: str | None) -> str | None:
    """A stored value a file must not replace: set, and not left by an erase."""
    return None if is_erased(value) else value or None


def ensure_customers(
    session: Session,
    tenant: str,
    rows: Sequence[InvoiceRow],
    mapping: ImportMapping,
    notes: dict[str, str] | None = None,
) -> dict[str, Customer]:
    """Find or create the customer of every row, keyed by customer id."""
    # Limit: a new customer takes name, type and contacts from its first row; later rows
    # that disagree are not reported. Checking them would need a per-customer diff.
    first: dict[str, InvoiceRow] = {}
    terms: dict[str, int] = {}
    for row in rows:
        first.setdefault(row.customer_id, row)
        if row.terms_days is not None:
            terms.setdefault(row.customer_id, row.terms_days)
    customers = _stored_customers(session, tenant, list(first))
    for customer_id, row in first.items():
        if customer_id in customers:
            note = _fill_blanks(customers[customer_id], row, terms.get(customer_id))
            if note and notes is not None:
                notes[row.invoice_number] = note
        else:
            customers[customer_id] = _new_customer(
                tenant, row, terms.get(customer_id), mapping
            )
        session.add(customers[customer_id])
    return customers


def _settled_history(
    session: Session,
    tenant: str,
    rows: Sequence[InvoiceRow],
    dues: dict[str, tuple[date | None, str | None]],
) -> dict[str, list[SettledInvoice]]:
    # Limit: only settled_date counts as settlement. An invoice closed as PAID by live
    # payments without a settled_date is not seen; setting it on payment lifts this.
    by_customer: dict[str, dict[str, SettledInvoice]] = {}
    customer_ids = sorted({row.customer_id for row in rows})
    for chunk in _chunks(customer_ids):
        statement = select(Invoice).where(
            Invoice.tenant == tenant,
            col(Invoice.customer_id).in_(chunk),
            col(Invoice.settled_date).is_not(None),
            col(Invoice.due_date).is_not(None),
        )
        for invoice in session.exec(statement):
            if invoice.settled_date is not None and invoice.due_date is not None:
                settled = SettledInvoice(invoice.due_date, invoice.settled_date)
                by_customer.setdefault(invoice.customer_id, {})[
                    invoice.invoice_number
                ] = settled
    for row in rows:
        due = dues[row.invoice_number][0]
        if row.settled_date is not None and due is not None:
            by_customer.setdefault(row.customer_id, {})[row.invoice_number] = (
                SettledInvoice(due, row.settled_date)
            )
    return {customer: list(items.values()) for customer, items in by_customer.items()}


def _new_invoice(
    row: InvoiceRow,
    due: tuple[date | None, str | None],
    customer: Customer,
    history: Sequence[SettledInvoice],
    book: PolicyBook,
    batch_id: int | None,
    broken_promises: Sequence[datetime] = (),
) -> Invoice:
    facts = SegmentFacts(
        row.amount_minor,
        row.currency,
        customer.customer_type,
        average_days_late(history, row.issue_date),
        broken_promises_before(
            broken_promises, row.issue_date, customer.time_zone or "UTC"
        ),
    )
    segment, policy = book.policy_for(facts)
    if row.settled_date is not None:
        status, balance = InvoiceStatus.PAID, 0
    else:
        status = (
            InvoiceStatus.OPEN if due[0] is not None else InvoiceStatus.NEEDS_DUE_DATE
        )
        balance = row.amount_minor
    return Invoice(
        tenant=customer.tenant,
        invoice_number=row.invoice_number,
        customer_id=row.customer_id,
        issue_date=row.issue_date,
        due_date=due[0],
        due_date_rule=due[1],
        amount_minor=row.amount_minor,
        currency=row.currency,
        balance_minor=balance,
        status=status,
        segment=segment,
        policy_name=policy.name,
        policy_version=policy.version,
        disputed=row.disputed,
        settled_date=row.settled_date,
        import_batch_id=batch_id,
        payment_form=row.stop_facts.payment_form,
        sii_received_on=row.stop_facts.sii_received_on,
        ceded_on=row.stop_facts.ceded_on,
        ceded_to=row.stop_facts.ceded_to,
    )


def _due_dates(
    rows: Sequence[InvoiceRow], customers: dict[str, Customer]
) -> dict[str, tuple[date | None, str | None]]:
    dues: dict[str, tuple[date | None, str | None]] = {}
    for row in rows:
        terms = customers[row.customer_id].payment_terms_days
        dues[row.invoice_number] = (
            (row.due_date, None)
            if row.due_date is not None
            else derive_due_date(row.issue_date, row.terms_days, terms)
        )
    return dues


def write_batch(
    session: Session,
    *,
    digest: str,
    rows: Sequence[InvoiceRow],
    mapping: ImportMapping,
    book: PolicyBook,
    report: ImportReport,
) -> None:
    """Store the batch, its customers and its invoices, each invoice segmented."""
    batch = ImportBatch(
        tenant=report.tenant,
        file_name=Path(report.file).name,
        content_sha256=digest,
        mapping=mapping.name,
        accepted_rows=len(rows),
        rejected_rows=len(report.rejected_rows),
    )
    session.add(batch)
    session.flush()
    customers = ensure_customers(session, report.tenant, rows, mapping, report.notes)
    dues = _due_dates(rows, customers)
    histories = _settled_history(session, report.tenant, rows, dues)
    broken = broken_promise_dates(session, report.tenant, customers)
    for row in rows:
        invoice = _new_invoice(
            row,
            dues[row.invoice_number],
            customers[row.customer_id],
            histories.get(row.customer_id, []),
            book,
            batch.id,
            broken.get(row.customer_id, []),
        )
        session.add(invoice)
        session.add_all(_stop_fact_records(row, report))
        report.accepted.append(row.invoice_number)
        if invoice.status == InvoiceStatus.NEEDS_DUE_DATE:
            report.needs_due_date.append(row.invoice_number)
    report.batch_id = batch.id


def _stop_fact_records(row: InvoiceRow, report: ImportReport) -> list[StopFactRecord]:
    """The audit lines of the stop facts a row brought in, naming the file and row."""
    facts: list[tuple[str | None, str, object]] = [
        (None, "lawsuit_served", row.customer.lawsuit_served_on),
        (None, "insolvency_opened", row.customer.insolvency_opened_on),
        (row.invoice_number, "payment_form", row.stop_facts.payment_form),
        (row.invoice_number, "sii_received", row.stop_facts.sii_received_on),
        (row.invoice_number, "ceded", row.stop_facts.ceded_on),
    ]
    source = f"import {Path(report.file).name} row {row.row}"
    return [
        StopFactRecord(
            tenant=report.tenant,
            customer_id=row.customer_id,
            invoice_number=invoice_number,
            fact=fact,
            value=str(value)
            + (
                f" to {row.stop_facts.ceded_to}"
                if fact == "ceded" and row.stop_facts.ceded_to
                else ""
            ),
            source=source,
            recorded_by=f"mapping {report.mapping}",
            reason="stated in the imported file",
        )
        for invoice_number, fact, value in facts
        if value is not None
    ]


# --- the entry points ---


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise PortfolioFileError(
            str(path),
            None,
            "(file)",
            f"cannot be read: {error.strerror}",
            "check the path and the file's permissions",
        ) from None


def _import_into(
    session: Session,
    content: bytes,
    mapping: ImportMapping,
    book: PolicyBook,
    report: ImportReport,
    *,
    accept_valid: bool,
    progress: ProgressCallback | None,
) -> None:
    digest = hashlib.sha256(content).hexdigest()
    earlier = session.exec(
        select(ImportBatch).where(
            ImportBatch.tenant == report.tenant,
            ImportBatch.content_sha256 == digest,
            ImportBatch.mapping == mapping.name,
        )
    ).first()
    if earlier is not None:
        report.repeat_of_batch = earlier.id
        return
    records = read_records(content, mapping, report.file)
    report.total_rows = len(records)
    valid = check_rows(records, mapping, report, progress)
    fresh = sort_out_stored(session, report.tenant, valid, report, mapping)
    if report.rejected and not accept_valid:
        report.held_back = [row.invoice_number for row in fresh]
        return
    if fresh or not report.rejected:
        write_batch(
            session,
            digest=digest,
            rows=fresh,
            mapping=mapping,
            book=book,
            report=report,
        )


def _log_outcome(report: ImportReport) -> None:
    logger.info(
        "import of %s under %s: batch %s, %d accepted, %d already in, %d rows rejected",
        Path(report.file).name,
        report.mapping,
        report.batch_id or report.repeat_of_batch,
        len(report.accepted),
        len(report.already_imported),
        len(report.rejected_rows),
    )


def import_portfolio(
    path: Path,
    mapping_name: str,
    *,
    database_url: str,
    tenant: str,
    policies_dir: Path,
    accept_valid: bool = False,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import a portfolio CSV under the mapping ``policies/mappings/NAME.yaml``.

    A file with any rejected row writes nothing unless ``accept_valid``; then only its
    valid rows are written. Stored invoices are never changed, and the same file
    imported again under the same mapping and tenant is recognised and does nothing.
    """
    mapping = load_mapping(policies_dir, mapping_name)
    book = load_policy_book(policies_dir)
    report = ImportReport(file=str(path), mapping=mapping.name, tenant=tenant)
    content = _read_bytes(Path(path))
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            _import_into(
                session,
                content,
                mapping,
                book,
                report,
                accept_valid=accept_valid,
                progress=progress,
            )
    except IntegrityError:
        raise PortfolioFileError(
            str(path),
            None,
            "(store)",
            "another import stored some of these rows meanwhile",
            "import the file again: rows stored by then will show as already imported",
        ) from None
    finally:
        engine.dispose()
    _log_outcome(report)
    return report


def open_invoices_to_start(
    database_url: str, tenant: str, invoice_numbers: Sequence[str]
) -> list[OpenInvoice]:
    """The open invoices among these numbers, with what their cases need, in order."""
    found: dict[str, OpenInvoice] = {}
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            for chunk in _chunks(list(invoice_numbers)):
                statement = (
                    select(Invoice, Customer)
                    .join(
                        Customer,
                        and_(
                            col(Customer.tenant) == col(Invoice.tenant),
                            col(Customer.customer_id) == col(Invoice.customer_id),
                        ),
                    )
                    .where(
                        Invoice.tenant == tenant,
                        col(Invoice.invoice_number).in_(chunk),
                        Invoice.status == InvoiceStatus.OPEN,
                        col(Invoice.due_date).is_not(None),
                    )
                )
                for invoice, customer in session.exec(statement):
                    if invoice.due_date is not None:
                        found[invoice.invoice_number] = _open_invoice(
                            invoice, invoice.due_date, customer
                        )
    finally:
        engine.dispose()
    return [found[number] for number in invoice_numbers if number in found]


def _open_invoice(invoice: Invoice, due_date: date, customer: Customer) -> OpenInvoice:
    return OpenInvoice(
        tenant=invoice.tenant,
        invoice_number=invoice.invoice_number,
        customer_id=invoice.customer_id,
        issue_date=invoice.issue_date,
        due_date=due_date,
        amount_minor=invoice.amount_minor,
        currency=invoice.currency,
        time_zone=customer.time_zone,
        segment=invoice.segment,
        policy_name=invoice.policy_name,
        policy_version=invoice.policy_version,
    )
