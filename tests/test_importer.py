"""Portfolio import: row checks, encodings, all-or-nothing batches, segments, dues."""

from __future__ import annotations

import codecs
import csv
import json
import re
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlmodel import Session, select

from receivables.case import PromiseOutcome, PromiseRecord
from receivables.commitments import broken_promises_before, record_promise
from receivables.importer import (
    PortfolioFileError,
    SettledInvoice,
    average_days_late,
    derive_due_date,
    import_portfolio,
    open_invoices_to_start,
    placeholder_contact,
)
from receivables.mapping import MappingError, load_mapping
from receivables.policy import SegmentFacts, load_policy_book
from receivables.store import (
    Customer,
    ImportBatch,
    Invoice,
    InvoiceStatus,
    StopFactRecord,
    find_customer,
    find_invoice,
    make_engine,
)

PROJECT_POLICIES = Path(__file__).resolve().parents[1] / "policies"
TENANT = "acme"
HEADER = [
    "folio",
    "customer",
    "name",
    "type",
    "issued",
    "due",
    "amount",
    "settled",
    "terms",
]


def plain_mapping(**changes: Any) -> dict[str, Any]:
    """A day/month/year CLP mapping over HEADER, with fields replaced as given."""
    mapping: dict[str, Any] = {
        "name": "plain",
        "encoding": "utf-8",
        "delimiter": ",",
        "date_format": "%d/%m/%Y",
        "currency": {"fixed": "CLP"},
        "columns": {
            "invoice_number": "folio",
            "customer_id": "customer",
            "customer_name": "name",
            "customer_type": "type",
            "issue_date": "issued",
            "due_date": "due",
            "amount": "amount",
            "settled_date": "settled",
            "payment_terms_days": "terms",
        },
    }
    mapping.update(changes)
    return mapping


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of the project's policies and mappings, plus the mapping ``plain``."""
    folder = tmp_path / "policies"
    shutil.copytree(PROJECT_POLICIES, folder)
    add_mapping(folder, plain_mapping())
    return folder


def add_mapping(policies_dir: Path, mapping: dict[str, Any]) -> None:
    path = policies_dir / "mappings" / f"{mapping['name']}.yaml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")


def invoice_row(folio: str, **cells: str) -> list[str]:
    """One row under HEADER; a valid open invoice unless cells say otherwise."""
    values = {
        "folio": folio,
        "customer": "C-1",
        "name": "Cliente Uno Ltda.",
        "type": "",
        "issued": "05/01/2026",
        "due": "04/02/2026",
        "amount": "100000",
        "settled": "",
        "terms": "",
    }
    values.update(cells)
    return [values[column] for column in HEADER]


def write_rows(
    path: Path,
    rows: list[list[str]],
    *,
    encoding: str = "utf-8",
    header: list[str] = HEADER,
) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_import(
    path: Path, url: str, policies_dir: Path, mapping: str = "plain", **options: Any
) -> Any:
    return import_portfolio(
        path,
        mapping,
        database_url=url,
        tenant=TENANT,
        policies_dir=policies_dir,
        **options,
    )


def stored(url: str, model: type[Any]) -> list[Any]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(model)))
    finally:
        engine.dispose()


def stored_invoice(url: str, number: str) -> Invoice:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            invoice = find_invoice(session, TENANT, number)
    finally:
        engine.dispose()
    assert invoice is not None, f"invoice {number} was not stored"
    return invoice


# --- the real IBM file ---


def test_ibm_file_imports_every_row_with_folios_kept_as_text(
    sqlite_url: str, shared_dir: Path
) -> None:
    source = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    calls: list[tuple[int, int]] = []

    report = run_import(
        source,
        sqlite_url,
        PROJECT_POLICIES,
        "ibm-ar",
        progress=lambda *c: calls.append(c),
    )

    assert report.rejected == []
    assert len(report.accepted) == len(rows) == 2466
    assert {invoice.invoice_number for invoice in stored(sqlite_url, Invoice)} == {
        row["invoiceNumber"] for row in rows
    }
    first = stored_invoice(sqlite_url, "0000611365")
    assert (first.amount_minor, first.currency) == (5594, "USD")
    assert (first.issue_date, first.due_date) == (date(2013, 1, 2), date(2013, 2, 1))
    assert first.status == InvoiceStatus.PAID and first.settled_date == date(
        2013, 1, 15
    )
    assert calls[-1] == (len(rows), len(rows))
    assert [done for done, _ in calls[:-1]] == list(range(500, len(rows), 500))


def test_ibm_customers_get_placeholder_contacts_that_reach_nobody(
    sqlite_url: str, shared_dir: Path
) -> None:
    source = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"
    run_import(source, sqlite_url, PROJECT_POLICIES, "ibm-ar")

    customers = stored(sqlite_url, Customer)

    assert customers, "the import created no customers"
    for customer in customers:
        assert (customer.name, customer.email) == placeholder_contact(
            customer.customer_id
        )
        assert customer.email.endswith("@customers.invalid")


def test_ibm_days_late_matches_the_file_without_look_ahead(
    sqlite_url: str, shared_dir: Path
) -> None:
    source = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"
    run_import(source, sqlite_url, PROJECT_POLICIES, "ibm-ar")
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    book = load_policy_book(PROJECT_POLICIES)
    invoices = {
        invoice.invoice_number: invoice for invoice in stored(sqlite_url, Invoice)
    }

    for row in rows[:300]:
        invoice = invoices[row["invoiceNumber"]]
        # The file's own DaysLate, counted only for invoices settled before this one.
        earlier = [
            int(other["DaysLate"])
            for other in rows
            if other["customerID"] == row["customerID"]
            and invoices[other["invoiceNumber"]].settled_date < invoice.issue_date
        ]
        late = sum(earlier) / len(earlier) if earlier else None
        facts = SegmentFacts(invoice.amount_minor, "USD", "company", late)
        assert invoice.segment == book.policy_for(facts)[0], row["invoiceNumber"]


# --- re-imports ---


