"""Column mappings: how one source's CSV export reads into invoices, in YAML."""

from __future__ import annotations

import calendar
import codecs
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from receivables.money import (
    MoneyError,
    check_storable,
    exponent_of,
    parse_minor_units,
)
from receivables.yaml_text import load_yaml

MAPPINGS_FOLDER = "mappings"
CUSTOMER_TYPES = ("company", "consumer", "health", "education")
MAPPING_NAME = re.compile(r"^[a-z0-9][a-z0-9\-_]*$")
# Strptime directives shown to users as the pattern they have to type.
_DIRECTIVE_NAMES = {"%d": "DD", "%m": "MM", "%Y": "YYYY", "%y": "YY", "%b": "Mon"}
_EXAMPLE_DAY = date(2026, 1, 24)
# Invoice dates outside these years are typing slips (0026 for 2026, 9999 for "never").
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200
_DATE_PARTS = {
    "%d": r"(?P<day>[0-9]{1,2})",
    "%m": r"(?P<month>[0-9]{1,2})",
    "%Y": r"(?P<year>[0-9]{4})",
}
_ASCII_DIGITS = frozenset("0123456789")


class MappingError(ValueError):
    """A mapping file that cannot be used, with file, field and reason."""

    def __init__(self, file: Path | str, field: str, reason: str) -> None:
        self.file, self.field, self.reason = str(file), field, reason
        super().__init__(f"{file}: {field}: {reason}")


class CellError(ValueError):
    """A cell that cannot be read, with its own advice on what to do."""

    def __init__(self, reason: str, hint: str) -> None:
        self.hint = hint
        super().__init__(reason)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    """Which header holds each invoice field; ``None`` when the file lacks it."""

    invoice_number: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    issue_date: str = Field(min_length=1)
    amount: str = Field(min_length=1)
    customer_name: str | None = None
    customer_type: str | None = None
    due_date: str | None = None
    settled_date: str | None = None  # historical portfolios: when the invoice was paid
    disputed: str | None = None
    email: str | None = None
    phone: str | None = None
    whatsapp: str | None = None
    time_zone: str | None = None
    region: str | None = None
    payment_terms_days: str | None = None  # used only when the due date is empty
    # Stop facts, all optional. The debtor's: served in a lawsuit, insolvency opened (dates).
    lawsuit_served_on: str | None = None
    insolvency_opened_on: str | None = None
    # The invoice's, from its SII DTE: FmaPago (1 cash, 2 credit, 3 free), the date the
    # buyer received it at the SII, and its cession to a factor (date and assignee).
    payment_form: str | None = None
    sii_received_on: str | None = None
    ceded_on: str | None = None
    ceded_to: str | None = None

    def declared(self) -> dict[str, str]:
        """Field name to header, for every field the file provides."""
        return {field: header for field, header in self if header is not None}


class CurrencySource(_Strict):
    """The invoice currency: one fixed ISO code for the whole file, or a column."""

    fixed: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CurrencySource:
        if (self.fixed is None) == (self.column is None):
            raise ValueError("give exactly one of 'fixed' (like USD) or 'column'")
        if self.fixed is not None:
            try:
                exponent_of(self.fixed)
            except MoneyError as error:
                raise ValueError(str(error)) from None
        return self


class AmountFormat(_Strict):
    """How amounts are written: ``1234.56`` by default, ``1.234,56`` in Chile."""

    decimal_separator: str = Field(default=".", pattern=r"^[.,]$")
    thousands_separator: str | None = Field(default=None, pattern=r"^[., ']$")

    @model_validator(mode="after")
    def _separators_differ(self) -> AmountFormat:
        if self.thousands_separator == self.decimal_separator:
            raise ValueError("thousands_separator must differ from decimal_separator")
        return self

    def example(self, decimals: int = 2) -> str:
        """How 1234567.89 (or 1234567, without decimals) looks in this format."""
        whole = f"{1234567:,}".replace(",", self.thousands_separator or "")
        return (
            f"{whole}{self.decimal_separator}{'89'[:decimals]}" if decimals else whole
        )

    def normalise(self, text: str, decimals: int = 2) -> str:
        """Rewrite an amount as plain ``1234567.89``; refuse text that does not fit."""
        body = text.strip()
        if not body:
            raise MoneyError("is empty")
        if any(char.isdigit() and char not in _ASCII_DIGITS for char in body):
            raise MoneyError(
                f"{text!r} has digits other than 0-9 (full-width or of another script)"
            )
        decimal, thousands = map(
            re.escape, (self.decimal_separator, self.thousands_separator or "")
        )
        whole = (
            rf"(?:[0-9]{{1,3}}(?:{thousands}[0-9]{{3}})+|[0-9]+)"
            if thousands
            else "[0-9]+"
        )
        if not re.fullmatch(rf"-?{whole}(?:{decimal}[0-9]+)?", body):
            raise MoneyError(
                f"{text!r} is not an amount written like {self.example(decimals)}"
            )
        if self.thousands_separator:
            body = body.replace(self.thousands_separator, "")
        return body.replace(self.decimal_separator, ".")


