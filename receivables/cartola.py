"""A Banco de Chile cartola (account statement), as XLSX or CSV, read into bank movements.

The bank's site serves the .xlsx under a .xls name; it is read with the standard library
(a zip of XML sheets). The movements table starts at the row headed Fecha, Descripción,
Canal o Sucursal, Cargos (CLP), Abonos (CLP), Saldo (CLP): a cargo is a debit, an abono
a credit. The cartola gives no transaction reference, so each movement's id is derived
from its day, amount and description, and its order among movements equal in all three.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

from receivables.bank_movements import (
    INCOMPLETE_HINT,
    BankMovement,
    Direction,
    FallbackIds,
    StatementError,
    minor_units_at,
    with_distinct_ids,
)

_HINT = "download the cartola again from the bank's site, as .xlsx or CSV"
_SHEET = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATIONSHIP = (
    "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
)
_CELL_COLUMN = re.compile(r"[A-Z]+")
_CURRENCY_IN_HEADER = re.compile(r"\(([A-Z]{3})\)")
_DAY_FIRST = re.compile(r"([0-9]{1,2})[/-]([0-9]{1,2})[/-]([0-9]{4})")
# How a cartola's description names who sent a transfer in.
_SENDER = re.compile(
    r"^(?:traspaso|transferencia|transf\.?)\s+de\s*:?\s*", re.IGNORECASE
)
_EXCEL_EPOCH = date(1899, 12, 30)
# The totals the .xlsx states above the movements, by the direction each adds up.
_TOTALS = {"total cargos": Direction.DEBIT, "total abonos": Direction.CREDIT}
COLUMNS = {
    "date": "fecha",
    "description": "descripción",
    "debit": "cargos",
    "credit": "abonos",
}


def looks_like_cartola_csv(text: str) -> bool:
    """True for a CSV whose first line is the cartola's movements header."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].lower()
    return "fecha" in first and "abonos" in first and "cargos" in first


def read_cartola_xlsx(path: Path, data: bytes) -> list[BankMovement]:
    """The movements of the first sheet of a cartola saved as .xlsx."""
    try:
        rows = list(_xlsx_rows(data))
    except (zipfile.BadZipFile, KeyError, ET.ParseError):
        raise StatementError(
            path, "workbook", "is not a readable .xlsx workbook", _HINT
        ) from None
    account = ""
    for _, cells in rows:
        label = (cells[0] if cells else "").strip().lower()
        if label == "cuenta:" and len(cells) > 1:
            account = cells[1].strip()
    movements = _movements(path, rows, account)
    _check_totals(path, rows, movements)
    return movements


def read_cartola_csv(path: Path, text: str) -> list[BankMovement]:
    """The movements of a cartola's table saved as CSV (comma or semicolon separated)."""
    text = text.lstrip("\ufeff")
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    table = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [(number, cells) for number, cells in enumerate(table, start=1)]
    return _movements(path, rows, "")


def _movements(
    path: Path, rows: list[tuple[int, list[str]]], account: str
) -> list[BankMovement]:
    header_at, columns, currency = _header(path, rows)
    movements: list[BankMovement] = []
    ids = FallbackIds()
    for number, cells in rows[header_at + 1 :]:
        if not any(cell.strip() for cell in cells):
            if movements:
                break  # the table ends at its first blank row
            continue
        movement = _movement(path, number, cells, columns, currency, account, ids)
        movements.append(replace(movement, line=len(movements) + 1))
    return with_distinct_ids(movements)


def _check_totals(
    path: Path, rows: list[tuple[int, list[str]]], movements: list[BankMovement]
) -> None:
    """Refuse a workbook whose movements do not add up to the totals it states above them.

    The bank's .xlsx heads the table with Total Cargos and Total Abonos: rows lost when
    the file was cut short or edited show there. The CSV carries no totals nor opening
    balance, so a CSV cut short cannot be told from a complete one.
    """
    for (_, titles), (number, values) in pairwise(rows):
        for title, value in zip(titles, values, strict=False):
            direction = _TOTALS.get(title.strip().lower())
            if direction is None or not movements:
                continue
            where = f"row {number}, {title.strip()}"
            stated = _minor_units(path, where, value.strip(), movements[0].currency)
            added = sum(m.amount_minor for m in movements if m.direction is direction)
            if stated != added:
                raise StatementError(
                    path,
                    where,
                    f"is {value.strip()!r}, but the movements below add up to {added}",
                    INCOMPLETE_HINT,
                )


def _header(
    path: Path, rows: list[tuple[int, list[str]]]
) -> tuple[int, dict[str, int], str]:
    """Where the movements table starts, each column's position, and the currency."""
    for at, (_, cells) in enumerate(rows):
        titles = [cell.strip().lower() for cell in cells]
        positions = {
            name: next((i for i, t in enumerate(titles) if t.startswith(word)), -1)
            for name, word in COLUMNS.items()
        }
        if min(positions.values()) >= 0:
            shown = _CURRENCY_IN_HEADER.search(cells[positions["credit"]])
            return at, positions, shown.group(1) if shown else "CLP"
    raise StatementError(
        path,
        "header",
        "has no row headed Fecha, Descripción, Cargos and Abonos",
        _HINT,
    )