def test_reimporting_the_same_file_is_a_no_op(
    database_url: str, policies: Path
) -> None:
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001"), invoice_row("0002")]
    )
    first = run_import(source, database_url, policies)

    again = run_import(source, database_url, policies)

    assert first.batch_id is not None and again.repeat_of_batch == first.batch_id
    assert again.accepted == [] and again.batch_id is None
    assert "already imported as batch" in again.summary()
    assert len(stored(database_url, Invoice)) == 2
    assert len(stored(database_url, ImportBatch)) == 1


def test_same_invoice_in_another_file_is_already_imported_not_an_error(
    database_url: str, policies: Path
) -> None:
    run_import(
        write_rows(policies.parent / "a.csv", [invoice_row("0001")]),
        database_url,
        policies,
    )
    second = write_rows(
        policies.parent / "b.csv", [invoice_row("0001"), invoice_row("0002")]
    )

    report = run_import(second, database_url, policies)

    assert report.rejected == []
    assert report.already_imported == ["0001"] and report.accepted == ["0002"]


def test_conflicting_reimport_loses_nothing(database_url: str, policies: Path) -> None:
    run_import(
        write_rows(policies.parent / "a.csv", [invoice_row("0001")]),
        database_url,
        policies,
    )
    changed = write_rows(
        policies.parent / "b.csv",
        [invoice_row("0001", amount="250000"), invoice_row("0002")],
    )

    held = run_import(changed, database_url, policies)
    partial = run_import(changed, database_url, policies, accept_valid=True)

    assert held.held_back == ["0002"] and held.accepted == []
    conflict = partial.rejected[0]
    assert (conflict.row, conflict.field, conflict.value) == (
        2,
        "amount",
        "250.000 CLP",
    )
    assert "'amount' (amount) is 100.000 CLP there, 250.000 CLP here" in conflict.reason
    assert partial.accepted == ["0002"]
    assert stored_invoice(database_url, "0001").amount_minor == 100000


def test_a_conflict_names_the_file_s_columns_and_says_empty_not_none(
    sqlite_url: str, policies: Path
) -> None:
    columns = {**plain_mapping()["columns"], "settled_date": "Fecha Pago"}
    add_mapping(policies, plain_mapping(name="named", columns=columns))
    header = [*HEADER[:-2], "Fecha Pago", "terms"]
    run_import(
        write_rows(policies.parent / "a.csv", [invoice_row("0001")], header=header),
        sqlite_url,
        policies,
        "named",
    )
    paid = invoice_row("0001", amount="1250000", settled="20/01/2026")

    report = run_import(
        write_rows(policies.parent / "b.csv", [paid], header=header),
        sqlite_url,
        policies,
        "named",
    )

    [conflict] = report.rejected
    assert conflict.column == "amount"
    assert conflict.reason == (
        "conflicts with the invoice already imported: "
        "'amount' (amount) is 100.000 CLP there, 1.250.000 CLP here; "
        "'Fecha Pago' (settled_date) is empty there, 2026-01-20 here"
    )
    assert "None" not in conflict.describe("b.csv")


# --- row checks ---


def test_dates_follow_the_declared_format_and_are_never_guessed(
    sqlite_url: str, policies: Path
) -> None:
    add_mapping(policies, plain_mapping(name="us", date_format="%m/%d/%Y"))
    rows = [invoice_row("0001", issued="24/01/2026", due="")]
    us = run_import(
        write_rows(policies.parent / "us.csv", rows), sqlite_url, policies, "us"
    )
    day_first = write_rows(
        policies.parent / "cl.csv", [invoice_row("0002", issued="09/01/2026", due="")]
    )

    run_import(day_first, sqlite_url, policies, "plain")

    error = us.rejected[0]
    assert (error.row, error.field, error.value) == (2, "issue_date", "24/01/2026")
    assert "MM/DD/YYYY" in error.reason and "01/24/2026" in error.hint
    # People know their file by its own headers: the message names the column first.
    assert error.column == "issued"
    assert "us.csv row 2, column 'issued' (issue_date) '24/01/2026'" in error.describe(
        "us.csv"
    )
    assert stored_invoice(sqlite_url, "0002").issue_date == date(2026, 1, 9)
    assert find_invoice_count(sqlite_url) == 1


def find_invoice_count(url: str) -> int:
    return len(stored(url, Invoice))


def test_due_date_before_issue_date_is_a_row_error(
    sqlite_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("0001"),
        invoice_row("0002", issued="10/02/2026", due="09/02/2026"),
    ]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows), sqlite_url, policies
    )

    [error] = report.rejected
    assert (error.row, error.field, error.invoice_number) == (3, "due_date", "0002")
    assert "before the issue date" in error.reason


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("", "empty"),
        ("0", "above zero"),
        ("-5000", "above zero"),
        (
            "12.5",
            "'12.5' has a decimal part but CLP has no decimals (centavos are not used)",
        ),
        ("1.000", "'1.000' has 3 decimals but CLP has 0"),
        ("cien mil", "not an amount written like 1234567"),
    ],
)
def test_amount_must_be_present_positive_and_exact(
    sqlite_url: str, policies: Path, amount: str, reason: str
) -> None:
    source = write_rows(policies.parent / "p.csv", [invoice_row("0001", amount=amount)])

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field, error.value) == (2, "amount", amount)
    assert reason in error.reason


def test_thousands_written_without_a_declared_separator_are_named_as_such(
    sqlite_url: str, policies: Path
) -> None:
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", amount="1.000")]
    )

    [error] = run_import(source, sqlite_url, policies).rejected

    assert "declare thousands_separator" in error.hint


def test_pesos_with_centavos_are_refused_for_the_centavos_not_the_separators(
    sqlite_url: str, policies: Path
) -> None:
    chilean = {"decimal_separator": ",", "thousands_separator": "."}
    add_mapping(policies, plain_mapping(name="cl", amount_format=chilean))
    rows = [invoice_row("0001", amount="85.000,50")]

    [error] = run_import(
        write_rows(policies.parent / "p.csv", rows), sqlite_url, policies, "cl"
    ).rejected

    assert error.reason == (
        "'85.000,50' has a decimal part but CLP has no decimals (centavos are not used)"
    )
    assert error.hint.startswith(
        "round the amount to a whole number in the source file"
    )
    assert "thousands_separator" not in error.hint


