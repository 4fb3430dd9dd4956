"""Operator commands given bad input, or cut off between the store and Temporal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select
from temporalio.service import RPCError, RPCStatusCode

import starter
from receivables.cases import TemporalUnreachable
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.planning import CLOCK_SKEW_ALLOWED
from receivables.schema import migrate
from receivables.stop_facts import StopFact, StopFactRefused, refuse_a_future_date
from receivables.store import (
    InvoiceStatus,
    Payment,
    StopFactRecord,
    find_invoice,
    make_engine,
    session_scope,
)
from tests.case_helpers import add_invoice

POLICIES = Path(__file__).resolve().parent.parent / "policies"
FOLIO = "0000000042"
BY = ("--by", "exec-01")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store with one open invoice; Temporal is a closed loopback port."""
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_TENANT", "test")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    url = f"sqlite:///{tmp_path / 'dunning.sqlite'}"
    migrate(url)
    sync_governance(make_engine(url), "test", POLICIES / GOVERNANCE_FILE)
    add_invoice(
        make_engine(url),
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    return url


def main(argv: list[str]) -> int:
    """starter.main, with an uncaught error counted as exit 1 like the interpreter would."""
    try:
        return starter.main(argv)
    except Exception:
        return 1


def movements(url: str) -> list[str]:
    with session_scope(make_engine(url)) as session:
        return [row.reference for row in session.exec(select(Payment))]


def status(url: str) -> str:
    with session_scope(make_engine(url)) as session:
        invoice = find_invoice(session, "test", FOLIO)
        assert invoice is not None
        return invoice.status


def test_an_instant_out_of_range_is_a_user_mistake(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("pay", FOLIO, "100", "--reference", "A"),
            *("--at", "0001-01-01T00:00+05:00", *BY),
        ]
    )

    assert code == 2
    assert movements(store) == []


