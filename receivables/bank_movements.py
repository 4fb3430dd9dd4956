"""One line of a bank statement as reconciliation sees it, whatever the bank's format."""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from receivables.money import CURRENCY_EXPONENTS, MoneyError, check_storable

# Far above the largest amount accepted, which then says the limit; small enough for int().
_MOST_DIGITS = 40


class Direction(enum.StrEnum):
    """Money into the account (a credit) or out of it (a debit)."""

    CREDIT = "credit"
    DEBIT = "debit"


@dataclass(frozen=True)
class BankMovement:
    """A booked movement: when, how much, which way, who paid and what they wrote."""

    line: int  # the movement's number in the file, 1 for the first
    place: str  # where a person finds it in the file: "entry 3, detail 2", "row 29"
    transaction_id: str  # stable across re-runs of the same statement
    account: str
    booking_date: date
    value_date: date
    amount_minor: int  # always positive; direction says which way it went
    currency: str
    direction: Direction
    returned: bool = False  # a return or reversal of an earlier movement
    payer_name: str = ""
    payer_id: str = ""  # what the bank gives as the payer's tax id or account
    remittance: str = ""  # the text the payer wrote, as the bank passes it on


class StatementError(ValueError):
    """A statement that cannot be read: says the file, the entry and field, and what to do."""

    def __init__(self, path: Path, where: str, problem: str, hint: str) -> None:
        super().__init__(f"{path.name} {where}: {problem}; {hint}")


def statement_minor_units(text: str, currency: str) -> int | None:
    """A statement's decimal amount (``3483.00``) in minor units; None when it is not one.

    Raises MoneyError for an amount above the largest the store accepts.

    A bank books currencies the store may never invoice in (CHF, GBP): those take the
    two decimals ISO 4217 gives most currencies, and then simply match no invoice.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    # Refused before scaling: 1E+999999999 overflows the decimal context, and int() of it
    # would build a billion-digit number.
    if value.adjusted() > _MOST_DIGITS:
        raise MoneyError(f"{text.strip()!r} has more digits than any amount accepted")
    scaled = value.scaleb(CURRENCY_EXPONENTS.get(currency, 2))
    if scaled != scaled.to_integral_value():
        return None
    return check_storable(int(scaled), currency)


def minor_units_at(
    path: Path, where: str, text: str, currency: str, hint: str
) -> int | None:
    """The statement amount in minor units, refused naming its place when too large."""
    try:
        return statement_minor_units(text, currency)
    except MoneyError as error:
        raise StatementError(path, where, str(error), hint) from None


def on_account(account: str, reference: str) -> str:
    """A transaction id unique across the tenant's accounts: two banks may reuse a reference."""
    return f"{account}:{reference}" if account else reference


def comparable_text(text: str) -> str:
    """The text without the case and spacing that one export of a statement changes."""
    return " ".join(text.casefold().split())


def fallback_transaction_id(
    account: str,
    booking_date: date,
    signed_minor: int,
    currency: str,
    text: str,
    repeat: int,
) -> str:
    """An id for a movement the bank gives no reference for, from the movement's own facts.

    Nothing about the rest of the file goes in: a day the bank sends again inside a longer
    statement, beside movements it did not hold before, gives each movement the id it had.
    The repeat counts only movements identical in all these facts, which no text tells
    apart; the text is compared without case or spacing, which exports change.
    """
    words = comparable_text(text)
    key = f"{account}|{booking_date.isoformat()}|{signed_minor}|{currency}|{words}|{repeat}"
    return "H" + hashlib.sha256(key.encode()).hexdigest()[:20].upper()


class FallbackIds:
    """Hands out fallback ids in file order, counting movements identical in every fact."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, date, int, str, str]] = Counter()

    def next_id(
        self,
        account: str,
        booking_date: date,
        signed_minor: int,
        currency: str,
        text: str,
    ) -> str:
        """The id of the next movement with these facts and this payer's text."""
        key = (account, booking_date, signed_minor, currency, comparable_text(text))
        self.seen[key] += 1
        return fallback_transaction_id(*key, self.seen[key])


def with_distinct_ids(movements: list[BankMovement]) -> list[BankMovement]:
    """The movements with a reference the file repeats suffixed /2, /3... in file order.

    Banks do reuse a reference inside one statement (two payments booked under one
    batch reference). The store keeps one row per id, so two movements sharing one would
    record the first and then fail on the second; the first keeps the bare reference,
    as it would in a file where it appears alone.
    """
    taken: set[str] = set()
    distinct = []
    for movement in movements:
        transaction_id, repeat = movement.transaction_id, 1
        while transaction_id in taken:
            repeat += 1
            transaction_id = f"{movement.transaction_id}/{repeat}"
        taken.add(transaction_id)
        distinct.append(replace(movement, transaction_id=transaction_id))
    return distinct


INCOMPLETE_HINT = (
    "the file is cut short or altered; download the complete statement again"
)


def check_balance(
    path: Path, where: str, currency: str, opening: int, moved: int, closing: int
) -> None:
    """Refuse a statement whose opening balance plus its movements is not its closing one.

    A file cut short while downloading or copying still reads as movements; only the
    balances tell that some are missing, and a missing payment would stay unreconciled.
    """
    if opening + moved == closing:
        return
    sign = "-" if moved < 0 else "+"
    shown = [
        _major_units(amount, currency)
        for amount in (opening, abs(moved), opening + moved)
    ]
    raise StatementError(
        path,
        where,
        f"the opening balance plus the movements, {shown[0]} {sign} {shown[1]} is "
        f"{shown[2]}, not the closing {_major_units(closing, currency)} {currency}",
        INCOMPLETE_HINT,
    )


def _major_units(minor: int, currency: str) -> str:
    return str(Decimal(minor).scaleb(-CURRENCY_EXPONENTS.get(currency, 2)))