def test_amounts_with_decimals_become_exact_minor_units(
    sqlite_url: str, policies: Path
) -> None:
    add_mapping(policies, plain_mapping(name="usd", currency={"fixed": "USD"}))
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", amount="1234.07")]
    )

    run_import(source, sqlite_url, policies, "usd")

    assert stored_invoice(sqlite_url, "0001").amount_minor == 123407


def test_leading_zeros_and_missing_ids_are_checked(
    sqlite_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("000123"),
        invoice_row(""),
        invoice_row("000124", customer=""),
    ]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        accept_valid=True,
    )

    assert [(e.row, e.field) for e in report.rejected] == [
        (3, "invoice_number"),
        (4, "customer_id"),
    ]
    assert stored_invoice(sqlite_url, "000123").invoice_number == "000123"


def test_duplicate_in_the_file_names_the_first_row(
    sqlite_url: str, policies: Path
) -> None:
    rows = [invoice_row("0001"), invoice_row("0002"), invoice_row("0001", amount="5")]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        accept_valid=True,
    )

    [error] = report.rejected
    assert (error.row, error.field) == (4, "invoice_number")
    assert "row 2" in error.reason
    assert stored_invoice(sqlite_url, "0001").amount_minor == 100000


def test_row_with_a_stray_delimiter_is_rejected(
    sqlite_url: str, policies: Path
) -> None:
    source = policies.parent / "p.csv"
    write_rows(source, [invoice_row("0001")])
    with source.open("a", encoding="utf-8") as handle:
        handle.write("0002,C-1,Cliente, Uno,,05/01/2026,04/02/2026,100000,,\n")

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field) == (3, "(row)")
    assert "10 cells but the header has 9" in error.reason


def test_bom_and_blank_lines_keep_headers_and_row_numbers(
    sqlite_url: str, policies: Path
) -> None:
    lines = [HEADER, invoice_row("0001"), [], invoice_row("0002", amount="0")]
    source = policies.parent / "p.csv"
    text = "\r\n".join(",".join(cells) for cells in lines)
    source.write_text("\ufeff" + text + "\r\n", encoding="utf-8")  # as Excel saves

    report = run_import(source, sqlite_url, policies, accept_valid=True)

    assert report.accepted == ["0001"] and report.rejected_rows == [4]


def test_customer_types_read_in_the_source_words(
    sqlite_url: str, policies: Path
) -> None:
    words = plain_mapping(name="words", customer_type_values={"Salud": "health"})
    add_mapping(policies, words)
    rows = [
        invoice_row("0001", type="SALUD"),
        invoice_row("0002", customer="C-2", type="Gobierno"),
    ]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        "words",
        accept_valid=True,
    )

    assert stored_invoice(sqlite_url, "0001").segment == "consumer-health-education"
    [error] = report.rejected
    assert (error.row, error.field, error.value) == (3, "customer_type", "Gobierno")
    assert "Salud" in error.hint


def test_missing_column_stops_the_file_at_row_one(
    sqlite_url: str, policies: Path
) -> None:
    header = [column for column in HEADER if column != "amount"]
    source = write_rows(policies.parent / "p.csv", [], header=header)

    with pytest.raises(PortfolioFileError) as caught:
        run_import(source, sqlite_url, policies)

    assert caught.value.row == 1 and "'amount'" in caught.value.reason


# --- encodings ---


def test_latin1_name_imports_intact_when_declared(
    sqlite_url: str, policies: Path
) -> None:
    add_mapping(policies, plain_mapping(name="latin", encoding="latin-1"))
    name = "Comercializadora Ñandú Ltda."
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", name=name)], encoding="latin-1"
    )

    report = run_import(source, sqlite_url, policies, "latin")

    assert report.accepted == ["0001"]
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        customer = find_customer(session, TENANT, "C-1")
    engine.dispose()
    assert customer is not None and customer.name == name


def test_undecodable_row_names_the_row_and_asks_for_the_encoding(
    sqlite_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("0001"),
        invoice_row("0002", name="Comercializadora Ñandú Ltda."),
    ]
    source = write_rows(policies.parent / "p.csv", rows, encoding="latin-1")

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field) == (3, "customer_name")
    assert "\\xd1" in error.value and "encoding" in error.hint
    assert find_invoice_count(sqlite_url) == 0


# --- all or nothing ---


def test_batch_with_errors_writes_nothing_unless_valid_rows_are_accepted(
    database_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("0001"),
        invoice_row("0002", due="31/02/2026"),
        invoice_row("0003", customer="C-2"),
    ]
    source = write_rows(policies.parent / "p.csv", rows)

    held = run_import(source, database_url, policies)
    nothing = (stored(database_url, Invoice), stored(database_url, Customer))
    partial = run_import(source, database_url, policies, accept_valid=True)

    assert held.held_back == ["0001", "0003"] and held.batch_id is None
    assert nothing == ([], [])
    assert "held back: 2 valid rows NOT written" in held.summary()
    assert partial.accepted == ["0001", "0003"] and partial.rejected_rows == [3]
    assert sorted(i.invoice_number for i in stored(database_url, Invoice)) == [
        "0001",
        "0003",
    ]
    [batch] = stored(database_url, ImportBatch)
    assert (batch.accepted_rows, batch.rejected_rows) == (2, 1)


def test_stored_customers_are_completed_never_overwritten(
    sqlite_url: str, policies: Path
) -> None:
    run_import(
        write_rows(policies.parent / "a.csv", [invoice_row("0001")]),
        sqlite_url,
        policies,
    )
    renamed = [invoice_row("0002", name="Otro Nombre SpA", terms="45")]

    run_import(write_rows(policies.parent / "b.csv", renamed), sqlite_url, policies)

    [customer] = stored(sqlite_url, Customer)
    assert customer.name == "Cliente Uno Ltda." and customer.payment_terms_days == 45


# --- due dates from payment terms ---


