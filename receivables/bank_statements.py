"""A bank statement file in any format reconcile reads, recognised by its content."""

from __future__ import annotations

import enum
from pathlib import Path

from receivables.bank_movements import BankMovement, StatementError
from receivables.camt053 import read_camt053
from receivables.cartola import (
    looks_like_cartola_csv,
    read_cartola_csv,
    read_cartola_xlsx,
)
from receivables.mt940 import read_mt940

_ZIP = b"PK\x03\x04"
# A byte-order mark: spreadsheets "save as Unicode text" write UTF-16 with one.
_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")
# The compound-file header of Excel 97-2003 workbooks (.xls), which only Excel reads well.
_LEGACY_EXCEL = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SAVE_AS = (
    "save it from the bank's site (or from a spreadsheet) as .xlsx or CSV, or ask the "
    "bank for camt.053 or MT940, and run reconcile on that file"
)


class StatementFormat(enum.StrEnum):
    """The statement formats reconcile reads."""

    CAMT053 = "camt053"
    MT940 = "mt940"
    CARTOLA = "cartola"


def read_bank_statement(
    path: Path, statement_format: StatementFormat | None = None
) -> list[BankMovement]:
    """Every movement of the file, in file order; the format is sniffed unless given."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StatementError(
            path, "file", "does not exist", "check the path and the file's name"
        ) from None
    except OSError as error:
        raise StatementError(
            path, "file", f"cannot be read ({error.strerror})", _SAVE_AS
        ) from None
    if data.startswith(_LEGACY_EXCEL):
        raise StatementError(
            path, "file", "is a legacy binary Excel workbook (.xls)", _SAVE_AS
        )
    data = _as_utf8(path, data)
    found = sniff_format(path, data, statement_format)
    if found is StatementFormat.CARTOLA and data.startswith(_ZIP):
        return read_cartola_xlsx(path, data)
    if found is StatementFormat.CAMT053:
        return read_camt053(path, data)
    text = _text(path, data)
    if found is StatementFormat.MT940:
        return read_mt940(path, text)
    return read_cartola_csv(path, text)


def sniff_format(
    path: Path, data: bytes, named: StatementFormat | None = None
) -> StatementFormat:
    """The format the content shows, or an error saying which formats are read.

    A format named with ``--format`` is taken when the content shows none (the file is
    then read as that format, and its own errors tell what is wrong); when the content
    shows another one, the name is refused rather than a statement misread.
    """
    shown = _shown_format(data)
    if named is not None and shown is not None and shown is not named:
        raise StatementError(
            path,
            "file",
            f"reads as {shown}, not as {named}",
            "leave --format out so that the file's content decides",
        )
    if shown is not None:
        return shown
    if named is not None:
        return named
    raise StatementError(
        path,
        "file",
        "is none of the formats reconcile reads (camt.053 XML, MT940, a Banco de Chile "
        "cartola as .xlsx or CSV)",
        f"{_SAVE_AS}; name the format with --format if the file is one of them",
    )


def _shown_format(data: bytes) -> StatementFormat | None:
    if data.startswith(_ZIP):
        return (
            StatementFormat.CARTOLA
        )  # the bank's .xlsx; other workbooks fail on reading
    head = data[:4096].decode("utf-8", errors="replace")
    if "<Document" in head and ("camt.053" in head or "BkToCstmrStmt" in head):
        return StatementFormat.CAMT053
    if ":20:" in head and (":60F:" in head or ":25:" in head):
        return StatementFormat.MT940
    if looks_like_cartola_csv(head):
        return StatementFormat.CARTOLA
    return None


def _as_utf8(path: Path, data: bytes) -> bytes:
    """UTF-16 text as UTF-8, so that every reader and the sniffing see one encoding."""
    if data.startswith(_UTF16_MARKS):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise StatementError(
                path, "file", "starts as UTF-16 text but is not", _SAVE_AS
            ) from None
    if b"\x00" in data[:512] and not data.startswith(_ZIP):
        # NUL bytes in text are UTF-16 (or UTF-32) without its mark, which nothing here reads.
        raise StatementError(
            path,
            "file",
            "is UTF-16 text without a byte-order mark",
            "save it again as CSV in UTF-8 (or Latin-1) and run reconcile on that file",
        )
    return data


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # MT940 is ASCII in the SWIFT network; banks that export it locally use Latin-1.
        return data.decode("latin-1")
