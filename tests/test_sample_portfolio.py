"""The generated sample portfolio: live dates, Chilean data, and a clean import."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from receivables.importer import (
    SettledInvoice,
    average_days_late,
    import_portfolio,
    open_invoices_to_start,
)
from receivables.mapping import load_mapping
from receivables.policy import SegmentFacts, load_policy_book
from receivables.sample_portfolio import write_sample_portfolio
from receivables.store import Customer, Invoice, InvoiceStatus, make_engine

POLICIES = Path(__file__).resolve().parents[1] / "policies"
TODAY = date(2026, 3, 9)
MAPPING = load_mapping(POLICIES, "sample")
H = MAPPING.columns.declared()  # field name to the header the sample file uses


def read_sample(path: Path) -> list[dict[str, str]]:
    """The rows of a sample file, read with the encoding and delimiter it declares."""
    with path.open(encoding=MAPPING.encoding, newline="") as handle:
        return list(csv.DictReader(handle, delimiter=MAPPING.delimiter))


def day(text: str) -> date:
    return datetime.strptime(text, MAPPING.date_format).date()


def optional_day(text: str) -> date | None:
    return day(text) if text else None


@pytest.fixture(params=[TODAY, date(2028, 2, 29), date(2026, 12, 31)], ids=str)
def generated_on(request: pytest.FixtureRequest) -> date:
    """The day the sample is generated on: a plain day, a leap day, a year's end."""
    day: date = request.param
    return day


@pytest.fixture
def sample_rows(generated_on: date, tmp_path: Path) -> list[dict[str, str]]:
    """The default-sized sample, generated on ``generated_on``."""
    path = write_sample_portfolio(tmp_path / "sample.csv", today=generated_on)
    return read_sample(path)


def open_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if not row[H["settled_date"]]]


def days_to_due(row: dict[str, str], today: date) -> int | None:
    due = optional_day(row[H["due_date"]])
    return None if due is None else (due - today).days


def test_same_seed_and_day_give_the_same_file(tmp_path: Path) -> None:
    first = write_sample_portfolio(tmp_path / "a.csv", today=TODAY, seed=7)
    second = write_sample_portfolio(tmp_path / "b.csv", today=TODAY, seed=7)
    other_seed = write_sample_portfolio(tmp_path / "c.csv", today=TODAY, seed=8)

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other_seed.read_bytes()


def test_header_matches_the_sample_mapping(tmp_path: Path) -> None:
    path = write_sample_portfolio(tmp_path / "sample.csv", today=TODAY, size=5)

    with path.open(encoding=MAPPING.encoding, newline="") as handle:
        header = next(csv.reader(handle, delimiter=MAPPING.delimiter))

    assert set(MAPPING.required_headers()) <= set(header)
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really Latin-1, as the mapping declares


def test_open_invoices_are_live_relative_to_today(
    sample_rows: list[dict[str, str]], generated_on: date
) -> None:
    offsets = [days_to_due(row, generated_on) for row in open_rows(sample_rows)]
    dated = [offset for offset in offsets if offset is not None]

    assert len(offsets) == 40
    assert any(1 <= offset <= 10 for offset in dated), "none due within 10 days"
    assert 0 in dated, "none due today"
    assert any(-40 <= offset <= -1 for offset in dated), "none 1-40 days overdue"
    assert any(offset < -40 for offset in dated), "none long overdue"
    assert all(day(row[H["issue_date"]]) <= generated_on for row in sample_rows)


def test_missing_due_dates_come_with_terms_except_one_kind(
    sample_rows: list[dict[str, str]],
) -> None:
    undated = [row for row in open_rows(sample_rows) if not row[H["due_date"]]]
    terms = [row[H["payment_terms_days"]] for row in undated]

    assert any(terms), "no open invoice relies on payment terms"
    assert not all(terms), "no open invoice waits for a due date"