def test_missing_due_date_comes_from_terms_or_waits_for_one(
    sqlite_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("0001", customer="C-1", due="", terms="30"),
        invoice_row("0002", customer="C-1", due="", issued="10/01/2026"),
        invoice_row("0003", customer="C-2", due=""),
    ]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows), sqlite_url, policies
    )

    in_file, from_customer, unknown = (
        stored_invoice(sqlite_url, number) for number in ("0001", "0002", "0003")
    )
    assert (in_file.due_date, in_file.due_date_rule) == (
        date(2026, 2, 4),
        "issue + 30 days (payment terms in file)",
    )
    assert (from_customer.due_date, from_customer.due_date_rule) == (
        date(2026, 2, 9),
        "issue + 30 days (customer terms)",
    )
    assert unknown.due_date is None and unknown.status == InvoiceStatus.NEEDS_DUE_DATE
    assert report.needs_due_date == ["0003"]


def test_terms_of_a_stored_customer_give_the_due_date(
    sqlite_url: str, policies: Path
) -> None:
    first = [invoice_row("0001", terms="45")]
    run_import(write_rows(policies.parent / "a.csv", first), sqlite_url, policies)

    later = [invoice_row("0002", due="", issued="01/03/2026")]
    run_import(write_rows(policies.parent / "b.csv", later), sqlite_url, policies)

    invoice = stored_invoice(sqlite_url, "0002")
    assert invoice.due_date == date(2026, 4, 15)
    assert invoice.due_date_rule == "issue + 45 days (customer terms)"


def test_derive_due_date_prefers_the_file_and_never_guesses() -> None:
    issued = date(2026, 1, 31)

    assert derive_due_date(issued, 30, 60) == (
        date(2026, 3, 2),
        "issue + 30 days (payment terms in file)",
    )
    assert derive_due_date(issued, None, 60)[1] == "issue + 60 days (customer terms)"
    assert derive_due_date(issued, None, None) == (None, None)


# --- days late and segments, without look-ahead ---


def test_average_days_late_counts_only_invoices_settled_before() -> None:
    history = [
        SettledInvoice(
            due_date=date(2026, 1, 10), settled_date=date(2026, 1, 30)
        ),  # 20
        SettledInvoice(
            due_date=date(2026, 2, 10), settled_date=date(2026, 2, 5)
        ),  # early
        SettledInvoice(due_date=date(2026, 3, 1), settled_date=date(2026, 3, 31)),  # 30
    ]

    assert average_days_late(history, date(2026, 1, 30)) is None
    assert average_days_late(history, date(2026, 1, 31)) == 20
    assert average_days_late(history, date(2026, 3, 31)) == 10
    assert average_days_late(history, date(2026, 4, 1)) == 50 / 3
    assert average_days_late([], date(2026, 4, 1)) is None


def test_segment_ignores_settlements_after_the_issue_date(
    sqlite_url: str, policies: Path
) -> None:
    rows = [
        # Due 4 Feb, paid 6 Mar: 30 days late, but only known from 6 March on.
        invoice_row("0001", settled="06/03/2026"),
        invoice_row("0002", issued="01/03/2026", due="31/03/2026"),
        invoice_row("0003", issued="07/03/2026", due="06/04/2026"),
    ]

    run_import(write_rows(policies.parent / "p.csv", rows), sqlite_url, policies)

    assert stored_invoice(sqlite_url, "0002").segment == "b2b-standard"
    assert stored_invoice(sqlite_url, "0003").segment == "high-risk"
    assert stored_invoice(sqlite_url, "0003").policy_name == "high-risk"


def test_history_already_stored_counts_for_later_files(
    sqlite_url: str, policies: Path
) -> None:
    history = [invoice_row("0001", settled="06/03/2026")]
    run_import(write_rows(policies.parent / "a.csv", history), sqlite_url, policies)
    later = [invoice_row("0002", issued="10/03/2026", due="09/04/2026")]

    run_import(write_rows(policies.parent / "b.csv", later), sqlite_url, policies)

    invoice = stored_invoice(sqlite_url, "0002")
    assert (invoice.segment, invoice.policy_name, invoice.policy_version) == (
        "high-risk",
        "high-risk",
        1,
    )


def test_promises_broken_before_the_issue_date_make_a_customer_high_risk(
    sqlite_url: str, policies: Path
) -> None:
    engine = make_engine(sqlite_url)
    for sequence, broken_on in enumerate((date(2026, 2, 10), date(2026, 3, 1)), 1):
        promise = PromiseRecord(
            tenant=TENANT,
            invoice_number="0000",
            customer_id="C-1",
            sequence=sequence,
            amount_minor=50_000,
            currency="CLP",
            promised_date=broken_on - timedelta(days=1),
            deadline=santiago_evening(broken_on),
            recorded_by="exec-01",
            recorded_at=santiago_evening(broken_on - timedelta(days=10)),
        )
        record_promise(engine, promise)
        broken = replace(
            promise,
            outcome=PromiseOutcome.BROKEN,
            outcome_at=santiago_evening(broken_on),
        )
        record_promise(engine, broken)
    rows = [
        # Issued the day the second promise broke: only the first was known then.
        invoice_row("0002", issued="01/03/2026", due="31/03/2026"),
        invoice_row("0003", issued="02/03/2026", due="01/04/2026"),
    ]

    run_import(write_rows(policies.parent / "p.csv", rows), sqlite_url, policies)

    assert stored_invoice(sqlite_url, "0002").segment == "b2b-standard"
    assert stored_invoice(sqlite_url, "0003").segment == "high-risk"


def test_broken_promises_count_by_the_debtor_s_local_date() -> None:
    # 23:30 in Santiago on 1 March is already 2 March in UTC.
    late_evening = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)

    assert (
        broken_promises_before([late_evening], date(2026, 3, 2), "America/Santiago")
        == 1
    )
    assert broken_promises_before([late_evening], date(2026, 3, 2), "UTC") == 0
    assert broken_promises_before([], date(2026, 3, 2), "UTC") == 0


def santiago_evening(day: date) -> datetime:
    """18:00 in Santiago on ``day``, when a promise's deadline is checked."""
    return datetime.combine(day, time(18), tzinfo=ZoneInfo("America/Santiago"))


# --- reports, mappings and what the starter reads ---


