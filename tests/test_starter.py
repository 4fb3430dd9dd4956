"""The operator's command line: clear refusals, reports, and commands that leave no mess."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

import starter
from receivables.operator_actions import OperatorAction
from receivables.store import (
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    StopFactRecord,
    find_customer,
    find_invoice,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask, TaskStatus
from tests.case_helpers import add_invoice


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store in a scratch data folder, as the commands find it."""
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_TENANT", "test")
    # No Temporal here: a command that needed one would fail loudly on this port.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")
    url = f"sqlite:///{tmp_path / 'dunning.sqlite'}"
    from receivables.schema import migrate

    migrate(url)
    return url


def test_report_prints_headlines_and_writes_html_and_csv(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(UTC).date()
    add_invoice(
        make_engine(store),
        invoice_number="0000000042",
        issue_date=today - timedelta(days=70),
        due_date=today - timedelta(days=40),
        amount_minor=1_250_000,
    )

    code = starter.main(
        ["report", "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "r.csv")]
    )

    assert code == 0
    # Amounts read as in every operator view: es-CL grouping, then the currency.
    assert "1.250.000 CLP" in capsys.readouterr().out
    assert "<svg" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "metric" in (tmp_path / "r.csv").read_text(encoding="utf-8").splitlines()[0]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["pay", "0000000042", "0", "--reference", "Z"], "above zero"),
        (["pay", "0000000042", "-5", "--reference", "N"], "above zero"),
        (["pay", "42", "100", "--reference", "X"], "leading zeros count"),
        (["cancel", "0000000042", "--reason", "x"], "is paid; nothing was changed"),
        (["move-due", "0000000042", "31-12-2026", "--reason", "x"], "YYYY-MM-DD"),
    ],
)
def test_impossible_commands_are_refused_before_anything_changes(
    store: str, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    assert starter.main(["sync-people"]) == 0
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number="0000000042",
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
    )
    with session_scope(engine) as session:
        invoice = session.exec(
            select(Invoice).where(Invoice.invoice_number == "0000000042")
        ).one()
        invoice.status, invoice.balance_minor = InvoiceStatus.PAID, 0
        session.add(invoice)

    code = starter.main([*command, "--by", "exec-01"])

    assert code == 2
    assert message in capsys.readouterr().err
    with session_scope(engine) as session:
        stored = session.exec(
            select(Invoice).where(Invoice.invoice_number == "0000000042")
        ).one()
    assert (stored.status, stored.balance_minor) == (InvoiceStatus.PAID, 0)


def test_stop_fact_command_records_a_lawsuit_and_a_cession_with_an_audit_line(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number="0000000042",
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
        customer_id="C-7",
    )

    assert starter.main(["sync-people"]) == 0

    served = starter.main(
        [
            *("stop-fact", "lawsuit-served", "C-7", "--on", "2026-03-02"),
            *("--reason", "receptor's certificate", "--by", "exec-02"),
        ]
    )
    ceded = starter.main(
        [
            *("stop-fact", "ceded", "0000000042", "--on", "2026-01-20"),
            *("--reason", "AEC from the SII", "--assignee", "Factor SpA"),
            *("--by", "exec-01"),
        ]
    )
    unknown = starter.main(
        [
            *("stop-fact", "insolvency", "C-404", "--on", "2026-03-02"),
            *("--reason", "x", "--by", "exec-01"),
        ]
    )

    assert (served, ceded, unknown) == (0, 0, 2)
    output = capsys.readouterr()
    assert "customer C-7: lawsuit-served on 2026-03-02 recorded" in output.out
    assert "customer C-404 is not in the store" in output.err
    with session_scope(engine) as session:
        customer = find_customer(session, "test", "C-7")
        invoice = find_invoice(session, "test", "0000000042")
        audit = list(session.exec(select(StopFactRecord)))
    assert customer is not None and customer.lawsuit_served_on == date(2026, 3, 2)
    assert invoice is not None
    assert (invoice.ceded_on, invoice.ceded_to) == (date(2026, 1, 20), "Factor SpA")
    assert [(r.fact, r.recorded_by, r.reason) for r in audit] == [
        ("lawsuit-served", "exec-02", "receptor's certificate"),
        ("ceded", "exec-01", "AEC from the SII"),
    ]