def _movement(
    path: Path,
    number: int,
    cells: list[str],
    columns: dict[str, int],
    currency: str,
    account: str,
    ids: FallbackIds,
) -> BankMovement:
    def cell(name: str) -> str:
        position = columns[name]
        return cells[position].strip() if position < len(cells) else ""

    where = f"row {number}"
    booked = _day(path, f"{where}, column Fecha", cell("date"))
    debit, credit = cell("debit"), cell("credit")
    if bool(debit) == bool(credit):
        raise StatementError(
            path,
            f"{where}, columns Cargos and Abonos",
            f"hold {debit!r} and {credit!r}; a movement is one or the other",
            _HINT,
        )
    direction = Direction.CREDIT if credit else Direction.DEBIT
    column = "Abonos" if credit else "Cargos"
    amount = _amount(path, f"{where}, column {column}", credit or debit, currency)
    description = cell("description")
    signed = amount if direction is Direction.CREDIT else -amount
    # The account stays out of the id: the CSV the bank exports carries none, and the
    # same cartola saved as .xlsx and as CSV must give the same ids, or a movement read
    # from both would be paid twice. Limit: one tenant's cartolas of two accounts with a
    # movement of the same day, amount and description give both one id, so the second is
    # taken for one already read; an account column in the CSV would lift this.
    return BankMovement(
        line=0,
        place=where,
        transaction_id=ids.next_id("", booked, signed, currency, description),
        account=account,
        booking_date=booked,
        value_date=booked,
        amount_minor=amount,
        currency=currency,
        direction=direction,
        # An abono's description is, more often than not, who sent it.
        payer_name=_SENDER.sub("", description) if credit else "",
        remittance=description,
    )


def _day(path: Path, where: str, text: str) -> date:
    found = _DAY_FIRST.fullmatch(text)
    if found:
        day, month, year = (int(part) for part in found.groups())
        try:
            return date(year, month, day)
        except ValueError:
            raise StatementError(
                path,
                where,
                f"{text!r} is not a calendar date",
                "check the day and the month against the bank's statement",
            ) from None
    try:
        # A spreadsheet that took the day for a date stores its serial number.
        return _EXCEL_EPOCH + timedelta(days=int(float(text)))
    except (ValueError, OverflowError):
        raise StatementError(
            path, where, f"{text!r} is not a date", "write it as DD/MM/YYYY"
        ) from None


def _amount(path: Path, where: str, text: str, currency: str) -> int:
    amount = _minor_units(path, where, text, currency)
    if amount is None or amount == 0:
        raise StatementError(
            path, where, f"{text!r} is not an amount in {currency}", _HINT
        )
    return amount


def _minor_units(path: Path, where: str, text: str, currency: str) -> int | None:
    # Pesos have no decimals, and the bank groups thousands with dots: 1.302.300.
    plain = text.replace(".", "") if currency == "CLP" else text.replace(",", ".")
    return minor_units_at(path, where, plain, currency, _HINT)


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    """Each row of the workbook's first sheet as text cells, numbered as the sheet shows."""
    with zipfile.ZipFile(io.BytesIO(data)) as workbook:
        shared = _shared_strings(workbook)
        sheet = ET.fromstring(workbook.read(_first_sheet(workbook)))
    for row in sheet.iter(f"{_SHEET}row"):
        cells: dict[int, str] = {}
        for cell in row.iter(f"{_SHEET}c"):
            letters = _CELL_COLUMN.match(cell.get("r", ""))
            position = _column_index(letters.group(0)) if letters else len(cells)
            cells[position] = _cell_text(cell, shared)
        width = max(cells, default=-1) + 1
        # Column A is empty in the bank's layout; cells keep their places from B on.
        yield int(row.get("r", "0")), [cells.get(i, "") for i in range(1, width)]


def _first_sheet(workbook: zipfile.ZipFile) -> str:
    book = ET.fromstring(workbook.read("xl/workbook.xml"))
    first = book.find(f"{_SHEET}sheets/{_SHEET}sheet")
    relations = ET.fromstring(workbook.read("xl/_rels/workbook.xml.rels"))
    for relation in relations:
        if first is not None and relation.get("Id") == first.get(_RELATIONSHIP):
            return "xl/" + relation.get("Target", "").removeprefix("/xl/")
    return "xl/worksheets/sheet1.xml"


def _shared_strings(workbook: zipfile.ZipFile) -> list[str]:
    if "xl/sharedStrings.xml" not in workbook.namelist():
        return []
    table = ET.fromstring(workbook.read("xl/sharedStrings.xml"))
    return ["".join(t.text or "" for t in item.iter(f"{_SHEET}t")) for item in table]


def _cell_text(cell: ET.Element, shared: list[str]) -> str:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{_SHEET}t"))
    value = cell.find(f"{_SHEET}v")
    text = value.text or "" if value is not None else ""
    if kind == "s" and text:
        return shared[int(text)]
    if kind == "n" and text.endswith(".0"):
        return text[:-2]  # a whole number the sheet stored as a float
    return text


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1
