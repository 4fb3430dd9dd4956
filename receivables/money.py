"""Money as integer minor units with its currency: parsing, arithmetic and display."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

# ISO 4217 minor-unit exponents for the currencies a Chilean creditor meets. CLP has none:
# 900.000 CLP is 900000 minor units. CLF (Unidad de Fomento) is quoted with four decimals.
CURRENCY_EXPONENTS: dict[str, int] = {"CLP": 0, "CLF": 4, "USD": 2, "EUR": 2}
_PLAIN_AMOUNT = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


class MoneyError(ValueError):
    """An amount that cannot be read in its declared currency."""


def exponent_of(currency: str) -> int:
    """Return how many decimals the currency's minor unit has."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        known = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise MoneyError(f"unknown currency {currency!r}; use one of {known}") from None


def parse_minor_units(text: str, currency: str) -> int:
    """Read a decimal amount such as ``55.94`` into minor units, refusing lost precision."""
    cleaned = text.strip().replace("_", "")
    if not cleaned:
        raise MoneyError("amount is empty")
    # Plain ASCII digits only: Decimal would also take "1.2E+7", which spreadsheets show
    # for a rounded amount, as well as NaN and digits of other scripts.
    if not _PLAIN_AMOUNT.fullmatch(cleaned):
        raise MoneyError(
            f"{text!r} is not an amount written in plain digits, like 55.94 "
            "(a dot for decimals, no exponent)"
        )
    value = Decimal(cleaned)
    scaled = value.scaleb(exponent_of(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{text!r} has more decimals than {currency} allows ({exponent_of(currency)})"
        )
    return int(scaled)


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units together with its ISO currency code."""

    minor_units: int
    currency: str

    def __add__(self, other: Money) -> Money:
        self._check_same_currency(other)
        return Money(self.minor_units + other.minor_units, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check_same_currency(other)
        return Money(self.minor_units - other.minor_units, self.currency)

    def _check_same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot mix {self.currency} and {other.currency}")

    def to_decimal(self) -> Decimal:
        """Return the amount in major units, exactly."""
        return Decimal(self.minor_units).scaleb(-exponent_of(self.currency))


def format_money(minor_units: int, currency: str, language: str = "es-CL") -> str:
    """Show an amount the way a debtor reads it: ``$900.000`` in es-CL, ``USD 55.94`` in en."""
    amount = Money(minor_units, currency).to_decimal()
    decimals = exponent_of(currency)
    text = f"{amount:,.{decimals}f}"
    if language.startswith("es"):
        # Spanish groups thousands with dots and separates decimals with a comma.
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    if currency == "CLP":
        return f"${text}"
    return f"{currency} {text}"


def format_amount(minor_units: int, currency: str) -> str:
    """An amount for operators and the Temporal UI: ``900.000 CLP``, never a ``$`` sign.

    The Web UI renders details as Markdown, where a pair of dollar signs opens a formula.
    """
    number = format_money(minor_units, currency, "es-CL").removeprefix("$")
    return f"{number.removeprefix(currency + ' ')} {currency}"


# The store keeps minor units in a signed 64-bit column (up to about 9.2 * 10^18). Far
# below that, 10^15 minor units (a thousand billion pesos) is already no real invoice or
# payment; refusing above it catches extra digits before they reach the store.
MAX_MINOR_UNITS = 10**15
_ASCII_DIGITS = frozenset("0123456789")


def check_storable(minor_units: int, currency: str) -> int:
    """Return the amount, or raise when it is above the largest amount accepted."""
    if minor_units > MAX_MINOR_UNITS:
        amount = Money(minor_units, currency).to_decimal()
        raise _too_large(f"{amount:,f} {currency}", currency)
    return minor_units


def _too_large(shown: str, currency: str) -> MoneyError:
    largest = Money(MAX_MINOR_UNITS, currency).to_decimal()
    return MoneyError(
        f"{shown} is above the largest amount accepted ({largest:,f} {currency}); "
        "look for extra digits or a misplaced separator"
    )


def parse_operator_amount(text: str, currency: str) -> int:
    """Read an amount typed by an operator, like ``340.320`` CLP or ``1,234.56`` USD."""
    exponent = exponent_of(currency)
    body = text.strip()
    _check_operator_characters(body)
    if exponent == 0:
        whole, fraction = _whole_units_only(body, currency), ""
    else:
        whole, fraction = _units_and_decimals(body, currency, exponent)
    if len(whole.lstrip("0")) > len(str(MAX_MINOR_UNITS)):
        # Checked before int(), which refuses strings of thousands of digits.
        raise _too_large(f"an amount of {len(whole)} digits", currency)
    minor_units = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor_units == 0:
        raise MoneyError(f"{body!r}: an amount must be above zero")
    return check_storable(minor_units, currency)


def _check_operator_characters(body: str) -> None:
    if not body:
        raise MoneyError("the amount is empty; type it like 340320")
    if body.startswith("-"):
        raise MoneyError(f"{body!r}: an amount must be above zero")
    if any(char.isdigit() and char not in _ASCII_DIGITS for char in body):
        raise MoneyError(
            f"{body!r} has digits other than 0-9 (full-width or of another script); "
            "type the amount with the digits 0-9"
        )
    if not re.fullmatch(r"[0-9]+(?:[., ][0-9]+)*", body):
        raise MoneyError(
            f"{body!r} is not an amount: type digits only, with dots, commas or "
            "spaces between thousands, and no currency sign"
        )


def _grouped(body: str, separators: str) -> str | None:
    """The digits of ``body`` if grouped by thousands with one of ``separators``."""
    used = set(re.sub("[0-9]", "", body))
    if not used:
        return body
    separator = used.pop()
    if used or separator not in separators:
        return None
    grouping = rf"[1-9][0-9]{{0,2}}(?:{re.escape(separator)}[0-9]{{3}})+"
    return body.replace(separator, "") if re.fullmatch(grouping, body) else None


def _whole_units_only(body: str, currency: str) -> str:
    # Without a minor unit every dot, comma or space can only separate thousands, as
    # Chilean operators write pesos: 340.320, 340,320 and 340 320 are all 340320.
    digits = _grouped(body, "., ")
    if digits is not None:
        return digits
    if re.fullmatch(r"[0-9]+[.,][0-9]{1,2}", body) or _grouped_with_decimals(body):
        raise MoneyError(
            f"{body!r}: {currency} has no decimals; type whole units, like 340320"
        )
    raise MoneyError(
        f"{body!r} is not grouped by thousands; type digits only, like 340320, or "
        "group them in threes, like 340.320"
    )


def _grouped_with_decimals(body: str) -> bool:
    """True for thousands grouped one way and one or two decimals after the other mark."""
    # 1.000.000,00 or 1,000,000.00: the grouping is right, the decimals are what is wrong.
    for thousands, decimal in ((".", ","), (" ", ","), (",", "."), (" ", ".")):
        whole, mark, fraction = body.rpartition(decimal)
        if (
            mark
            and re.fullmatch(r"[0-9]{1,2}", fraction)
            and _grouped(whole, thousands)
        ):
            return True
    return False


def _units_and_decimals(body: str, currency: str, exponent: int) -> tuple[str, str]:
    # One convention only: the dot marks decimals, commas or spaces group thousands.
    # Also taking 1.234,56 would give 1,234 two readings (1234 or 1.234), so a comma
    # used for decimals is refused rather than guessed.
    example = "1,234.56" if exponent <= 2 else f"1234.{'5678'[:exponent]}"
    if re.search(r"\.[0-9]*,|^[0-9]+,[0-9]{1,2}$", body):
        raise MoneyError(
            f"{body!r} uses a comma for decimals; {currency} amounts take a dot for "
            f"decimals, like {example}"
        )
    whole, _, fraction = body.partition(".")
    # Above two decimals (CLF) a comma or a dot before three digits is as often a
    # Chilean decimal as a thousands mark, so only plain digits are taken before a dot.
    digits = _grouped(whole, ", ") if exponent <= 2 else _grouped(whole, "")
    if digits is None or "." in fraction:
        raise MoneyError(
            f"{body!r} is not written like {example}: a dot for decimals"
            + (", commas or spaces between thousands" if exponent <= 2 else "")
        )
    if len(fraction) > exponent:
        thousands = _grouped(body, ".")
        raise MoneyError(
            f"{body!r}: {currency} has {exponent} decimals"
            + (
                f"; if the dot separates thousands, type {thousands}"
                if thousands
                else ""
            )
        )
    if exponent > 2 and len(fraction) == 3 and _grouped(body, ".") is not None:
        raise MoneyError(
            f"{body!r} could be {whole}{fraction} or {whole}.{fraction} {currency}; "
            f"type {whole}{fraction} or {whole}.{fraction}0"
        )
    return digits, fraction
