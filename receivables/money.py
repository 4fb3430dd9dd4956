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