class Defaults(_Strict):
    """Customer attributes for a file without their column, or with an empty cell."""

    customer_type: str = "company"
    # The zone of a customer whose row names neither a zone nor a one-zone region. null
    # stores such a customer with its zone unknown, flagged, with the zones it may be in.
    time_zone: str | None = "America/Santiago"

    @field_validator("customer_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return check_customer_type(value)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else check_time_zone(value)


class ImportMapping(_Strict):
    """All it takes to read one source's export: encoding, layout, formats, columns."""

    name: str = Field(pattern=MAPPING_NAME.pattern)
    description: str = ""
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    date_format: str = "%Y-%m-%d"
    amount_format: AmountFormat = AmountFormat()
    currency: CurrencySource
    columns: Columns
    disputed_yes_values: tuple[str, ...] = ("yes", "y", "true", "1", "sí", "si")
    disputed_no_values: tuple[str, ...] = ("no", "n", "false", "0")
    # The source's own words for customer types, like {"Empresa": "company"}.
    customer_type_values: dict[str, str] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    # True only for anonymised sources without names or addresses (see the importer).
    placeholder_contacts: bool = False

    @field_validator("customer_type_values")
    @classmethod
    def _known_types(cls, values: dict[str, str]) -> dict[str, str]:
        for value in values.values():
            check_customer_type(value)
        return values

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r}; use utf-8, latin-1 or cp1252"
            ) from None
        return value

    @field_validator("date_format")
    @classmethod
    def _full_date(cls, value: str) -> str:
        try:
            text = _EXAMPLE_DAY.strftime(value)
            round_trip = datetime.strptime(text, value).date()
        except ValueError:
            round_trip = None
        if round_trip != _EXAMPLE_DAY:
            raise ValueError(
                f"{value!r} does not read back a whole date; it needs day, month and "
                "year directives, like '%d/%m/%Y'"
            )
        return value

    def required_headers(self) -> list[str]:
        """Every header the file must have for this mapping."""
        headers = list(self.columns.declared().values())
        headers += [self.currency.column] if self.currency.column else []
        return list(dict.fromkeys(headers))

    def date_pattern(self) -> str:
        """The date format as users write it, like ``DD/MM/YYYY``."""
        pattern = self.date_format
        for directive, shown in _DIRECTIVE_NAMES.items():
            pattern = pattern.replace(directive, shown)
        return pattern

    def parse_date(self, text: str) -> date:
        """Read a date in the declared format; never guesses another order."""
        value = text.strip()
        try:
            day = datetime.strptime(value, self.date_format).date()
        except ValueError:
            raise self._not_a_date(text) from None
        if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
            raise CellError(
                f"{value} is in the year {day.year}: implausible year; check the date",
                f"correct the date in the source; years {EARLIEST_YEAR} to "
                f"{LATEST_YEAR} are accepted",
            )
        return day

    def _not_a_date(self, text: str) -> ValueError:
        wrong_shape = ValueError(
            f"{text!r} is not a date in the declared format {self.date_pattern()}"
        )
        parts = _date_parts(text.strip(), self.date_format)
        if parts is None:
            return wrong_shape
        year, month, day = parts
        days = calendar.monthrange(year, month)[1]
        if day <= days:  # strptime refused it for a reason other than the day
            return wrong_shape
        month_name = calendar.month_name[month]
        why = f"{month_name} {year} has {days} days"
        if (month, day) == (2, 29):
            why = f"{year} is not a leap year, so February has 28 days"
        return CellError(
            f"{text.strip()} has the format {self.date_pattern()} but is not a real "
            f"date ({why})",
            f"correct the day in the source: {month_name} {year} ends on the {days}th",
        )

    def parse_amount(self, text: str, currency: str) -> int:
        """Read an amount exactly into minor units of the currency."""
        allowed = exponent_of(currency)
        plain = self.amount_format.normalise(text, allowed)
        decimals = len(plain.partition(".")[2])
        if decimals > allowed:
            raise _too_many_decimals(
                text.strip(), decimals, currency, self.amount_format
            )
        return check_storable(parse_minor_units(plain, currency), currency)

    def parse_customer_type(self, text: str) -> str:
        """Read a customer type, in the source's words if the mapping declares them."""
        value = text.strip()
        words = {
            word.casefold(): kind for word, kind in self.customer_type_values.items()
        }
        return check_customer_type(words.get(value.casefold(), value))

    def parse_disputed(self, text: str) -> bool:
        """Read the disputed flag; an empty cell means not disputed."""
        value = text.strip().casefold()
        if not value or value in {v.casefold() for v in self.disputed_no_values}:
            return False
        if value in {v.casefold() for v in self.disputed_yes_values}:
            return True
        allowed = ", ".join((*self.disputed_yes_values, *self.disputed_no_values))
        raise ValueError(f"{text!r} is neither a yes nor a no value ({allowed})")