def test_report_lists_every_row_as_csv_and_json(
    sqlite_url: str, policies: Path
) -> None:
    rows = [invoice_row("0001"), invoice_row("0002", issued="2026-01-05")]
    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        accept_valid=True,
    )

    written = report.write_csv(policies.parent / "report.csv")
    data = json.loads(
        report.write_json(policies.parent / "report.json").read_text("utf-8")
    )

    with written.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["row"], line["outcome"]) for line in lines] == [
        ("2", "accepted"),
        ("3", "rejected"),
    ]
    assert "issue_date" in lines[1]["detail"] and "DD/MM/YYYY" in lines[1]["detail"]
    assert data["accepted"] == ["0001"] and data["rejected"][0]["row"] == 3
    assert "p.csv row 3, column 'issued' (issue_date) '2026-01-05'" in report.summary()


def test_unknown_mapping_names_the_known_ones(policies: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping(policies, "sap-export")

    assert "ibm-ar" in caught.value.reason and "sample" in caught.value.reason


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date_format": "%d/%m"}, "date_format"),
        ({"encoding": "klingon-8"}, "encoding"),
        ({"currency": {"fixed": "XYZ"}}, "currency"),
        ({"currency": {"fixed": "CLP", "column": "moneda"}}, "currency"),
        ({"defaults": {"customer_type": "government"}}, "defaults.customer_type"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_mapping_names_file_and_field(
    policies: Path, changes: dict[str, Any], field: str
) -> None:
    add_mapping(policies, plain_mapping(name="broken", **changes))

    with pytest.raises(MappingError) as caught:
        load_mapping(policies, "broken")

    assert caught.value.file.endswith("broken.yaml") and caught.value.field == field


def test_currency_can_come_from_a_column(sqlite_url: str, policies: Path) -> None:
    columns = {**plain_mapping()["columns"], "settled_date": None}
    add_mapping(
        policies,
        plain_mapping(name="multi", currency={"column": "settled"}, columns=columns),
    )
    rows = [
        invoice_row("0001", settled="usd", amount="10.50"),
        invoice_row("0002", settled="ARS"),
    ]

    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        "multi",
        accept_valid=True,
    )

    assert stored_invoice(sqlite_url, "0001").currency == "USD"
    assert [(e.row, e.field) for e in report.rejected] == [(3, "currency")]


def test_open_invoices_to_start_gives_the_case_inputs(
    database_url: str, policies: Path
) -> None:
    rows = [
        invoice_row("0001", settled="01/02/2026"),
        invoice_row("0002", customer="C-2", due=""),
        invoice_row("0003", amount="7000000"),
    ]
    add_mapping(
        policies, plain_mapping(name="zoned", defaults={"time_zone": "Pacific/Easter"})
    )
    report = run_import(
        write_rows(policies.parent / "p.csv", rows), database_url, policies, "zoned"
    )

    [case] = open_invoices_to_start(database_url, TENANT, report.accepted)

    assert (case.invoice_number, case.due_date, case.amount_minor) == (
        "0003",
        date(2026, 2, 4),
        7000000,
    )
    assert (case.time_zone, case.segment, case.policy_name) == (
        "Pacific/Easter",
        "b2b-large",
        "preventive-b2b",
    )


# --- hostile and damaged files ---


FORMULAS = ['=HYPERLINK("http://127.0.0.1/x","pay")', "+1", "-2", "@SUM(A1)"]


def test_report_csv_neutralises_cells_a_spreadsheet_would_run(
    sqlite_url: str, policies: Path
) -> None:
    rows = [invoice_row(folio) for folio in FORMULAS] + [invoice_row("0001")]
    report = run_import(
        write_rows(policies.parent / "p.csv", rows),
        sqlite_url,
        policies,
        accept_valid=True,
    )

    written = report.write_csv(policies.parent / "report.csv")

    with written.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    cells = [cell for line in lines for cell in line]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]
    assert [line[1] for line in lines[1:5]] == ["'" + folio for folio in FORMULAS]
    assert report.accepted == ["0001"]


@pytest.mark.parametrize(
    ("folio", "reason"),
    [
        ("=1+1", "starts with '='"),
        ("+56", "starts with '+'"),
        ("-001", "starts with '-'"),
        ("@A1", "starts with '@'"),
        ("F-001-", "ends with '-'"),
        ("F#1", "has '#'"),
        ("０００１", "not one of 0-9"),
    ],
)
def test_folio_must_be_an_identifier(
    sqlite_url: str, policies: Path, folio: str, reason: str
) -> None:
    source = write_rows(policies.parent / "p.csv", [invoice_row(folio)])

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field, error.value) == (2, "invoice_number", folio)
    assert reason in error.reason and "letters, digits 0-9" in error.hint


def test_folios_with_inner_punctuation_and_spaces_are_kept(
    sqlite_url: str, policies: Path
) -> None:
    folios = ["F-001/2026", "AB 12.3", "n_7", "Ñ1"]
    source = write_rows(policies.parent / "p.csv", [invoice_row(f) for f in folios])

    report = run_import(source, sqlite_url, policies)

    assert report.rejected == [] and report.accepted == folios


@pytest.mark.parametrize(
    ("column", "field", "value", "shown"),
    [
        (
            "name",
            "customer_name",
            "Cliente \u202eadtL",
            "U+202E, RIGHT-TO-LEFT OVERRIDE",
        ),
        ("name", "customer_name", "Cliente\nUno", "U+000A, a line break"),
        ("customer", "customer_id", "C\u20661", "U+2066, LEFT-TO-RIGHT ISOLATE"),
        ("folio", "invoice_number", "00\t02", "U+0009, a tab"),
        ("amount", "amount", "100\x07000", "U+0007, a control code"),
    ],
)
def test_control_and_text_direction_characters_are_row_errors(
    sqlite_url: str, policies: Path, column: str, field: str, value: str, shown: str
) -> None:
    changed = invoice_row("0002")
    changed[HEADER.index(column)] = value
    source = write_rows(policies.parent / "p.csv", [invoice_row("0001"), changed])

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field, error.value) == (3, field, value)
    assert f"invisible character ({shown})" in error.reason


def test_windows_quotes_under_a_latin1_mapping_ask_for_cp1252(
    sqlite_url: str, policies: Path
) -> None:
    add_mapping(policies, plain_mapping(name="latin", encoding="latin-1"))
    name = "Cliente \u201cUno\u201d"  # curly quotes, 0x93 and 0x94 in Windows-1252
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", name=name)], encoding="cp1252"
    )

    report = run_import(source, sqlite_url, policies, "latin")

    [error] = report.rejected
    assert (error.field, error.value) == ("customer_name", "Cliente \x93Uno\x94")
    assert "encoding: cp1252" in error.hint


