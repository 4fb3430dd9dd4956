"""Money in integer minor units: exact parsing, refusals, arithmetic and display."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receivables.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR_UNITS,
    Money,
    MoneyError,
    format_money,
    parse_minor_units,
    parse_operator_amount,
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


# --- amounts typed by an operator ---


@pytest.mark.parametrize(
    ("text", "minor_units"),
    [
        ("340320", 340_320),
        ("340.320", 340_320),
        ("340,320", 340_320),
        ("340 320", 340_320),
        (" 1.234.567 ", 1_234_567),
    ],
)
def test_operator_pesos_take_dots_commas_or_spaces_between_thousands(
    text: str, minor_units: int
) -> None:
    assert parse_operator_amount(text, "CLP") == minor_units


@pytest.mark.parametrize("text", ["340.32", "340,3", "1,5", "3403.20"])
def test_operator_pesos_with_decimals_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="CLP has no decimals; type whole units"):
        parse_operator_amount(text, "CLP")


@pytest.mark.parametrize(
    "text", ["1.000.000,00", "1,000,000.00", "3.138.820,5", "1 000 000,00"]
)
def test_grouped_pesos_with_decimals_are_refused_for_the_decimals(text: str) -> None:
    with pytest.raises(MoneyError, match="CLP has no decimals; type whole units"):
        parse_operator_amount(text, "CLP")


@pytest.mark.parametrize("text", ["34.03.20", "340.320,000", "0.500", "1.2345"])
def test_operator_pesos_not_grouped_in_threes_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="not grouped by thousands"):
        parse_operator_amount(text, "CLP")


@pytest.mark.parametrize(
    ("text", "currency", "minor_units"),
    [
        ("1234.56", "USD", 123_456),
        ("1,234.56", "USD", 123_456),
        ("1 234.56", "EUR", 123_456),
        ("1,234", "USD", 123_400),
        ("0.5", "USD", 50),
        ("12.3456", "CLF", 123_456),
        ("1234.567", "CLF", 12_345_670),
    ],
)
def test_operator_amounts_take_a_dot_for_decimals(
    text: str, currency: str, minor_units: int
) -> None:
    assert parse_operator_amount(text, currency) == minor_units


# The dot is the only decimal mark. Taking "1.234,56" too would leave "1,234" with two
# readings, 1234 or 1.234, and an operator no way to tell which one was stored.
@pytest.mark.parametrize("text", ["1.234,56", "1234,56", "1,5"])
def test_operator_amount_with_a_decimal_comma_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(MoneyError, match="uses a comma for decimals"):
        parse_operator_amount(text, "USD")


def test_operator_amount_with_dots_between_thousands_is_told_how_to_type_it() -> None:
    expected = "'1.234': USD has 2 decimals; if the dot separates thousands, type 1234"
    with pytest.raises(MoneyError, match=re.escape(expected)):
        parse_operator_amount("1.234", "USD")


# In Chile a UF amount is often written 1.234,5678: with four decimals, both a dot and a
# comma before three digits may be a thousands mark or a decimal one.
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.234", "could be 1234 or 1.234 CLF"),
        ("1,234", "is not written like 1234.5678"),
        ("1 234.5", "is not written like 1234.5678"),
    ],
)
def test_operator_uf_amounts_that_could_be_thousands_are_refused(
    text: str, reason: str
) -> None:
    with pytest.raises(MoneyError, match=re.escape(reason)):
        parse_operator_amount(text, "CLF")


@pytest.mark.parametrize(
    ("text", "currency"), [("0", "CLP"), ("0.00", "USD"), ("-5", "CLP"), ("-0", "USD")]
)
def test_operator_amount_must_be_above_zero(text: str, currency: str) -> None:
    with pytest.raises(MoneyError, match="an amount must be above zero"):
        parse_operator_amount(text, currency)


@pytest.mark.parametrize("text", ["３４０３２０", "١٢٣", "340.３20"])
def test_operator_amount_in_digits_other_than_0_to_9_is_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="digits other than 0-9"):
        parse_operator_amount(text, "CLP")


@pytest.mark.parametrize("text", ["$340.320", "1e3", "340.320 CLP", "1..5", ".5"])
def test_operator_amount_with_anything_but_digits_and_separators_is_refused(
    text: str,
) -> None:
    with pytest.raises(MoneyError, match="is not an amount: type digits only"):
        parse_operator_amount(text, "CLP")


def test_an_empty_operator_amount_is_refused() -> None:
    with pytest.raises(MoneyError, match="the amount is empty"):
        parse_operator_amount("  ", "USD")


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1.000.000.000.000.001", "CLP"),
        ("10000000000000.01", "USD"),
        ("9" * 5000, "CLP"),
    ],
)
def test_operator_amount_above_the_store_limit_is_refused(
    text: str, currency: str
) -> None:
    with pytest.raises(MoneyError, match="above the largest amount accepted"):
        parse_operator_amount(text, currency)


def test_the_store_limit_itself_is_accepted() -> None:
    assert parse_operator_amount("1.000.000.000.000.000", "CLP") == MAX_MINOR_UNITS


@given(
    minor_units=st.integers(min_value=1, max_value=MAX_MINOR_UNITS),
    currency=st.sampled_from(["USD", "EUR", "CLF"]),
)
def test_an_amount_shown_with_a_decimal_dot_reads_back_exactly(
    minor_units: int, currency: str
) -> None:
    amount = Money(minor_units, currency).to_decimal()
    # Thousands grouped by commas where the currency takes them, plain for CLF.
    shown = f"{amount:,f}" if currency != "CLF" else f"{amount:f}"

    assert parse_operator_amount(shown, currency) == minor_units


@given(
    minor_units=st.integers(min_value=1, max_value=MAX_MINOR_UNITS),
    separator=st.sampled_from([".", ",", " ", ""]),
)
def test_pesos_grouped_by_any_separator_read_back_exactly(
    minor_units: int, separator: str
) -> None:
    shown = f"{minor_units:,}".replace(",", separator)

    assert parse_operator_amount(shown, "CLP") == minor_units