def _date_parts(text: str, date_format: str) -> tuple[int, int, int] | None:
    """Year, month and day of a text shaped like the format, even if no such day."""
    pieces = re.split(r"(%.)", date_format)
    directives = sorted(piece for piece in pieces if piece.startswith("%"))
    if directives != ["%Y", "%d", "%m"]:
        return None  # other directives (%y, %b) keep the plain format message
    pattern = "".join(_DATE_PARTS.get(piece, re.escape(piece)) for piece in pieces)
    match = re.fullmatch(pattern, text)
    if match is None:
        return None
    year, month, day = (int(match[name]) for name in ("year", "month", "day"))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return year, month, day


def check_payment_form(text: str) -> int:
    """Read an SII FmaPago: 1 (contado, cash), 2 (crédito) or 3 (sin costo, free)."""
    value = text.strip()
    if value not in ("1", "2", "3"):
        raise ValueError(
            f"{text!r} is not an SII payment form (FmaPago): 1 cash, 2 credit, 3 free"
        )
    return int(value)


def check_customer_type(value: str) -> str:
    """Return a known customer type, or raise naming the ones allowed."""
    if value not in CUSTOMER_TYPES:
        raise ValueError(
            f"unknown customer type {value!r}; use one of {', '.join(CUSTOMER_TYPES)}"
        )
    return value


def check_time_zone(value: str) -> str:
    """Return an IANA time zone name that this machine knows, or raise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown IANA time zone {value!r}, like America/Santiago"
        ) from None
    return value


def mapping_path(policies_dir: Path, name: str) -> Path:
    """Where the mapping called ``name`` lives: ``policies/mappings/NAME.yaml``."""
    return policies_dir / MAPPINGS_FOLDER / f"{name}.yaml"


def _describe(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    return field or "(top level)", first["msg"].removeprefix("Value error, ")


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise MappingError(path, where, f"not valid YAML: {error}") from None


def load_mapping(policies_dir: Path, name: str) -> ImportMapping:
    """Load ``policies/mappings/NAME.yaml``; errors name the file, field and reason."""
    # People often pass the file name they see in the folder: sample.yaml for sample.
    name = name.removesuffix(".yaml")
    path = mapping_path(policies_dir, name)
    if not MAPPING_NAME.match(name):
        raise MappingError(
            path,
            "(name)",
            "a mapping name is lower-case letters, digits, - or _; give only the "
            "name, like sample for policies/mappings/sample.yaml",
        )
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) or ["none"]
        raise MappingError(
            path, "(file)", f"no such mapping; known: {', '.join(known)}"
        )
    try:
        mapping = ImportMapping.model_validate(_read_yaml(path))
    except ValidationError as error:
        field, reason = _describe(error)
        raise MappingError(
            path, field, f"{reason}; fix the mapping and import again"
        ) from None
    if mapping.name != name:
        raise MappingError(
            path, "name", f"is {mapping.name!r} but the file is {path.name}"
        )
    return mapping


def _too_many_decimals(
    text: str, decimals: int, currency: str, amount_format: AmountFormat
) -> CellError:
    """Why an amount has more decimals than its currency takes, and what to change."""
    allowed = exponent_of(currency)
    if amount_format.thousands_separator is None and decimals == 3:
        # Even "1.000" is refused for CLP: far likelier a thousand pesos written with
        # a thousands separator the mapping does not declare than three zero decimals.
        return CellError(
            f"{text!r} has 3 decimals but {currency} has {allowed}",
            f"if {amount_format.decimal_separator!r} separates thousands in this file, "
            "declare thousands_separator in the mapping's amount_format",
        )
    fix = "or map the right column as amount if this one holds something else"
    if allowed == 0:
        units = " (centavos are not used)" if currency == "CLP" else ""
        return CellError(
            f"{text!r} has a decimal part but {currency} has no decimals{units}",
            f"round the amount to a whole number in the source file, {fix}",
        )
    return CellError(
        f"{text!r} has {decimals} decimals but {currency} has {allowed}",
        f"round the amount to {allowed} decimals in the source file, {fix}",
    )
