"""Money in integer minor units: exact parsing, refusals, arithmetic and display."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receivables.money import (
    CURRENCY_EXPONENTS,
    Money,
    MoneyError,
    format_money,
    parse_minor_units,
)


@pytest.mark.parametrize(
    ("text", "currency", "minor_units"),
    [
        ("55.94", "USD", 5594),
        ("55.9", "USD", 5590),
        ("900000", "CLP", 900_000),
        ("5000000000", "CLP", 5_000_000_000),
        ("1234.5678", "CLF", 12_345_678),
        ("0.0001", "CLF", 1),
        (" 1_000.50 ", "EUR", 100_050),
        ("-250", "CLP", -250),
    ],
)
def test_an_amount_is_read_exactly_into_minor_units(
    text: str, currency: str, minor_units: int
) -> None:
    assert parse_minor_units(text, currency) == minor_units


@pytest.mark.parametrize(
    ("text", "currency"),
    [("55.945", "USD"), ("1.5", "CLP"), ("0.00001", "CLF")],
)
def test_more_decimals_than_the_currency_has_are_refused(
    text: str, currency: str
) -> None:
    with pytest.raises(MoneyError, match=f"more decimals than {currency} allows"):
        parse_minor_units(text, currency)


# Exponents are refused on purpose: spreadsheets show a rounded amount as 1.23457E+11,
# and an operator typing 1e3 for a payment is better asked to write 1000.
@pytest.mark.parametrize(
    "text",
    ["1e3", "1.23457E+11", "NaN", "Infinity", "1,000.00", "55,94", "١٢٣", "12 000"],
)
def test_anything_but_plain_digits_is_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="plain digits"):
        parse_minor_units(text, "USD")


def test_an_empty_amount_is_refused() -> None:
    with pytest.raises(MoneyError, match="empty"):
        parse_minor_units("  ", "CLP")


def test_an_unknown_currency_is_refused_with_the_known_ones() -> None:
    with pytest.raises(MoneyError, match="unknown currency 'ARS'; use one of CLF, CLP"):
        parse_minor_units("10", "ARS")


@given(
    minor_units=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_an_amount_written_in_major_units_reads_back_to_the_same_minor_units(
    minor_units: int, currency: str
) -> None:
    written = f"{Money(minor_units, currency).to_decimal():f}"

    assert parse_minor_units(written, currency) == minor_units


@pytest.mark.parametrize(
    ("minor_units", "currency", "language", "shown"),
    [
        (900_000, "CLP", "es-CL", "$900.000"),
        (5_000_000_000, "CLP", "es-CL", "$5.000.000.000"),
        (123_456, "USD", "en", "USD 1,234.56"),
        (5_594, "USD", "es-CL", "USD 55,94"),
        (12_345_678, "CLF", "es-CL", "CLF 1.234,5678"),
        (12_345_678, "CLF", "en", "CLF 1,234.5678"),
        (1, "CLF", "en", "CLF 0.0001"),
    ],
)
def test_amounts_are_shown_the_way_the_debtor_reads_them(
    minor_units: int, currency: str, language: str, shown: str
) -> None:
    assert format_money(minor_units, currency, language) == shown


def test_money_adds_and_subtracts_within_one_currency() -> None:
    total = Money(100_000, "CLP") + Money(19_000, "CLP") - Money(9_000, "CLP")

    assert total == Money(110_000, "CLP")


def test_money_of_two_currencies_never_mixes() -> None:
    with pytest.raises(MoneyError, match="cannot mix CLP and USD"):
        Money(100, "CLP") + Money(100, "USD")
