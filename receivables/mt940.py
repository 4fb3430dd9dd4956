"""SWIFT MT940 customer statements (ING, Rabobank, SNS and kin) read into bank movements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from receivables.bank_movements import (
    INCOMPLETE_HINT,
    BankMovement,
    Direction,
    FallbackIds,
    StatementError,
    check_balance,
    minor_units_at,
    on_account,
    with_distinct_ids,
)

_HINT = "download the statement again from the bank, as MT940"
_TAG = re.compile(r"^:([0-9]{2}[A-Z]?):(.*)$")
# :61: value date, entry date (MMDD, optional), mark (C, D, RC, RD), funds code letter,
# amount with a decimal comma, transaction type, the account owner's reference, and the
# bank's own after //.
_STATEMENT_LINE = re.compile(
    r"(?P<value>[0-9]{6})(?P<entry>[0-9]{4})?(?P<mark>R?[CD])[A-Z]?"
    r"(?P<amount>[0-9]+,[0-9]*)(?P<type>[NFS][A-Z0-9]{3})"
    r"(?P<customer>(?:(?!//).)*)(?://(?P<bank>.*))?"
)
_BALANCE = re.compile(
    r"(?P<mark>[CD])[0-9]{6}(?P<currency>[A-Z]{3})(?P<amount>[0-9]+,[0-9]*)"
)
# The subfields banks write into :86: as /CODE/value (ING, Rabobank, ABN AMRO).
_CODES = (
    "EREF|CNTP|REMI|RTRN|MARF|CSID|PREF|ORDP|BENM|NAME|ADDR|ISDT|IBAN|BIC|TRCD|PURP|"
    "ULTC|ULTD|SVCL|BUSP|CDTRREF|CDTRREFTP|EXCH|CHGS|SUM|ID"
)
_SUBFIELD = re.compile(rf"/({_CODES})/")
NO_REFERENCE = "NONREF"
END_OF_MESSAGE = "-"  # stands for the line that ends a message: - alone, or -}


def read_mt940(path: Path, text: str) -> list[BankMovement]:
    """Each :61: line of each statement in the file, its :86: text beside it."""
    movements: list[BankMovement] = []
    ids = FallbackIds()
    account, currency = "", ""
    statement = _Statement()
    pending: tuple[int, list[str]] | None = None  # a :61: waiting for its :86:
    for number, tag, lines in _fields(text):
        if pending is not None:
            information = lines if tag == "86" else []
            movement = _movement(
                path, pending, information, account, currency, ids, movements
            )
            movements.append(movement)
            statement.add(movement)
            pending = None
        if tag == "20":
            statement.require_closed(path)
            statement = _Statement(reference="".join(lines).strip())
        elif tag == "25":
            account = "".join(lines).split()[0] if "".join(lines).split() else ""
            account = (
                re.sub(r"[A-Z]{3}$", "", account) if len(account) > 18 else account
            )
        elif tag == "28C":
            statement.sequence = "".join(lines).strip()
        elif tag in ("60F", "60M"):
            currency, statement.opening = _balance(path, number, lines, currency)
        elif tag in ("62F", "62M"):
            _, closing = _balance(path, number, lines, currency)
            statement.close(path, currency, closing)
        elif tag == "61":
            pending = (number, lines)
        elif tag == END_OF_MESSAGE:
            statement.ended = True
    if pending is not None:
        movements.append(
            _movement(path, pending, [], account, currency, ids, movements)
        )
    statement.require_closed(path)
    return with_distinct_ids(movements)


@dataclass
class _Statement:
    """The statement being read: its name, opening balance, and what moved so far."""

    reference: str = ""  # the :20: the bank gave the statement
    sequence: str = ""  # its :28C: number and page
    opening: int | None = None
    moved: int = 0
    closed: bool = False
    ended: bool = False  # the bank closed the message, with or without a balance

    def add(self, movement: BankMovement) -> None:
        signed = movement.amount_minor
        self.moved += signed if movement.direction is Direction.CREDIT else -signed

    def close(self, path: Path, currency: str, closing: int) -> None:
        opening = self.opening if self.opening is not None else closing - self.moved
        check_balance(path, self.name, currency, opening, self.moved, closing)
        self.closed = True

    def require_closed(self, path: Path) -> None:
        # A statement without :62F: is accepted only where the message's end marker
        # shows the bank sent all of it: SNS leaves the last day's balance out so.
        if self.reference and not self.closed and not self.ended:
            raise StatementError(
                path, self.name, "has no closing balance (:62F:)", INCOMPLETE_HINT
            )

    @property
    def name(self) -> str:
        return " ".join(("statement", self.reference, self.sequence)).strip()


def _balance(
    path: Path, number: int, lines: list[str], currency: str
) -> tuple[str, int]:
    """The currency and signed amount of a :60F:, :62F: or their intermediate kin."""
    text = "".join(lines).strip()
    where = f"line {number}"
    found = _BALANCE.match(text)
    if found is None:
        raise StatementError(path, where, f"{text!r} is no balance", _HINT)
    amount = minor_units_at(
        path, where, found.group("amount").replace(",", "."), found["currency"], _HINT
    )
    if amount is None:
        raise StatementError(path, where, f"{text!r} is no balance", _HINT)
    return found.group("currency"), -amount if found.group("mark") == "D" else amount


def _fields(text: str) -> list[tuple[int, str, list[str]]]:
    """Each tagged field, with the file line it starts on and all of its lines."""
    fields: list[tuple[int, str, list[str]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        # The SWIFT envelope ({1:...}{2:...}{4:) and its end (-}) hold no movement.
        line = re.sub(r"^(\{[0-9]:[^{}]*\}?)+", "", line)
        if line.startswith("-}") or line.strip() == "-":
            fields.append((number, END_OF_MESSAGE, []))
            continue
        if line.strip() == ":940:":
            continue
        tagged = _TAG.match(line)
        if tagged:
            fields.append((number, tagged.group(1), [tagged.group(2)]))
        elif fields:
            fields[-1][2].append(line)
    return fields


def _movement(
    path: Path,
    statement_line: tuple[int, list[str]],
    information: list[str],
    account: str,
    currency: str,
    ids: FallbackIds,
    earlier: list[BankMovement],
) -> BankMovement:
    number, lines = statement_line
    where = f"line {number}, field :61:"
    first_line, supplementary = _split_statement_line(lines)
    found = _STATEMENT_LINE.match(first_line)
    if found is None:
        raise StatementError(
            path, where, f"{lines[0]!r} is not a statement line", _HINT
        )
    if not currency:
        raise StatementError(path, where, "comes before any :60F: balance", _HINT)
    value_date = _date(path, where, found.group("value"))
    booking_date = _booking_date(path, where, value_date, found.group("entry"))
    amount = minor_units_at(
        path, where, found.group("amount").replace(",", "."), currency, _HINT
    )
    if amount is None:
        raise StatementError(
            path, where, f"{found.group('amount')!r} is no amount", _HINT
        )
    mark = found.group("mark")
    # RC reverses a credit, so takes the money out again; RD gives back a debit.
    credit = mark in ("C", "RD")
    direction = Direction.CREDIT if credit else Direction.DEBIT
    text = _joined(information)
    subfields = _subfields(text)
    payer_name = _payer_name(subfields, supplementary)
    remittance = _remittance(text, subfields)
    reference = (found.group("bank") or "").strip()
    if not reference or reference.upper() == NO_REFERENCE:
        signed = amount if direction is Direction.CREDIT else -amount
        reference = ids.next_id(
            account, booking_date, signed, currency, f"{payer_name} {remittance}"
        )
    return BankMovement(
        line=len(earlier) + 1,
        place=f"line {number}",
        transaction_id=on_account(account, reference),
        account=account,
        booking_date=booking_date,
        value_date=value_date,
        amount_minor=amount,
        currency=currency,
        direction=direction,
        # RC/RD reverse an earlier credit or debit; /RTRN/ names a returned payment.
        returned=mark.startswith("R") or "RTRN" in subfields,
        payer_name=payer_name,
        remittance=remittance,
    )


def _split_statement_line(lines: list[str]) -> tuple[str, str]:
    """The :61: line with a reference the bank wrapped onto the next lines; then the rest.

    The supplementary details on the lines after it start with / (ING's /TRCD/) or hold
    words (SNS and Rabobank give the counterparty there), so a short line of bare
    characters after a // reference is the rest of that reference.
    """
    first, rest = lines[0], lines[1:]
    while "//" in first and rest:
        line = rest[0].strip()
        if not line or line.startswith("/") or " " in line:
            break
        first += line
        rest = rest[1:]
    return first, "".join(rest).strip()


def _joined(lines: list[str]) -> str:
    """The :86: text in one line: banks wrap it at a fixed width, even inside a word."""
    return re.sub(r"\s+", " ", "".join(lines)).strip()


def _subfields(text: str) -> dict[str, str]:
    """The /CODE/value subfields of a structured :86:; empty for free text."""
    if not text.startswith("/"):
        return {}
    parts = _SUBFIELD.split(text)
    # split gives the text before the first code, then code, value, code, value...
    return {
        code: value.strip("/ ")
        for code, value in zip(parts[1::2], parts[2::2], strict=True)
    }


def _payer_name(subfields: dict[str, str], supplementary: str) -> str:
    """The ordering party's name; SNS gives it in the :61: supplementary details."""
    if not subfields and not supplementary.startswith("/"):
        return supplementary
    if "NAME" in subfields:
        return subfields["NAME"]
    # /CNTP/account/BIC/name/city/
    counterparty = subfields.get("CNTP", "").split("/")
    return counterparty[2].strip() if len(counterparty) > 2 else ""


def _remittance(text: str, subfields: dict[str, str]) -> str:
    """What the payer wrote; the end-to-end reference too, which payers fill with a folio."""
    if not subfields:
        return text
    remitted = re.sub(r"^(USTD|STRD)/+(CUR/+)?", "", subfields.get("REMI", ""))
    return " ".join(part for part in (remitted, subfields.get("EREF", "")) if part)


def _date(path: Path, where: str, text: str) -> date:
    if not (len(text) == 6 and text.isdigit()):
        raise StatementError(path, where, f"{text!r} is not a date (YYMMDD)", _HINT)
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise StatementError(
            path, where, f"{text!r} (YYMMDD) is not a calendar date", _HINT
        ) from None


def _booking_date(path: Path, where: str, value_date: date, entry: str | None) -> date:
    """The entry date (MMDD) in the year that puts it nearest the value date."""
    if not entry:
        return value_date
    month, day = int(entry[:2]), int(entry[2:])
    try:
        candidates = [date(value_date.year + shift, month, day) for shift in (-1, 0, 1)]
    except ValueError:
        raise StatementError(
            path, where, f"entry date {entry!r} is not MMDD", _HINT
        ) from None
    return min(candidates, key=lambda day_: abs((day_ - value_date).days))
