"""starter.py reconcile: a bank statement's credits matched to open invoices and recorded."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import starter
from receivables.bank_matching import folio_tokens
from receivables.case import Stage
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.operator_actions import OperatorAction
from receivables.planning import local_date_of
from receivables.reconciliation import ReconciledMovement
from receivables.store import (
    InvoiceStatus,
    Payment,
    as_utc,
    find_invoice,
    make_engine,
    session_scope,
)
from tests.case_helpers import (
    SANTIAGO,
    add_invoice,
    advance_to,
    commands_use_store,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
)
from workflows.invoice import InvoiceWorkflow

POLICIES = Path(__file__).resolve().parent.parent / "policies"
BANK = Path(__file__).resolve().parents[2] / "shared" / "data" / "bank"
FIRST, SECOND = "0000000042", "0000000043"
BY = ["--by", "exec-01"]
HEADER = "Fecha,Descripción,Canal o Sucursal,Cargos (CLP),Abonos (CLP),Saldo (CLP)"


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two open invoices of 1.250.000 CLP of one customer; Temporal is a closed port."""
    commands_use_store(monkeypatch, database_url, tmp_path)
    engine = make_engine(database_url)
    sync_governance(engine, "test", POLICIES / GOVERNANCE_FILE)
    for folio in (FIRST, SECOND):
        add_invoice(
            engine,
            invoice_number=folio,
            issue_date=date(2025, 12, 1),
            due_date=date(2025, 12, 31),
            amount_minor=1_250_000,
            customer_id="76086428-5",
            customer_name="Comercial Andes SpA",
        )
    return database_url


def cartola(tmp_path: Path, *credits: str, booked: date = date(2026, 1, 3)) -> Path:
    """A cartola CSV of credits written as 'description,amount', booked on one day."""
    path = tmp_path / "cartola.csv"
    rows = [
        f"{booked:%d/%m/%Y},{line.rsplit(',', 1)[0]},Internet,,{line.rsplit(',', 1)[1]},0"
        for line in credits
    ]
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def payments(url: str) -> list[tuple[str, int]]:
    with session_scope(make_engine(url)) as session:
        return sorted(
            (p.invoice_number, p.amount_minor) for p in session.exec(select(Payment))
        )


def outcomes(url: str) -> list[tuple[str, str]]:
    with session_scope(make_engine(url)) as session:
        rows = session.exec(select(ReconciledMovement)).all()
        return sorted((r.place, r.outcome) for r in rows)


def balance(url: str, folio: str) -> int:
    with session_scope(make_engine(url)) as session:
        invoice = find_invoice(session, "test", folio)
    assert invoice is not None
    return invoice.balance_minor


def test_a_folio_in_the_text_is_applied_as_a_partial_payment_with_who_recorded_it(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"Pago FACTURA N° {FIRST},400000")

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    # Recorded; its case cannot be told here (Temporal is a closed loopback port).
    assert code == 2
    assert (
        f"row 2 (2026-01-03) 400.000 CLP -> {FIRST} 400.000 CLP: folio {FIRST}" in out
    )
    assert "partial payment (850.000 CLP left)" in out
    assert payments(store) == [(FIRST, 400_000)]
    assert balance(store, FIRST) == 850_000
    assert outcomes(store) == [("row 2", "applied")]
    with session_scope(make_engine(store)) as session:
        action = session.exec(select(OperatorAction)).one()
    assert action.person_id == "exec-01" and action.reason.startswith("BANK:H")


def test_running_the_same_statement_again_records_nothing_twice(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"F-{FIRST},400000", "Pago varios,1")

    starter.main(["reconcile", str(path), *BY])
    capsys.readouterr()
    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert "cartola.csv: 2 movements: 0 applied, 1 unmatched" in out
    assert "1 already reconciled" in out
    assert payments(store) == [(FIRST, 400_000)]
    assert balance(store, FIRST) == 850_000
    assert outcomes(store) == [("row 2", "applied"), ("row 3", "unmatched")]


def test_dry_run_shows_the_match_and_records_nothing(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"Fact {FIRST},400000")

    code = starter.main(["reconcile", str(path), "--dry-run", *BY])

    out = capsys.readouterr().out
    assert code == 0
    assert f"-> {FIRST} 400.000 CLP" in out and "dry run: nothing was recorded" in out
    assert payments(store) == [] and outcomes(store) == []


