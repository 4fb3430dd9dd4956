"""The pulse `make run` prints: cases, contacts and tasks in one line, only when they change."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.ledger import ContactKey, ContactLedger
from receivables.pulse import pulse_line, read_pulse, report_pulse
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    InvoiceStatus,
    find_invoice,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask
from tests.case_helpers import add_invoice

NOW = datetime(2026, 4, 2, 15, 0, tzinfo=UTC)


def portfolio(engine: Engine) -> None:
    """Two open invoices and a paid one; a reminder sent, one deferred; a task past its SLA."""
    for number, amount in (("1001", 300_000), ("1002", 150_000), ("1003", 90_000)):
        add_invoice(
            engine,
            invoice_number=number,
            issue_date=date(2026, 3, 1),
            due_date=date(2026, 3, 31),
            amount_minor=amount,
        )
    with session_scope(engine) as session:
        paid = find_invoice(session, "test", "1003")
        assert paid is not None
        paid.status, paid.balance_minor = InvoiceStatus.PAID, 0
        session.add(paid)
        session.add(late_task("1001"))
    decide(engine, "1001", "R+1", ContactStatus.SENT)
    decide(engine, "1002", "R+1", ContactStatus.DEFERRED)


def late_task(invoice_number: str) -> HumanTask:
    """An open call task whose SLA ended an hour before NOW."""
    return HumanTask(
        tenant="test",
        invoice_number=invoice_number,
        workflow_id=f"invoice/test/{invoice_number}",
        step_id="CALL",
        kind="call_debtor",
        role=1,
        assignee_id="exec-01",
        reason="policy step CALL",
        time_zone="America/Santiago",
        opened_at=NOW - timedelta(days=2),
        due_at=NOW - timedelta(hours=1),
    )


def decide(engine: Engine, number: str, step: str, status: ContactStatus) -> None:
    """Record a contact of one invoice's step with the given outcome."""
    key = ContactKey("test", number, step, "email", f"pagos-{number}@customers.invalid")
    ContactLedger(engine).record_decision(
        key, status, reason=str(status), policy=("p", 1), planned_at=NOW, at=NOW
    )


def test_the_pulse_counts_cases_balances_contacts_and_late_tasks(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    portfolio(engine)

    pulse = read_pulse(engine, "test", NOW)
    line = pulse_line(pulse, None, NOW)

    assert (pulse.open_cases, pulse.closed_cases, pulse.sends) == (2, 1, 1)
    assert line == (
        "12:00:00 America/Santiago · 2 cases open (450.000 CLP due), 1 paid or closed · "
        "contacts: 1 sent, 1 deferred · tasks: 1 open, 1 past their SLA"
    )
    assert "customers.invalid" not in line and "1001" not in line


def test_the_pulse_names_the_zone_its_clock_reads_in(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    portfolio(engine)

    line = pulse_line(read_pulse(engine, "test", NOW), None, NOW, "UTC")

    assert line is not None and line.startswith("15:00:00 UTC · 2 cases open")


def test_a_line_only_when_something_changed_and_new_sends_are_counted(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    portfolio(engine)
    first = read_pulse(engine, "test", NOW)

    decide(engine, "1002", "R+7", ContactStatus.SENT)
    second = read_pulse(engine, "test", NOW)
    line = pulse_line(second, first, NOW)

    assert pulse_line(first, first, NOW) is None
    assert (
        line is not None and "2 sent, 1 deferred (1 sent since the last line)" in line
    )


def test_a_send_is_counted_even_when_an_earlier_one_bounced_in_the_same_minute(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    portfolio(engine)
    first = read_pulse(engine, "test", NOW)

    decide(engine, "1002", "R+7", ContactStatus.SENT)
    with session_scope(engine) as session:
        # The provider reports 1001's R+1 bounced: its entry is sent no more.
        [bounced] = session.exec(
            select(ContactLedgerEntry).where(
                ContactLedgerEntry.invoice_number == "1001"
            )
        ).all()
        bounced.status = ContactStatus.FAILED
        session.add(bounced)
    line = pulse_line(read_pulse(engine, "test", NOW), first, NOW)

    assert line is not None and "(1 sent since the last line)" in line


def test_one_case_is_one_case(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    add_invoice(
        engine,
        invoice_number="2001",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=10_000,
    )

    line = pulse_line(read_pulse(engine, "test", NOW), None, NOW)

    assert line is not None and " · 1 case open (10.000 CLP due) · " in line


async def test_report_pulse_stays_quiet_while_nothing_changes(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    portfolio(engine)
    lines: list[str] = []

    reporting = asyncio.create_task(
        report_pulse(engine, "test", lines.append, every=0.01)
    )
    await asyncio.sleep(0.2)
    reporting.cancel()

    assert len(lines) == 1 and "2 cases open" in lines[0]