def test_report_by_executive_over_a_chosen_period(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(UTC).date()
    add_invoice(
        make_engine(store),
        invoice_number="0000000043",
        issue_date=today - timedelta(days=20),
        due_date=today + timedelta(days=10),
        amount_minor=500_000,
    )
    assert starter.main(["sync-people"]) == 0
    since = (today - timedelta(days=30)).isoformat()

    code = starter.main(
        [
            "report",
            "--group-by",
            "executive",
            "--since",
            since,
            "--csv",
            str(tmp_path / "r.csv"),
        ]
    )

    assert code == 0
    out = capsys.readouterr().out
    assert f"period {since} to {today}" in out
    assert "Promises kept" in out and "Disputes opened" in out
    rows = (tmp_path / "r.csv").read_text(encoding="utf-8")
    # Unsegmented invoices fall to the default executive of the shipped governance.
    assert "invoices,executive=exec-01,1,invoices" in rows
    assert starter.main(["report", "--since", "yesterday"]) == 2


def test_a_replay_of_a_file_without_invoices_says_so_without_a_traceback(
    store: str, tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    portfolio = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"
    header_only = tmp_path / "header_only.csv"
    header_only.write_text(portfolio.read_text().splitlines()[0] + "\n")

    code = starter.main(["simulate", str(header_only), "--mapping", "ibm-ar"])

    assert code == 2
    err = capsys.readouterr().err
    assert "error: the replay stopped: the portfolio has no invoices to replay" in err
    assert "Traceback" not in err


def test_replayed_dispute_offsets_are_the_operators_and_checked_first(
    store: str, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    portfolio = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"

    code = starter.main(
        [
            *("simulate", str(portfolio), "--mapping", "ibm-ar"),
            *("--dispute-opens-after", "-2"),
        ]
    )

    assert code == 2
    err = capsys.readouterr().err
    assert "dispute offsets are whole days, zero or more; got -2 after issue" in err


PAUSE_ONE_CASE = ["supervise", "pause", "--invoice", "0000000042"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["inbox", "nobody"], "no active person 'nobody'"),
        (["inbox", "nobody"], "known ids: exec-01, exec-02, exec-03, strat-01, sup-01"),
        (
            [*PAUSE_ONE_CASE, "--actor", "sup.ana", "--reason", "x"],
            "no active person 'sup.ana'",
        ),
        (
            [*PAUSE_ONE_CASE, "--actor", "exec-01", "--reason", "x"],
            "exec-01 is executive; this command needs a strategic or supervisor "
            "(strat-01, sup-01)",
        ),
    ],
)
def test_unknown_people_and_executives_acting_as_supervisors_are_refused(
    store: str, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    assert starter.main(["sync-people"]) == 0
    capsys.readouterr()

    code = starter.main(command)

    error = capsys.readouterr().err
    assert code == 2
    assert message in error
    # The refusal names who may act instead: no Temporal was needed to refuse.
    assert "sup-01" in error


FOLIO = "0000000042"
UNKNOWN_BY = ["--by", "ana"]
HAND_ENTERED_CHANGES = [
    ["pay", FOLIO, "1000", "--reference", "TRX-1"],
    ["pay", FOLIO, "1000", "--reference", "NC-1", "--credit"],
    ["move-due", FOLIO, "2026-12-31", "--reason", "agreed"],
    ["cancel", FOLIO, "--reason", "duplicate"],
    ["write-off", FOLIO, "--reason", "uncollectable"],
    ["stop-fact", "lawsuit-served", "C-7", "--on", "2026-03-02", "--reason", "x"],
    ["stop-fact", "ceded", FOLIO, "--on", "2026-03-02", "--reason", "AEC"],
    ["stop-fact", "sii-received", FOLIO, "--on", "2026-03-02", "--reason", "RCV"],
    ["import-sii", "dte.xml"],
]


@pytest.mark.parametrize(
    "command", HAND_ENTERED_CHANGES, ids=lambda command: " ".join(command[:2])
)
def test_a_hand_entered_change_without_a_person_is_refused_naming_the_flag(
    store: str, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    engine = _invoice_of_c7(store)
    assert starter.main(["sync-people"]) == 0
    capsys.readouterr()

    code = starter.main(command)

    error = capsys.readouterr().err
    assert code == 2
    assert "error: say who acts with --by PERSON" in error
    assert "known ids: exec-01, exec-02, exec-03, strat-01, sup-01" in error
    _assert_nothing_recorded(engine)


def _invoice_of_c7(store: str) -> Engine:
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
        customer_id="C-7",
    )
    return engine


def _assert_nothing_recorded(engine: Engine) -> None:
    with session_scope(engine) as session:
        invoice = find_invoice(session, "test", FOLIO)
        customer = find_customer(session, "test", "C-7")
        assert list(session.exec(select(Payment))) == []
        assert list(session.exec(select(StopFactRecord))) == []
        assert list(session.exec(select(OperatorAction))) == []
    assert invoice is not None and customer is not None
    assert (invoice.status, invoice.balance_minor) == (InvoiceStatus.OPEN, 300_000)
    assert (invoice.due_date, invoice.ceded_on) == (date(2026, 2, 4), None)
    assert invoice.sii_received_on is None
    assert customer.lawsuit_served_on is None


@pytest.mark.parametrize(
    "command",
    [
        ["dispute", "open", FOLIO, "--amount", "1000", "--category", "other"],
        ["dispute", "resolve", FOLIO, "D1", "upheld", "--credit", "1000"],
        ["promise", FOLIO, "--amount", "1000", "--date", "2026-12-31"],
        *HAND_ENTERED_CHANGES,
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_by_the_governance_does_not_know_is_refused_and_nothing_is_recorded(
    store: str, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    engine = _invoice_of_c7(store)
    assert starter.main(["sync-people"]) == 0
    capsys.readouterr()

    code = starter.main([*command, *UNKNOWN_BY])

    error = capsys.readouterr().err
    assert code == 2
    assert "error: no active person 'ana' in tenant 'test'" in error
    assert "known ids: exec-01, exec-02, exec-03, strat-01, sup-01" in error
    _assert_nothing_recorded(engine)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["supervise", "pause", "--invoice", "404", "--actor", "sup-01"],
            "no invoice '404' for tenant test; check the folio (leading zeros count)",
        ),
        (
            [
                "promise",
                "404",
                "--amount",
                "1",
                "--date",
                "2026-12-31",
                "--by",
                "exec-01",
            ],
            "no invoice '404' for tenant test; check the folio (leading zeros count)",
        ),
        (
            ["dispute", "open", "404", "--amount", "1", "--category", "other"],
            "no invoice '404' for tenant test; check the folio (leading zeros count)",
        ),
        (
            [
                "promise",
                FOLIO,
                "--amount",
                "1",
                "--date",
                "31-12-2026",
                "--by",
                "exec-01",
            ],
            "--date '31-12-2026' is not a calendar date; write it as YYYY-MM-DD",
        ),
        (
            ["case-file", "404"],
            "no invoice '404' for tenant test; check the folio (leading zeros count)",
        ),
        (
            ["outbox", "list", "--invoice", "404"],
            "no invoice '404' for tenant test; check the folio (leading zeros count)",
        ),
        (
            ["task", "claim", "999", "--as", "exec-01"],
            "no task 999 in tenant test; task ids are the #numbers that 'starter.py "
            "inbox PERSON' lists",
        ),
        (
            ["task", "complete", "999", "--as", "exec-01", "--outcome", "no_answer"],
            "no task 999 in tenant test",
        ),
        (
            ["task", "claim", "999", "--as", "ana"],
            "no active person 'ana' in tenant 'test'; known ids: exec-01",
        ),
        (
            [
                *("supervise", "reassign", "--invoice", FOLIO, "--actor", "sup-01"),
                *("--to", "sup-01"),
            ],
            "sup-01 is supervisor; this command needs an executive (exec-01, exec-02",
        ),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else "",
)
def test_an_unknown_folio_task_or_person_is_a_user_mistake_with_exit_2(
    store: str, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    add_invoice(
        make_engine(store),
        invoice_number=FOLIO,
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
    )
    assert starter.main(["sync-people"]) == 0
    capsys.readouterr()

    # --reason and --by are given to every command that takes them, so only the folio,
    # the task id or the person is wrong. No Temporal answers here: each is refused first.
    extra = {"supervise": ["--reason", "x"], "dispute": ["--by", "exec-01"]}
    code = starter.main([*command, *extra.get(command[0], [])])

    output = capsys.readouterr()
    assert code == 2
    assert f"error: {message}" in output.err
    assert output.out == ""


def test_a_task_of_another_tenant_is_not_found(
    store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
        tenant="other",
    )
    with session_scope(engine) as session:
        task = HumanTask(
            tenant="other",
            invoice_number=FOLIO,
            workflow_id=f"invoice/other/{FOLIO}",
            step_id="CALL+1",
            kind="call_debtor",
            role=0,
            assignee_id="exec-01",
            reason="policy step CALL+1",
            time_zone="America/Santiago",
            opened_at=datetime(2026, 2, 5, tzinfo=UTC),
            due_at=datetime(2026, 2, 9, tzinfo=UTC),
        )
        session.add(task)
        session.flush()
        task_id = task.id
    assert starter.main(["sync-people"]) == 0
    capsys.readouterr()

    code = starter.main(["task", "claim", str(task_id), "--as", "exec-01"])

    assert code == 2
    assert f"no task {task_id} in tenant test" in capsys.readouterr().err
    with session_scope(engine) as session:
        stored = session.get(HumanTask, task_id)
    assert stored is not None and stored.status == TaskStatus.OPEN


def test_the_outbox_shows_when_each_message_was_stored_in_the_debtors_time(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(store)
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
        time_zone="Pacific/Easter",
    )
    with session_scope(engine) as session:
        message = OutboxMessage(
            idempotency_key="k-1",
            tenant="test",
            invoice_number=FOLIO,
            step_id="R+1",
            channel="email",
            recipient="pagos@customers.invalid",
            subject="Factura vencida",
            body="Estimado cliente",
            policy_name="preventive-b2b",
            policy_version=1,
            created_at=datetime(2026, 2, 5, 15, 30, tzinfo=UTC),
        )
        session.add(message)
        session.flush()
        message_id = message.id

    listed = starter.main(["outbox", "list"])
    listing = capsys.readouterr().out
    shown = starter.main(["outbox", "show", str(message_id)])
    full = capsys.readouterr().out

    assert (listed, shown) == (0, 0)
    # Easter Island is five hours behind UTC in February (summer time, -05).
    assert "stored (debtor time)" in listing
    assert "2026-02-05 10:30 Pacific/Easter" in listing
    assert "stored at: 2026-02-05 10:30 Pacific/Easter" in full


@pytest.mark.parametrize("seconds", ["0", "-5", "nan", "inf", "0.001"])
def test_a_pulse_interval_below_a_second_is_refused_before_anything_starts(
    store: str, seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(["run", "--pulse-every", seconds, "--exit-after", "1"])

    assert code == 2
    assert "give the seconds between two lines, 1 or more" in capsys.readouterr().err
