"""Ley 19.983: no B2B reminder while the buyer may still reclaim the invoice at the SII."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.testing import ActivityEnvironment

from activities.sending import ReminderSender
from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import OutboxChannel
from receivables.stop_facts import StopFact, record_stop_fact
from receivables.store import find_invoice, session_scope
from tests.case_helpers import add_invoice, santiago, unique_number

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "messages"
# Received at the SII on Tuesday 2 June 2026: the buyer may reclaim it on the eight days
# that follow, 3 to 10 June, and is taken to accept it from Thursday 11 June.
RECEIVED = date(2026, 6, 2)
FRIDAY_TEN = santiago(date(2026, 6, 5), time(10, 0))
FIRST_LAWFUL = santiago(date(2026, 6, 11), time(8, 0))  # CL-B-01 opens at 08:00


def b2b_invoice(engine: Engine) -> str:
    folio = unique_number()
    add_invoice(
        engine,
        invoice_number=folio,
        issue_date=date(2026, 6, 1),
        due_date=date(2026, 7, 1),
        amount_minor=1_250_000,
    )
    return folio


def send(engine: Engine, folio: str, at: datetime) -> SendOutcome:
    """A preventive-b2b courtesy reminder, as a worker runs it at ``at``."""
    request = SendReminderRequest(
        tenant="test",
        invoice_number=folio,
        step_id="R-7",
        channel="email",
        template="courtesy-before-due",
        fallback_channels=(),
        policy_name="preventive-b2b",
        policy_version=1,
        planned_at=FRIDAY_TEN.astimezone(UTC),
        language="es-CL",
        jurisdiction="cl.b2b",
    )
    sender = ReminderSender(engine, {"email": OutboxChannel(engine)}, TEMPLATES_DIR)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        activity_type="send_reminder",
        current_attempt_scheduled_time=at.astimezone(UTC),
    )
    return environment.run(sender.send_reminder, request)


def test_no_reminder_before_the_eight_days_to_reclaim_have_passed(
    engine: Engine,
) -> None:
    received, unknown = b2b_invoice(engine), b2b_invoice(engine)
    change = record_stop_fact(
        engine,
        "test",
        StopFact.SII_RECEIVED,
        target=received,
        on=RECEIVED,
        recorded_by="ana",
        reason="RCV of the SII",
    )

    held = send(engine, received, FRIDAY_TEN)
    on_the_day = send(engine, received, FIRST_LAWFUL)
    # Without a reception date the rule has nothing to count from: the reminder goes.
    without_date = send(engine, unknown, FRIDAY_TEN)

    assert not change.already_recorded
    with session_scope(engine) as session:
        stored = find_invoice(session, "test", received)
    assert stored is not None and stored.sii_received_on == RECEIVED
    assert held.status is SendStatus.DEFERRED
    assert held.reason.startswith("defer") and "CL-B-05" in held.reason
    assert "2026-06-11" in held.reason
    assert held.retry_at == FIRST_LAWFUL.astimezone(UTC)
    assert on_the_day.status is SendStatus.SENT
    assert without_date.status is SendStatus.SENT