def test_settled_history_is_in_the_past_and_has_late_payers(
    sample_rows: list[dict[str, str]], generated_on: date
) -> None:
    settled = [row for row in sample_rows if row[H["settled_date"]]]
    paid_on = [day(row[H["settled_date"]]) for row in settled]
    late = [
        (day(row[H["settled_date"]]) - day(row[H["due_date"]])).days for row in settled
    ]

    assert settled and all(paid < generated_on for paid in paid_on)
    assert max(late) >= 10 and min(late) <= 3


def test_rows_look_chilean_and_contact_nobody_real(
    sample_rows: list[dict[str, str]],
) -> None:
    names = {row[H["customer_name"]] for row in sample_rows}
    zones = {row[H["time_zone"]] for row in sample_rows}
    emails = {row[H["email"]] for row in sample_rows} - {""}
    phones = {row[H["phone"]] for row in sample_rows}
    amounts = [MAPPING.parse_amount(row[H["amount"]], "CLP") for row in sample_rows]

    assert any("ñ" in name.lower() for name in names)
    assert any("'" in name for name in names) and any("&" in name for name in names)
    assert {"America/Santiago", "America/Punta_Arenas", "Pacific/Easter"} <= zones
    assert all(
        re.fullmatch(r"[a-z0-9.\-]+@(example\.com|[a-z.]+\.invalid)", e) for e in emails
    )
    assert all(re.fullmatch(r"\+56 9 \d{4} \d{4}", phone) for phone in phones)
    assert all(85_000 <= amount <= 12_000_000 for amount in amounts)
    types = {
        MAPPING.parse_customer_type(row[H["customer_type"]]) for row in sample_rows
    }
    assert {"company", "consumer", "health", "education"} <= types


def test_size_counts_open_invoices_and_must_be_positive(tmp_path: Path) -> None:
    small = read_sample(write_sample_portfolio(tmp_path / "s.csv", today=TODAY, size=3))

    assert len(open_rows(small)) == 3
    with pytest.raises(ValueError, match="size"):
        write_sample_portfolio(tmp_path / "none.csv", today=TODAY, size=0)


def expected_segments(rows: list[dict[str, str]]) -> dict[str, str]:
    """Each folio's segment, recomputed from the file alone with no look-ahead."""
    book = load_policy_book(POLICIES)
    history: dict[str, list[SettledInvoice]] = defaultdict(list)
    for row in rows:
        due, paid = (
            optional_day(row[H["due_date"]]),
            optional_day(row[H["settled_date"]]),
        )
        if due is not None and paid is not None:
            history[row[H["customer_id"]]].append(SettledInvoice(due, paid))
    segments = {}
    for row in rows:
        issued = day(row[H["issue_date"]])
        late = average_days_late(history[row[H["customer_id"]]], issued)
        amount = MAPPING.parse_amount(row[H["amount"]], "CLP")
        kind = MAPPING.parse_customer_type(row[H["customer_type"]])
        facts = SegmentFacts(amount, "CLP", kind, late)
        segments[row[H["invoice_number"]]] = book.policy_for(facts)[0]
    return segments


def test_sample_imports_cleanly_with_names_intact(
    database_url: str, tmp_path: Path
) -> None:
    path = write_sample_portfolio(tmp_path / "sample.csv", today=TODAY)
    rows = read_sample(path)

    report = import_portfolio(
        path, "sample", database_url=database_url, tenant="demo", policies_dir=POLICIES
    )

    assert report.rejected == [] and len(report.accepted) == len(rows)
    engine = make_engine(database_url)
    with Session(engine) as session:
        names = {c.customer_id: c.name for c in session.exec(select(Customer))}
        invoices = {i.invoice_number: i for i in session.exec(select(Invoice))}
    engine.dispose()
    assert names == {row[H["customer_id"]]: row[H["customer_name"]] for row in rows}
    assert {n: i.segment for n, i in invoices.items()} == expected_segments(rows)
    waiting = {
        n for n, i in invoices.items() if i.status == InvoiceStatus.NEEDS_DUE_DATE
    }
    assert waiting == set(report.needs_due_date) and waiting
    cases = open_invoices_to_start(database_url, "demo", report.accepted)
    assert len(cases) + len(waiting) == len(open_rows(rows))