@pytest.mark.parametrize(
    "amount", ["1000000000000001", "9223372036854775808", "9" * 40, "9" * 5000]
)
def test_amount_above_what_the_store_holds_is_a_row_error_not_a_crash(
    sqlite_url: str, policies: Path, amount: str
) -> None:
    source = write_rows(policies.parent / "p.csv", [invoice_row("0001", amount=amount)])

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (error.row, error.field, error.value) == (2, "amount", amount)
    assert "above the largest amount accepted" in error.reason


def test_the_largest_amount_accepted_is_stored_exactly(
    database_url: str, policies: Path
) -> None:
    largest = "1000000000000000"
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", amount=largest)]
    )

    run_import(source, database_url, policies)

    assert stored_invoice(database_url, "0001").amount_minor == int(largest)


@pytest.mark.parametrize(
    ("column", "field", "value"),
    [
        ("issued", "issue_date", "01/01/0001"),
        ("issued", "issue_date", "01/01/0026"),
        ("issued", "issue_date", "31/12/1899"),
        ("due", "due_date", "31/12/9999"),
        ("due", "due_date", "01/01/2201"),
        ("settled", "settled_date", "31/12/9999"),
    ],
)
def test_implausible_years_are_row_errors(
    sqlite_url: str, policies: Path, column: str, field: str, value: str
) -> None:
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", **{column: value})]
    )

    report = run_import(source, sqlite_url, policies)

    errors = [(e.field, e.value) for e in report.rejected]
    assert (field, value) in errors
    [error] = [e for e in report.rejected if e.field == field]
    assert "implausible year; check the date" in error.reason


def test_first_and_last_plausible_years_are_accepted(
    sqlite_url: str, policies: Path
) -> None:
    row = invoice_row("0001", issued="01/01/1900", due="31/12/2200")

    run_import(write_rows(policies.parent / "p.csv", [row]), sqlite_url, policies)

    invoice = stored_invoice(sqlite_url, "0001")
    assert (invoice.issue_date, invoice.due_date) == (
        date(1900, 1, 1),
        date(2200, 12, 31),
    )


def test_due_date_derived_past_the_plausible_years_is_a_row_error(
    sqlite_url: str, policies: Path
) -> None:
    row = invoice_row("0001", issued="01/12/2200", due="", terms="60")

    report = run_import(
        write_rows(policies.parent / "p.csv", [row]), sqlite_url, policies
    )

    [error] = report.rejected
    assert (error.field, error.value) == ("payment_terms_days", "60")
    assert "2201-01-30: implausible year" in error.reason


def test_derive_due_date_refuses_to_overflow_the_calendar() -> None:
    with pytest.raises(ValueError, match="past the last date the calendar holds"):
        derive_due_date(date(9999, 12, 1), 60, None)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("29/02/2025", "2025 is not a leap year, so February has 28 days"),
        ("31/02/2026", "February 2026 has 28 days"),
        ("31/04/2026", "April 2026 has 30 days"),
    ],
)
def test_a_day_that_does_not_exist_is_told_apart_from_a_wrong_format(
    sqlite_url: str, policies: Path, value: str, why: str
) -> None:
    rows = [invoice_row("0001", issued=value, due=""), invoice_row("0002", due=value)]
    source = write_rows(policies.parent / "p.csv", rows)

    report = run_import(source, sqlite_url, policies)

    assert [(e.field, e.value) for e in report.rejected] == [
        ("issue_date", value),
        ("due_date", value),
    ]
    for error in report.rejected:
        assert (
            f"{value} has the format DD/MM/YYYY but is not a real date" in error.reason
        )
        assert f"({why})" in error.reason and "ends on the" in error.hint


def test_a_date_of_the_wrong_shape_keeps_the_format_message(
    sqlite_url: str, policies: Path
) -> None:
    source = write_rows(
        policies.parent / "p.csv", [invoice_row("0001", due="2026-02-29")]
    )

    report = run_import(source, sqlite_url, policies)

    [error] = report.rejected
    assert (
        error.reason == "'2026-02-29' is not a date in the declared format DD/MM/YYYY"
    )


@pytest.mark.parametrize(
    ("column", "field", "value"),
    [
        ("amount", "amount", "１００００"),
        ("terms", "payment_terms_days", "３０"),
        ("issued", "issue_date", "０５/01/2026"),
    ],
)
def test_digits_other_than_0_to_9_are_refused(
    sqlite_url: str, policies: Path, column: str, field: str, value: str
) -> None:
    row = invoice_row("0001", due="", **{column: value})

    report = run_import(
        write_rows(policies.parent / "p.csv", [row]), sqlite_url, policies
    )

    assert [(e.field, e.value) for e in report.rejected] == [(field, value)]


def test_repeated_mapped_column_is_a_file_error_naming_both_positions(
    sqlite_url: str, policies: Path
) -> None:
    header = [*HEADER, "amount"]
    source = write_rows(
        policies.parent / "p.csv", [[*invoice_row("0001"), "5"]], header=header
    )

    with pytest.raises(PortfolioFileError) as caught:
        run_import(source, sqlite_url, policies)

    assert caught.value.row == 1
    assert "'amount' appears more than once, as columns 7 (G) and 10 (J)" in str(
        caught.value
    )


def test_repeated_unread_column_is_harmless(sqlite_url: str, policies: Path) -> None:
    header = [*HEADER, "notes", "notes"]
    source = write_rows(
        policies.parent / "p.csv", [[*invoice_row("0001"), "a", "b"]], header=header
    )

    report = run_import(source, sqlite_url, policies)

    assert report.accepted == ["0001"]


def _lines(*rows: list[str]) -> str:
    return "".join(",".join(cells) + "\r\n" for cells in [HEADER, *rows])