def test_an_instant_that_is_not_one_names_the_flag_and_the_form(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pay", FOLIO, "100", "--reference", "A", "--at", "yesterday", *BY])

    assert code == 2
    assert "--at" in capsys.readouterr().err


def test_an_instant_without_an_offset_is_refused_before_anything_is_recorded(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["pay", FOLIO, "100", "--reference", "A", "--at", "2026-04-01T10:00", *BY]
    )

    assert code == 2
    assert "needs a UTC offset" in capsys.readouterr().err
    assert movements(store) == []


@pytest.mark.parametrize(
    "amount", ["1e6", "٣٤٠", "340.32", "99999999999999999999999999", "0x10", " "]
)
def test_amounts_that_are_not_pesos_are_refused_with_exit_2(
    store: str, amount: str
) -> None:
    assert main(["pay", FOLIO, amount, "--reference", "A", *BY]) == 2
    assert movements(store) == []


def test_a_blank_reference_is_refused(store: str) -> None:
    code = main(["pay", FOLIO, "100", "--reference", "", *BY])

    assert movements(store) == []
    assert code == 2


def test_a_payment_recorded_while_temporal_is_down_says_so_and_how_to_finish(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pay", FOLIO, "100", "--reference", "A", *BY])

    assert movements(store) == ["A"]
    assert code == 2
    err = capsys.readouterr().err
    assert "recorded" in err and "again" in err


def test_a_cancel_whose_signal_failed_can_be_run_again_to_tell_the_case(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cancel", FOLIO, "--reason", "duplicate invoice", *BY]) != 0
    assert status(store) == InvoiceStatus.CANCELLED
    told: list[str] = []

    async def fake_connect(*_: object) -> object:
        told.append("connect")
        raise TemporalUnreachable("still down")

    monkeypatch.setattr(starter, "connect", fake_connect)

    assert main(["cancel", FOLIO, "--reason", "duplicate invoice", *BY]) == 2
    assert "run the same command again" in capsys.readouterr().err

    # Like a repeated payment, the repeat should reach for the case again.
    assert told == ["connect"], capsys.readouterr().err


@pytest.mark.parametrize("command", ["cancel", "write-off"])
def test_refusing_to_close_a_paid_invoice_reads_as_a_sentence(
    store: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with session_scope(make_engine(store)) as session:
        invoice = find_invoice(session, "test", FOLIO)
        assert invoice is not None
        invoice.status, invoice.balance_minor = InvoiceStatus.PAID, 0
        session.add(invoice)

    assert main([command, FOLIO, "--reason", "x", *BY]) == 2
    err = capsys.readouterr().err
    assert "cannot cancelled" not in err and "cannot written off" not in err, err


def test_a_dispute_resolution_that_fails_records_no_credit(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "dispute",
            "resolve",
            FOLIO,
            "no-such-dispute",
            "upheld",
            "--credit",
            "100000",
            "--by",
            "exec-01",
        ]
    )

    assert code == 2
    error = capsys.readouterr().err
    assert "cannot reach Temporal" in error
    # The operating system's reason, not the transport library's debug rendering.
    assert "connection refused" in error and "tonic" not in error
    assert movements(store) == []


def test_a_credit_on_a_rejected_dispute_is_refused_before_anything_is_stored(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The case applies a credit only to an upheld dispute: stored here, it would lower
    # the store's balance while the case kept collecting the full amount.
    resolving = ["dispute", "resolve", FOLIO, "D1", "rejected", "--credit", "100000"]

    code = main([*resolving, "--by", "exec-01"])

    assert code == 2
    error = capsys.readouterr().err
    assert "--credit" in error and "upheld" in error and "cannot reach" not in error
    assert movements(store) == []


def test_a_dispute_credit_above_the_open_balance_is_refused_before_anything_is_stored(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    resolving = ["dispute", "resolve", FOLIO, "D1", "upheld", "--credit", "9000000"]

    code = main([*resolving, "--by", "sup-01"])

    assert code == 2
    error = capsys.readouterr().err
    assert "--credit 9.000.000 CLP is more than the open balance" in error
    assert "(900.000 CLP)" in error and "cannot reach" not in error
    assert movements(store) == []


def test_a_command_for_a_case_that_ended_says_so_instead_of_no_case_exists() -> None:
    ended = RPCError(
        "workflow execution already completed", RPCStatusCode.NOT_FOUND, b""
    )

    explained = starter._explain(ended)

    assert "the invoice's case has ended" in explained
    assert "open-cases" not in explained


def test_an_amount_above_the_open_balance_needs_to_be_meant(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(["pay", FOLIO, "99999999999", "--reference", "TYPO", *BY])

    assert code == 2
    assert "--allow-overpayment" in capsys.readouterr().err
    assert movements(store) == []


def test_a_payment_received_tomorrow_is_refused_and_nothing_is_recorded(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="minutes")

    code = main(["pay", FOLIO, "100", "--reference", "A", "--at", tomorrow, *BY])

    err = capsys.readouterr().err
    assert code == 2
    assert "--at" in err and "is in the future" in err
    assert "America/Santiago" in err and "nothing was recorded" in err
    assert movements(store) == []


def test_a_payment_a_few_minutes_ahead_of_this_clock_is_taken_as_clock_skew(
    store: str,
) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=5)).isoformat(timespec="seconds")

    code = main(["pay", FOLIO, "100", "--reference", "A", "--at", ahead, *BY])

    # Stored; the case cannot be told here (Temporal is a closed port).
    assert movements(store) == ["A"]
    assert code == 2


@pytest.mark.parametrize(
    ("fact", "target"),
    [("lawsuit-served", f"C-{FOLIO}"), ("sii-received", FOLIO), ("ceded", FOLIO)],
)
def test_a_stop_fact_dated_after_today_in_the_debtors_zone_is_refused(
    store: str, capsys: pytest.CaptureFixture[str], fact: str, target: str
) -> None:
    # Today as the refusal reads it: on a clock allowed to run a few minutes slow.
    santiago_today = (
        datetime.now(ZoneInfo("America/Santiago")) + CLOCK_SKEW_ALLOWED
    ).date()
    tomorrow = (santiago_today + timedelta(days=1)).isoformat()

    code = main(["stop-fact", fact, target, "--on", tomorrow, "--reason", "x", *BY])

    err = capsys.readouterr().err
    assert code == 2
    assert f"--on {tomorrow} is in the future" in err
    assert f"today is {santiago_today} in America/Santiago" in err
    with session_scope(make_engine(store)) as session:
        invoice = find_invoice(session, "test", FOLIO)
        assert list(session.exec(select(StopFactRecord))) == []
    assert invoice is not None
    assert (invoice.sii_received_on, invoice.ceded_on) == (None, None)


def test_a_stop_fact_dated_today_in_the_debtors_zone_is_recorded(store: str) -> None:
    today = datetime.now(ZoneInfo("America/Santiago")).date().isoformat()

    code = main(
        ["stop-fact", "sii-received", FOLIO, "--on", today, "--reason", "RCV", *BY]
    )

    assert code == 0
    with session_scope(make_engine(store)) as session:
        invoice = find_invoice(session, "test", FOLIO)
    assert invoice is not None and str(invoice.sii_received_on) == today


def test_a_stop_fact_of_the_next_day_is_taken_minutes_before_midnight() -> None:
    # 23:55 in Santiago here; the operator's clock already says 00:01 of the next day.
    just_before_midnight = datetime(2026, 6, 1, 3, 55, tzinfo=UTC)

    refuse_a_future_date(
        StopFact.SII_RECEIVED,
        date(2026, 6, 1),
        "America/Santiago",
        just_before_midnight,
    )
    with pytest.raises(StopFactRefused, match="is in the future"):
        refuse_a_future_date(
            StopFact.SII_RECEIVED,
            date(2026, 6, 2),
            "America/Santiago",
            just_before_midnight,
        )


def test_a_payment_dated_before_its_invoice_was_issued_is_refused(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The invoice was issued 2026-03-01; 2025 is a mistyped year.
    at = "2025-03-30T10:00-03:00"

    code = main(["pay", FOLIO, "100", "--reference", "A", "--at", at, *BY])

    assert code == 2
    error = capsys.readouterr().err
    assert "is before invoice 0000000042 was issued (2026-03-01)" in error
    assert "check the year" in error and "nothing was recorded" in error
    assert movements(store) == []