def test_the_payers_rut_and_an_exact_open_balance_identify_the_invoice(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number="0000000044",
        issue_date=date(2025, 12, 1),
        due_date=date(2025, 12, 31),
        amount_minor=300_000,
        customer_id="76086428-5",
    )
    path = cartola(tmp_path, "Transferencia de 76.086.428-5,300000")

    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert "-> 0000000044 300.000 CLP: payer RUT 76086428-5" in out
    assert payments(store) == [("0000000044", 300_000)]


def test_two_open_invoices_of_the_same_balance_leave_the_line_to_a_person(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Transf de Comercial Andes SpA,1250000")

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert "customer 76086428-5 has 2 open invoices of exactly this amount" in out
    assert f"candidates: {FIRST} (1.250.000 CLP), {SECOND} (1.250.000 CLP)" in out
    assert "starter.py pay FOLIO AMOUNT --reference BANK:H" in out
    assert "1 unmatched: find each one's invoice" in out
    assert payments(store) == []
    assert outcomes(store) == [("row 2", "unmatched")]


def test_a_rut_with_a_wrong_check_digit_identifies_nobody(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Transferencia 76.086.428-4,1250000")

    code = starter.main(["reconcile", str(path), *BY])

    assert code == 1
    assert "the payer is no customer of the store" in capsys.readouterr().out


def test_more_than_the_open_balance_is_refused_unless_overpayment_is_allowed(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"F {FIRST},1300000")

    refused = starter.main(["reconcile", str(path), *BY])
    first = capsys.readouterr().out
    allowed = starter.main(["reconcile", str(path), "--allow-overpayment", *BY])
    second = capsys.readouterr().out

    assert refused == 1
    assert "more than the open balance of 0000000042 (1.250.000 CLP)" in first
    assert "--allow-overpayment" in first
    assert allowed == 2  # applied; its case cannot be told here
    assert "overpaid by 50.000 CLP" in second
    assert payments(store) == [(FIRST, 1_300_000)]


def test_one_credit_naming_two_folios_whose_balances_sum_to_it_is_split(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"Pago F-{FIRST} y F-{SECOND},2500000")

    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert f"-> {FIRST} 1.250.000 CLP, {SECOND} 1.250.000 CLP" in out
    assert payments(store) == [(FIRST, 1_250_000), (SECOND, 1_250_000)]
    with session_scope(make_engine(store)) as session:
        references = sorted(p.reference for p in session.exec(select(Payment)))
    assert [r.rsplit("/", 1)[1] for r in references] == [FIRST, SECOND]


def test_two_folios_whose_balances_do_not_sum_to_the_credit_are_unmatched(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"Pago F-{FIRST} y F-{SECOND},2000000")

    code = starter.main(["reconcile", str(path), *BY])

    assert code == 1
    assert "balances sum to 2.500.000 CLP, not this amount" in capsys.readouterr().out
    assert payments(store) == []


def test_a_credit_in_another_currency_than_its_invoice_is_unmatched(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bank.940"
    path.write_text(
        ":20:S1\n:25:CL0012345\n:28C:1\n:60F:C260102EUR0,\n"
        f":61:2601030103C100,00NTRFNONREF//B-77\n:86:/REMI/USTD//Factura {FIRST}/\n"
        ":62F:C260103EUR100,\n"
    )

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert f"a credit in EUR, but invoice {FIRST} is in CLP" in out
    assert payments(store) == []


def test_debits_are_skipped_and_returns_listed_for_a_person_from_the_ing_statement(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(["reconcile", str(BANK / "oca_test-ing.940"), *BY])

    out = capsys.readouterr().out
    assert (
        "oca_test-ing.940: 8 movements: 0 applied, 3 unmatched, 3 skipped, 2 returned"
        in (out)
    )
    assert (
        "line 17 (2014-02-20) 1,57 EUR: a returned payment from 'J.Janssen': check "
        "whether it reverses" in (out)
    )
    assert code == 1
    assert payments(store) == []


def test_the_real_cartola_matches_a_payer_by_name_and_exact_balance(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_invoice(
        make_engine(store),
        invoice_number="5001",
        issue_date=date(2025, 12, 1),
        due_date=date(2025, 12, 31),
        amount_minor=190_578,
        customer_id="C-FCV",
        customer_name="FARMACIA CRUZ VERDE",
    )
    path = BANK / "bancochile_cartola_sample_xlsx-format.xls"

    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert "row 29 (2026-01-03) 190.578 CLP -> 5001 190.578 CLP: payer name" in out
    # Its description is the payer's name alone, shown once, as the text.
    assert "row 30 (2026-01-05) 78.462 CLP 'Farmacia Cruz Verde'" in out
    assert "has no open invoice of exactly this amount" in out
    assert "10 movements: 1 applied, 1 unmatched, 8 skipped, 0 returned" in out
    assert payments(store) == [("5001", 190_578)]


def test_the_binary_xls_is_refused_saying_what_to_do(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(
        ["reconcile", str(BANK / "bancochile_cartola_binary_sample.xls"), *BY]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert "bancochile_cartola_binary_sample.xls file: is a legacy binary Excel" in err
    assert "as .xlsx or CSV" in err
    assert outcomes(store) == []


def test_a_bad_line_refuses_the_whole_file_naming_row_and_column(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, f"F {FIRST},400000", f"F {SECOND},4x")

    code = starter.main(["reconcile", str(path), *BY])

    assert code == 2
    assert "cartola.csv row 3, column Abonos: '4x'" in capsys.readouterr().err
    assert payments(store) == [] and outcomes(store) == []


def test_an_unmatched_line_recorded_by_hand_with_its_reference_is_resolved(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Pago sin detalle,100000")
    starter.main(["reconcile", str(path), *BY])
    with session_scope(make_engine(store)) as session:
        row = session.exec(select(ReconciledMovement)).one()
    reference = f"BANK:{row.bank_transaction_id}"
    starter.main(["pay", FIRST, "100000", "--reference", reference, *BY])
    capsys.readouterr()
    before = datetime.now(UTC)

    code = starter.main(["reconcile", "--list-unmatched"])

    out = capsys.readouterr().out
    assert code == 0
    assert (
        "0 unmatched, 0 returned to check, 1 resolved by pay since the last look" in out
    )
    assert outcomes(store) == [("row 2", "applied")]
    with session_scope(make_engine(store)) as session:
        resolved = session.exec(select(ReconciledMovement)).one()
    # Reconciled when the person's payment was found, not when the line was first read.
    assert as_utc(resolved.reconciled_at) >= before


def test_the_camt053_split_credit_in_chf_is_reported_unmatched_not_crashing(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = BANK / "oca_test-camt053-txdtls.xml"

    code = starter.main(["reconcile", str(path), "--dry-run", *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert (
        "entry 1, detail 1 (2017-03-22) 2187.00 CHF from 'Banque Cantonale Vaudoise'"
        in out
    )
    assert "2 movements: 0 applied, 2 unmatched" in out


# --- told to live cases ---


REMINDER = {
    "id": "R+1",
    "offset_days": 1,
    "channel": "email",
    "template": "overdue-first",
}


def numeric_folio() -> str:
    """A fresh folio of ten digits, which the matcher reads from remittance text."""
    return f"{uuid.uuid4().int % 10**10:010d}"


async def signals_heard(handle: WorkflowHandle[Any, Any]) -> int:
    """How many payment signals a case's history holds."""
    history = await handle.fetch_history()
    return sum(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name
        == "record_payment"
        for event in history.events
    )


async def test_reconcile_tells_live_cases_and_a_rerun_tells_them_again_paying_nothing_twice(
    time_skipping_env: WorkflowEnvironment,
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = time_skipping_env
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_DATABASE_URL", database_url)
    monkeypatch.setenv("DUNNING_TENANT", "test")
    monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    sync_governance(engine, "test", POLICIES / GOVERNANCE_FILE)
    now = await env.get_current_time()
    # The store refuses a payment booked after the wall clock, and earlier tests may have
    # moved the test server's clock ahead: the bank books on today's real date.
    booked = local_date_of(datetime.now(UTC), SANTIAGO)
    due = local_date_of(now, SANTIAGO) + timedelta(days=5)
    paid, partly = numeric_folio(), numeric_folio()
    async with running_worker(env.client, engine) as (_, queue):
        runs = {}
        for folio in (paid, partly):
            invoice, customer = add_invoice(
                engine,
                invoice_number=folio,
                issue_date=booked - timedelta(days=30),
                due_date=due,
                amount_minor=250_000,
            )
            policy = policy_with_steps(REMINDER)
            runs[folio] = await open_case(
                env.client, engine, invoice, customer, policy, queue, now
            )
        path = cartola(
            tmp_path,
            f"Pago FACTURA N° {paid},250000",
            f"Abono factura {partly},100000",
            booked=booked,
        )

        first = await asyncio.to_thread(starter.main, ["reconcile", str(path), *BY])
        first_out = capsys.readouterr().out
        ended = await runs[paid].handle.result()
        state = await runs[partly].handle.query(InvoiceWorkflow.state)
        again = await asyncio.to_thread(starter.main, ["reconcile", str(path), *BY])
        again_out = capsys.readouterr().out
        state_again = await runs[partly].handle.query(InvoiceWorkflow.state)
        heard = await signals_heard(runs[partly].handle)
        # Past the day the paid invoice's reminder would have gone out.
        await advance_to(env, santiago(due + timedelta(days=2), time(12)))

    assert (first, again) == (0, 0)
    assert "2 movements: 2 applied, 0 unmatched" in first_out
    assert "0 applied, 0 unmatched, 0 skipped, 0 returned, 2 already reconciled" in (
        again_out
    )
    assert ended.stage is Stage.PAID and ended.balance_minor == 0
    assert state.balance_minor == state_again.balance_minor == 150_000
    assert heard == 2  # told on each run; the case counted the payment once
    assert payments(database_url) == sorted([(paid, 250_000), (partly, 100_000)])
    # The open one's reminder went out on that day; the paid one's never did.
    assert [m.invoice_number for m in runs[partly].outbox()] == [partly]
    assert runs[paid].outbox() == []


# --- a split recorded only in part ---


LATER = (
    "0000000045"  # issued after the statement's day: the store refuses paying it then
)


def reference_of(url: str) -> str:
    with session_scope(make_engine(url)) as session:
        row = session.exec(select(ReconciledMovement)).one()
    return f"BANK:{row.bank_transaction_id}"


def test_a_split_recorded_only_in_part_stays_unmatched_with_what_is_left(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_invoice(
        make_engine(store),
        invoice_number=LATER,
        issue_date=date(2026, 2, 1),
        due_date=date(2026, 3, 1),
        amount_minor=100_000,
        customer_id="76086428-5",
    )
    path = cartola(tmp_path, f"Pago facturas {FIRST} {LATER},1350000")

    starter.main(["reconcile", str(path), *BY])
    first = capsys.readouterr().out
    again = starter.main(["reconcile", str(path), *BY])
    second = capsys.readouterr().out
    listed = starter.main(["reconcile", "--list-unmatched"])
    listing = capsys.readouterr().out

    for out in (first, second, listing):
        assert (
            f"1.250.000 CLP recorded under its reference ({FIRST} 1.250.000 CLP)" in out
        )
        assert "100.000 CLP left" in out
    assert "add /FOLIO to the reference for each invoice" in first
    # The recorded part's case is told again on the rerun; here it cannot be (exit 2).
    assert again == 2 and listed == 1
    assert "1 unmatched, 0 returned to check, 0 resolved by pay" in listing
    assert outcomes(store) == [("row 2", "unmatched")]
    with session_scope(make_engine(store)) as session:
        recorded = session.exec(select(Payment)).one()
    assert recorded.reference == f"{reference_of(store)}/{FIRST}"


def test_a_line_recorded_by_hand_for_less_than_its_amount_is_not_resolved(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Pago sin detalle,300000")
    starter.main(["reconcile", str(path), *BY])
    reference = reference_of(store)
    starter.main(["pay", FIRST, "200000", "--reference", f"{reference}/{FIRST}", *BY])
    capsys.readouterr()

    partly = starter.main(["reconcile", "--list-unmatched"])
    partly_out = capsys.readouterr().out
    starter.main(["pay", SECOND, "100000", "--reference", f"{reference}/{SECOND}", *BY])
    capsys.readouterr()
    whole = starter.main(["reconcile", "--list-unmatched"])
    whole_out = capsys.readouterr().out

    assert partly == 1 and "100.000 CLP left" in partly_out
    assert "1 unmatched, 0 returned to check, 0 resolved by pay" in partly_out
    assert (
        whole == 0
        and "0 unmatched, 0 returned to check, 1 resolved by pay" in whole_out
    )
    assert outcomes(store) == [("row 2", "applied")]


# --- what is no folio ---


@pytest.mark.parametrize(
    "text",
    [
        "Arriendo noviembre 2026 Comercial Andes",
        "Pago cuota 11/2026",
        "Cuota 2026-11",
        "Mensualidad 03-2026",
        "Pago de diciembre de 2025",
        "Rent for Nov. 2026",
    ],
)
def test_a_year_or_a_month_and_year_is_never_a_folio(text: str) -> None:
    assert folio_tokens(text) & {"2025", "2026"} == set()


def test_a_year_written_as_a_folio_after_an_invoice_word_still_counts() -> None:
    assert "2026" in folio_tokens("Pago F 123 y F 2026")


def test_a_folio_of_another_customer_than_the_identified_payer_is_left_to_a_person(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_invoice(
        make_engine(store),
        invoice_number="2026",
        issue_date=date(2025, 12, 1),
        due_date=date(2025, 12, 31),
        amount_minor=100_000,
        customer_id="12345678-5",
        customer_name="José Pérez",
    )
    path = cartola(tmp_path, "Transferencia de 76.086.428-5 factura 2026,100000")

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert "folio 2026 is customer 12345678-5's, but the payer RUT 76086428-5" in out
    assert payments(store) == []


def set_status(url: str, folio: str, status: InvoiceStatus) -> None:
    with session_scope(make_engine(url)) as session:
        invoice = find_invoice(session, "test", folio)
        assert invoice is not None
        invoice.status = status
        session.add(invoice)


def test_a_credit_naming_a_closed_folio_and_an_open_one_is_left_to_a_person(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_status(store, SECOND, InvoiceStatus.WRITTEN_OFF)
    path = cartola(tmp_path, f"Pago facturas {SECOND} y {FIRST},100000")

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert f"the text also names invoice {SECOND}, which is written off" in out
    assert "written_off" not in out
    assert payments(store) == []


@pytest.mark.parametrize(
    ("booked", "refusal"),
    [
        (date(2025, 11, 30), f"is before invoice {FIRST} was issued"),
        (date.today() + timedelta(days=30), "is in the future"),
    ],
)
def test_a_dry_run_refuses_what_the_real_run_would_refuse(
    store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    booked: date,
    refusal: str,
) -> None:
    path = cartola(tmp_path, f"F {FIRST},400000", booked=booked)

    dry = starter.main(["reconcile", str(path), "--dry-run", *BY])
    dry_out = capsys.readouterr().out
    real = starter.main(["reconcile", str(path), *BY])
    real_out = capsys.readouterr().out

    assert dry == real == 1
    for out in (dry_out, real_out):
        assert "0 applied, 1 unmatched" in out and refusal in out


# --- returns ---


def mt940(tmp_path: Path, name: str, line_61: str, line_86: str) -> Path:
    """An MT940 statement in CLP of one movement, its closing balance that movement."""
    mark, amount = re.fullmatch(r"[0-9]{10}(RC|RD|C|D)([0-9]+),.*", line_61).groups()
    # The reader checks opening plus movements against closing: C and RD bring money in.
    closing = ("C" if mark in ("C", "RD") else "D") + f"260103CLP{amount},"
    path = tmp_path / name
    path.write_text(
        ":20:S1\n:25:CL0012345\n:28C:1\n:60F:C260102CLP0,\n"
        f":61:{line_61}\n:86:{line_86}\n:62F:{closing}\n"
    )
    return path


def test_a_returned_line_waits_for_a_person_naming_the_payment_it_may_undo(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remittance = f"/NAME/COMERCIAL ANDES SPA/REMI/USTD//Factura {FIRST}"
    paid = mt940(tmp_path, "paid.940", "2601030103C400000,NTRFNONREF//B-1", remittance)
    back = mt940(
        tmp_path,
        "back.940",
        "2601040104RC400000,NTRFNONREF//B-2",
        "/RTRN/AC04" + remittance,
    )
    starter.main(["reconcile", str(paid), *BY])
    capsys.readouterr()

    code = starter.main(["reconcile", str(back), *BY])
    out = capsys.readouterr().out
    listed = starter.main(["reconcile", "--list-unmatched"])
    listing = capsys.readouterr().out
    with session_scope(make_engine(store)) as session:
        returned = session.exec(
            select(ReconciledMovement).where(ReconciledMovement.outcome == "returned")
        ).one()
    checked = starter.main(
        ["reconcile", "--checked", returned.bank_transaction_id, *BY]
    )
    capsys.readouterr()
    after = starter.main(["reconcile", "--list-unmatched"])
    after_out = capsys.readouterr().out

    assert code == 1 and listed == 1
    for shown in (out, listing):
        assert "from 'COMERCIAL ANDES SPA'" in shown and f"Factura {FIRST}" in shown
        assert f"{FIRST} 400.000 CLP under BANK:" in shown
    assert checked == 0 and after == 0
    assert "0 unmatched, 0 returned" in after_out
    with session_scope(make_engine(store)) as session:
        kinds = [a.kind for a in session.exec(select(OperatorAction))]
    assert kinds == ["payment", "return_checked"]


def test_one_reconcile_run_makes_one_engine_however_many_lines(
    store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An engine is a pool of connections: one per line would exhaust PostgreSQL's clients.
    made: list[Engine] = []

    def counted(url: str) -> Engine:
        made.append(make_engine(url))
        return made[-1]

    monkeypatch.setattr(starter, "make_engine", counted)
    lines = [f"Abono F {folio},1000" for folio in (FIRST, SECOND) for _ in range(10)]
    path = cartola(tmp_path, *lines)

    starter.main(["reconcile", str(path), *BY])

    assert "20 applied" in capsys.readouterr().out
    assert len(made) == 1


def test_the_untold_cases_are_named_by_the_reports_rows_once_each_and_briefly(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = f"Pago F-{FIRST} y F-{SECOND},2500000"
    path = cartola(tmp_path, *[f"Pago sin detalle {n},1" for n in range(30)], split)

    code = starter.main(["reconcile", str(path), *BY])

    err = capsys.readouterr().err
    assert code == 2
    assert "row 32 is recorded in the store, but its case was not told" in err

    add_invoice(
        make_engine(store),
        invoice_number="0000000046",
        issue_date=date(2025, 12, 1),
        due_date=date(2025, 12, 31),
        amount_minor=1_000_000,
        customer_id="76086428-5",
    )
    many = cartola(tmp_path, *["Abono F 0000000046,1000" for _ in range(40)])
    starter.main(["reconcile", str(many), *BY])

    err = capsys.readouterr().err
    assert "rows 2–41 (40 rows) are recorded in the store" in err
    assert len(err) < 600


def test_a_run_that_finds_its_line_recorded_by_a_concurrent_run_says_already_reconciled(
    store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = cartola(tmp_path, f"Pago F {FIRST},400000", "Pago sin detalle,1")
    starter.main(["reconcile", str(path), *BY])
    capsys.readouterr()
    # The second run read the store before the first one committed: nothing held yet.
    monkeypatch.setattr(starter, "reconciled_before", lambda *_: {})
    monkeypatch.setattr(starter, "payments_of", lambda *_: [])

    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert "0 applied, 1 unmatched" in out and "1 already reconciled" in out
    assert payments(store) == [(FIRST, 400_000)]
    assert outcomes(store) == [("row 2", "applied"), ("row 3", "unmatched")]


# --- wording and folios written short ---


def test_a_folio_written_without_its_leading_zeros_matches_its_one_open_invoice(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Pago factura 42,400000")

    starter.main(["reconcile", str(path), *BY])

    assert f"-> {FIRST} 400.000 CLP" in capsys.readouterr().out
    assert payments(store) == [(FIRST, 400_000)]


def test_a_folio_without_zeros_that_fits_several_invoices_lists_them_for_a_person(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_invoice(
        make_engine(store),
        invoice_number="00042",
        issue_date=date(2025, 12, 1),
        due_date=date(2025, 12, 31),
        amount_minor=400_000,
        customer_id="76086428-5",
    )
    path = cartola(tmp_path, "Pago factura 42,400000")

    code = starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert code == 1
    assert "42 is no folio as written" in out
    assert f"candidates: {FIRST}, 00042" in out
    assert payments(store) == []


def test_the_payer_is_shown_only_when_the_cartola_names_a_sender(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cartola(tmp_path, "Pago 7777,1", "Traspaso de: Juan Soto,2")

    starter.main(["reconcile", str(path), *BY])

    out = capsys.readouterr().out
    assert "from 'Pago 7777'" not in out
    assert "from 'Juan Soto'" in out


def test_statement_lines_not_told_are_named_as_the_report_names_them() -> None:
    assert starter._places_briefly(["line 5", "line 7", "line 9"]) == "lines 5, 7, 9"
    assert starter._places_briefly(["entry 1, detail 2"]) == "entry 1, detail 2"