@pytest.mark.parametrize(
    ("broken", "after"),
    [
        # The quote never closes: everything after it would be one name.
        ('"Cliente Uno', []),
        # A stray quote further down closes it, taking in the rows between.
        ('"Cliente Uno', [invoice_row("0004", name='Cliente" Tres')]),
        # Text after a closing quote.
        ('"Cliente" Uno', []),
    ],
)
def test_broken_quote_is_a_file_error_naming_the_row_it_opened_in(
    sqlite_url: str, policies: Path, broken: str, after: list[list[str]]
) -> None:
    rows = [invoice_row("0001"), invoice_row("0002", name=broken), invoice_row("0003")]
    source = policies.parent / "p.csv"
    source.write_text(_lines(*rows, *after), encoding="utf-8")

    with pytest.raises(PortfolioFileError) as caught:
        run_import(source, sqlite_url, policies)

    assert caught.value.row == 3
    assert "line 3" in caught.value.reason and "quote" in caught.value.hint
    assert stored(sqlite_url, Invoice) == []


def test_value_on_several_lines_in_an_unread_column_keeps_every_row(
    sqlite_url: str, policies: Path
) -> None:
    header = [*HEADER, "notes"]
    rows = [
        [*invoice_row("0001"), "first line\nsecond line"],
        [*invoice_row("0002"), ""],
    ]
    source = write_rows(policies.parent / "p.csv", rows, header=header)

    report = run_import(source, sqlite_url, policies)

    assert report.accepted == ["0001", "0002"] and report.row_of["0002"] == 3


@pytest.mark.parametrize(
    ("content", "row", "shown"),
    [
        (codecs.BOM_UTF8 + _lines(invoice_row("0001")).encode(), 1, "byte order mark"),
        (
            _lines(invoice_row("0001")).replace("name", "razón").encode("utf-8"),
            1,
            "line 1 reads 'razÃ³n' for 'razón'",
        ),
        (
            _lines(invoice_row("0001", name="José Pérez")).encode("utf-8"),
            2,
            "line 2 reads 'JosÃ© PÃ©rez' for 'José Pérez'",
        ),
    ],
)
def test_utf8_file_under_a_latin1_mapping_says_so_and_what_to_do(
    sqlite_url: str, policies: Path, content: bytes, row: int, shown: str
) -> None:
    columns = {**plain_mapping()["columns"], "customer_name": "razón"}
    add_mapping(
        policies, plain_mapping(name="latin", encoding="latin-1", columns=columns)
    )
    source = policies.parent / "p.csv"
    source.write_bytes(content)

    with pytest.raises(PortfolioFileError) as caught:
        run_import(source, sqlite_url, policies, "latin")

    error = caught.value
    assert error.row == row and shown in error.reason
    assert "looks UTF-8 while mapping latin declares latin-1" in error.reason
    assert "encoding: utf-8" in error.hint and "as latin-1" in error.hint


# --- contacts ---

CONTACT_HEADER = [*HEADER, "email", "phone", "whatsapp"]


def contact_row(folio: str, **contacts: str) -> list[str]:
    """A valid row under CONTACT_HEADER with the contacts given, others empty."""
    return [*invoice_row(folio), *(contacts.get(c, "") for c in CONTACT_HEADER[-3:])]


@pytest.fixture
def contacts(policies: Path) -> Path:
    """The policies with a mapping ``contacts`` that reads e-mail, phone, WhatsApp."""
    columns = {
        **plain_mapping()["columns"],
        **{field: field for field in ("email", "phone", "whatsapp")},
    }
    add_mapping(policies, plain_mapping(name="contacts", columns=columns))
    return policies


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("email", "pago.empresa.cl", "has no '@'"),
        ("email", "pago@empresa.cl; otro@empresa.cl", "more than one '@'"),
        ("email", "pago @empresa.cl", "space"),
        ("email", "@empresa.cl", "nothing before the '@'"),
        ("email", "pago@empresa", "not a domain"),
        ("email", "pago@empresa..cl", "not a domain"),
        ("phone", "+56 9 CALL ME", "has 'C'"),
        ("phone", "1234567", "has 7 digits"),
        ("phone", "+56 9 1234 5678 9999 1", "has 16 digits"),
        ("whatsapp", "56+912345678", "'+' after the start"),
        ("whatsapp", "+56 ９ 1234 5678", "has '９'"),
    ],
)
def test_malformed_email_or_phone_is_a_row_error_naming_the_field(
    sqlite_url: str, contacts: Path, field: str, value: str, reason: str
) -> None:
    row = contact_row("0001", **{field: value})
    source = write_rows(contacts.parent / "p.csv", [row], header=CONTACT_HEADER)

    report = run_import(source, sqlite_url, contacts, "contacts")

    [error] = report.rejected
    assert (error.field, error.value) == (field, value) and reason in error.reason


def test_well_formed_contacts_are_stored(sqlite_url: str, contacts: Path) -> None:
    row = contact_row(
        "0001",
        email="cobranza@empresa.cl",
        phone="+56 (9) 1234-5678",
        whatsapp="+56912345678",
    )
    source = write_rows(contacts.parent / "p.csv", [row], header=CONTACT_HEADER)

    run_import(source, sqlite_url, contacts, "contacts")

    [customer] = stored(sqlite_url, Customer)
    assert (customer.email, customer.phone, customer.whatsapp) == (
        "cobranza@empresa.cl",
        "+56 (9) 1234-5678",
        "+56912345678",
    )


# --- what people read ---


def test_summary_counts_in_the_right_number_and_names_accept_valid(
    sqlite_url: str, policies: Path
) -> None:
    rows = [invoice_row("0001"), invoice_row("0002", amount="0")]
    held = run_import(write_rows(policies.parent / "a.csv", rows), sqlite_url, policies)
    single = run_import(
        write_rows(policies.parent / "b.csv", [invoice_row("0003")]),
        sqlite_url,
        policies,
    )

    assert "): 2 rows\n" in held.summary() and "): 1 row\n" in single.summary()
    assert "held back: 1 valid row NOT written" in held.summary()
    assert "--accept-valid to write only the valid rows" in held.summary()


def test_messages_start_each_sentence_with_a_capital_letter(
    sqlite_url: str, policies: Path
) -> None:
    rows = [invoice_row("0001", amount="0"), invoice_row("0002", due="2026")]
    report = run_import(
        write_rows(policies.parent / "a.csv", rows), sqlite_url, policies
    )
    empty = policies.parent / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(PortfolioFileError) as caught:
        run_import(empty, sqlite_url, policies)

    details = [line["detail"] for line in report.outcome_lines()]
    for text in [report.summary(), str(caught.value), *details]:
        assert not re.search(r"\. [a-z]", text), text


