"""SII DTE and AEC files set payment forms and cessions, and the gate then stops dunning."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

import starter
from receivables.contact_gate import GateResult, gate_contact
from receivables.contact_rules import ContactDecision, Verdict
from receivables.ledger import ContactKey
from receivables.sii_documents import (
    Cession,
    SiiDocumentError,
    SiiImportReport,
    TaxInvoice,
    import_sii_documents,
    read_sii_file,
)
from receivables.store import (
    Invoice,
    StopFactRecord,
    find_customer,
    find_invoice,
    make_engine,
    session_scope,
)
from tests.case_helpers import add_invoice

CASH = "DTE--60910000-1--33--2336600.xml"  # Universidad de Chile, FmaPago 1
CREDIT = "DTE--76399752-9--33--25568.xml"  # FmaPago 2, later ceded
CEDED = "AEC--76399752-9--33--25568--SEQ-1.xml"  # the cession of folio 25568
NOT_STORED = "DTE--76354771-K--33--170.xml"
CREDIT_NOTE = "DTE--96670340-7--61--110616.xml"  # type 61: not an invoice


@pytest.fixture
def sii_dir(shared_dir: Path) -> Path:
    """The real SII samples, read in place: they are never copied into the project."""
    return shared_dir / "data" / "sii_dte"


def store_invoices(engine: Engine) -> None:
    """The two invoices of the samples, owed by the buyers (RUT) the documents name."""
    for folio, buyer, total in (
        ("2336600", "76555835-2", 10_642),
        ("25568", "96874030-K", 230_992),
    ):
        add_invoice(
            engine,
            invoice_number=folio,
            issue_date=date(2019, 3, 29),
            due_date=date(2019, 4, 28),
            amount_minor=total,
            customer_id=buyer,
        )


def test_a_signed_dte_and_an_aec_with_namespaces_are_read(sii_dir: Path) -> None:
    [credit] = read_sii_file(sii_dir / CREDIT)
    [cash] = read_sii_file(sii_dir / CASH)
    cessions = read_sii_file(sii_dir / CEDED)

    assert isinstance(credit, TaxInvoice) and isinstance(cash, TaxInvoice)
    assert (credit.document.folio, credit.document.buyer_rut) == ("25568", "96874030-K")
    assert (credit.issued_on, credit.payment_form, credit.total) == (
        date(2019, 3, 29),
        2,
        230_992,
    )
    assert (cash.payment_form, cash.total) == (1, 10_642)
    [cession] = cessions
    assert isinstance(cession, Cession)
    assert cession.document.folio == "25568" and cession.sequence == 1
    assert cession.assignee == "ST CAPITAL S.A. (76389992-6)"
    assert cession.ceded_on == date(2019, 4, 4)


def test_a_credit_note_is_refused_naming_the_file_and_what_to_do(
    sii_dir: Path,
) -> None:
    with pytest.raises(SiiDocumentError) as refused:
        read_sii_file(sii_dir / CREDIT_NOTE)

    assert CREDIT_NOTE in str(refused.value)
    assert "61 (nota de crédito electrónica)" in str(refused.value)
    assert "pay --credit" in str(refused.value)


def test_import_sets_the_facts_refuses_bad_files_and_keeps_what_was_applied(
    engine: Engine, sii_dir: Path, tmp_path: Path
) -> None:
    store_invoices(engine)
    not_xml = tmp_path / "scan.xml"
    not_xml.write_bytes(b"%PDF-1.4 a printed invoice")
    hostile = tmp_path / "entities.xml"
    hostile.write_text('<?xml version="1.0"?><!DOCTYPE DTE [<!ENTITY a "aa">]><DTE/>')
    files = [
        sii_dir / CASH,
        not_xml,
        sii_dir / CREDIT,
        sii_dir / CEDED,
        sii_dir / NOT_STORED,
        sii_dir / CREDIT_NOTE,
        hostile,
    ]

    report = import_sii_documents(engine, "test", files, recorded_by="ana")
    again = import_sii_documents(engine, "test", files, recorded_by="ana")

    refused = {error.path.name: error.problem for error in report.refused}
    assert set(refused) == {not_xml.name, NOT_STORED, CREDIT_NOTE, hostile.name}
    assert "not well-formed XML" in refused[not_xml.name]
    assert (
        "folio 170" in refused[NOT_STORED] and "not in the store" in refused[NOT_STORED]
    )
    assert "DTD" in refused[hostile.name]
    assert len(report.applied) == 3
    # Importing the same files again changes nothing and records nothing twice.
    assert again.applied == [] and len(again.refused) == 4
    with session_scope(engine) as session:
        cash = find_invoice(session, "test", "2336600")
        ceded = find_invoice(session, "test", "25568")
        audit = list(session.exec(select(StopFactRecord)))
    assert cash is not None and ceded is not None
    assert cash.payment_form == 1 and ceded.payment_form == 2
    assert (ceded.ceded_on, ceded.ceded_to) == (
        date(2019, 4, 4),
        "ST CAPITAL S.A. (76389992-6)",
    )
    assert sorted((r.invoice_number, r.fact) for r in audit) == [
        ("2336600", "payment_form"),
        ("25568", "ceded"),
        ("25568", "payment_form"),
    ]
    assert all(r.source.startswith("sii ") and r.recorded_by == "ana" for r in audit)
    # The contact gate reads the facts: neither invoice is dunned under Ley 19.983.
    assert "CL-B-11" in b2b_decision(engine, cash).reason
    assert "CL-B-13" in b2b_decision(engine, ceded).reason


def b2b_decision(engine: Engine, invoice: Invoice) -> ContactDecision:
    with session_scope(engine) as session:
        customer = find_customer(session, "test", invoice.customer_id)
    assert customer is not None
    at = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Santiago
    result = gate_contact(
        engine,
        ContactKey("test", invoice.invoice_number, "R+1", "email", "x@example.invalid"),
        customer=customer,
        jurisdiction="cl.b2b",
        policy=("preventive-b2b", 1),
        planned_at=at,
        now=at,
    )
    assert isinstance(result, GateResult)
    assert result.decision.verdict is Verdict.DENY
    return result.decision


def test_a_document_of_another_buyer_changes_nothing(
    engine: Engine, sii_dir: Path
) -> None:
    add_invoice(
        engine,
        invoice_number="25568",
        issue_date=date(2019, 3, 29),
        due_date=date(2019, 4, 28),
        amount_minor=230_992,
        customer_id="11111111-1",
    )

    report = import_sii_documents(engine, "test", [sii_dir / CEDED], recorded_by="x")

    [error] = report.refused
    assert "owed by 11111111-1" in error.problem and "96874030-K" in error.problem
    with session_scope(engine) as session:
        invoice = find_invoice(session, "test", "25568")
    assert invoice is not None and invoice.ceded_on is None


def test_import_sii_command_prints_what_it_applied_and_fails_on_a_refused_file(
    sii_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_TENANT", "test")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    assert starter.main(["sync-people"]) == 0
    # No invoice stored yet: the file is refused.
    assert starter.main(["import-sii", str(sii_dir / CASH), "--by", "exec-02"]) == 2
    engine = make_engine(f"sqlite:///{tmp_path / 'dunning.sqlite'}")
    store_invoices(engine)

    code = starter.main(["import-sii", str(sii_dir / CASH), "--by", "exec-02"])

    output = capsys.readouterr()
    assert code == 0
    assert "2336600 payment_form 1" in output.out
    assert "folio 2336600" in output.out and "not in the store" in output.out


def test_the_summary_counts_one_fact_and_one_file_in_the_singular() -> None:
    refused = SiiDocumentError(
        Path("nc.xml"), "a credit note", "record it with pay --credit"
    )
    one_each = SiiImportReport(applied=["2336600 payment_form 1"], refused=[refused])

    assert one_each.summary().splitlines()[-1] == (
        "1 fact applied, 1 file refused; the refused file changed nothing"
    )
    assert SiiImportReport().summary() == "0 facts applied, 0 files refused"