def test_mapping_named_with_its_file_extension_is_found(
    sqlite_url: str, policies: Path
) -> None:
    source = write_rows(policies.parent / "p.csv", [invoice_row("0001")])

    report = run_import(source, sqlite_url, policies, "plain.yaml")

    assert report.mapping == "plain" and report.accepted == ["0001"]
    with pytest.raises(MappingError, match="like sample for policies/mappings"):
        load_mapping(policies, "mappings/sample.yaml")


# --- stop facts and unknown zones ---

STOP_HEADER = [
    *HEADER,
    "zone",
    "region",
    "served",
    "insolvent",
    "FmaPago",
    "received",
    "ceded",
    "assignee",
]


def stop_fact_mapping(**defaults: Any) -> dict[str, Any]:
    """The plain mapping with the optional stop-fact, zone and region columns."""
    mapping = plain_mapping(name="facts")
    mapping["columns"] |= {
        "time_zone": "zone",
        "region": "region",
        "lawsuit_served_on": "served",
        "insolvency_opened_on": "insolvent",
        "payment_form": "FmaPago",
        "sii_received_on": "received",
        "ceded_on": "ceded",
        "ceded_to": "assignee",
    }
    if defaults:
        mapping["defaults"] = defaults
    return mapping


def stop_fact_row(folio: str, customer: str, **cells: str) -> list[str]:
    extra = {column: cells.pop(column, "") for column in STOP_HEADER[len(HEADER) :]}
    return invoice_row(folio, customer=customer, **cells) + list(extra.values())


def test_stop_facts_are_stored_and_audited_with_file_and_row(
    database_url: str, policies: Path, tmp_path: Path
) -> None:
    add_mapping(policies, stop_fact_mapping())
    path = write_rows(
        tmp_path / "facts.csv",
        [
            stop_fact_row("1001", "C-1", served="02/02/2026", insolvent="03/02/2026"),
            stop_fact_row("1002", "C-2", FmaPago="1", received="06/01/2026"),
            stop_fact_row("1003", "C-3", ceded="10/01/2026", assignee="Factor SpA"),
        ],
        header=STOP_HEADER,
    )

    report = run_import(path, database_url, policies, "facts")

    assert sorted(report.accepted) == ["1001", "1002", "1003"]
    customers = {c.customer_id: c for c in stored(database_url, Customer)}
    assert customers["C-1"].lawsuit_served_on == date(2026, 2, 2)
    assert customers["C-1"].insolvency_opened_on == date(2026, 2, 3)
    assert customers["C-2"].lawsuit_served_on is None
    cash = stored_invoice(database_url, "1002")
    assert (cash.payment_form, cash.sii_received_on) == (1, date(2026, 1, 6))
    ceded = stored_invoice(database_url, "1003")
    assert (ceded.ceded_on, ceded.ceded_to) == (date(2026, 1, 10), "Factor SpA")
    audit = {
        (r.customer_id, r.invoice_number, r.fact): r
        for r in stored(database_url, StopFactRecord)
    }
    assert set(audit) == {
        ("C-1", None, "lawsuit_served"),
        ("C-1", None, "insolvency_opened"),
        ("C-2", "1002", "payment_form"),
        ("C-2", "1002", "sii_received"),
        ("C-3", "1003", "ceded"),
    }
    assert audit[("C-3", "1003", "ceded")].value == "2026-01-10 to Factor SpA"
    assert audit[("C-1", None, "lawsuit_served")].source == "import facts.csv row 2"


def test_a_payment_form_other_than_1_2_or_3_names_file_row_and_field(
    database_url: str, policies: Path, tmp_path: Path
) -> None:
    add_mapping(policies, stop_fact_mapping())
    path = write_rows(
        tmp_path / "facts.csv",
        [
            stop_fact_row("1001", "C-1", FmaPago="2"),
            stop_fact_row("1002", "C-1", FmaPago="4"),
            stop_fact_row("1003", "C-1", assignee="Factor SpA"),
        ],
        header=STOP_HEADER,
    )

    report = run_import(path, database_url, policies, "facts")

    assert report.accepted == []
    errors = {error.row: error for error in report.rejected}
    assert errors[3].field == "payment_form"
    message = errors[3].describe("facts.csv")
    assert "facts.csv row 3, column 'FmaPago' (payment_form) '4'" in message
    assert "1 cash, 2 credit, 3 free" in message
    assert errors[4].field == "ceded_on"
    assert "Write the date of the cession" in errors[4].describe("facts.csv")
    assert stored(database_url, Invoice) == []


def test_a_customer_without_zone_or_one_zone_region_is_stored_flagged(
    database_url: str, policies: Path, tmp_path: Path
) -> None:
    add_mapping(policies, stop_fact_mapping(time_zone=None))
    path = write_rows(
        tmp_path / "zones.csv",
        [
            stop_fact_row("1001", "ZONED", zone="America/Punta_Arenas"),
            stop_fact_row("1002", "SOUTH", region="Magallanes"),
            stop_fact_row("1003", "COAST", region="Valparaíso"),
            stop_fact_row("1004", "NOWHERE"),
        ],
        header=STOP_HEADER,
    )

    run_import(path, database_url, policies, "facts")

    customers = {c.customer_id: c for c in stored(database_url, Customer)}
    assert customers["ZONED"].time_zone == "America/Punta_Arenas"
    assert not customers["ZONED"].zone_unknown
    assert customers["SOUTH"].time_zone == "America/Punta_Arenas"
    assert not customers["SOUTH"].zone_unknown
    # Rapa Nui belongs to Valparaíso: the region alone does not say which clock applies.
    assert customers["COAST"].time_zone_candidates == "America/Santiago,Pacific/Easter"
    assert customers["NOWHERE"].zone_unknown
    assert customers["NOWHERE"].time_zone_candidates == (
        "America/Santiago,America/Punta_Arenas,America/Coyhaique,Pacific/Easter"
    )
    assert customers["NOWHERE"].time_zone == "America/Santiago"
