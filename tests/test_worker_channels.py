"""The worker's channels: the outbox by default, SendGrid through the real SDK when configured."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.sending import ReminderSender
from receivables.case import SendReminderRequest, SendStatus
from receivables.channels import OutboxChannel
from receivables.ledger import ContactLedger
from receivables.providers.sendgrid_email import SendGridEmailChannel
from receivables.settings import load_settings
from receivables.store import make_engine
from tests.case_helpers import add_invoice
from tests.fakes.fake_sendgrid import FakeSendGrid
from worker import build_worker, default_channels

pytest_plugins = ("tests.fakes.fixtures",)
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "messages"


def test_without_credentials_every_channel_is_the_outbox(sqlite_url: str) -> None:
    channels = default_channels(make_engine(sqlite_url), env={})

    assert set(channels) == {"email", "sms", "whatsapp", "letter"}
    assert all(isinstance(channel, OutboxChannel) for channel in channels.values())


def test_a_reminder_goes_through_sendgrid_with_a_spec_valid_request(
    sqlite_url: str, fake_sendgrid: FakeSendGrid
) -> None:
    engine: Engine = make_engine(sqlite_url)
    add_invoice(
        engine,
        invoice_number="0000611365",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    env = {
        "SENDGRID_API_KEY": "SG.fake",
        "SENDGRID_FROM": "cobranzas@acreedor.example",
        "SENDGRID_HOST": fake_sendgrid.base_url,
    }
    channels = default_channels(engine, env=env)
    planned = datetime(2026, 4, 1, 13, 0, tzinfo=UTC)
    request = SendReminderRequest(
        tenant="test",
        invoice_number="0000611365",
        step_id="R+1",
        channel="email",
        template="overdue-first",
        fallback_channels=(),
        policy_name="preventive-b2b",
        policy_version=1,
        planned_at=planned,
        language="es-CL",
    )
    activity = ActivityEnvironment()
    activity.info = dataclasses.replace(
        activity.info,
        activity_type="send_reminder",
        current_attempt_scheduled_time=planned,
    )

    outcome = activity.run(
        ReminderSender(engine, channels, TEMPLATES).send_reminder, request
    )

    assert isinstance(channels["email"], SendGridEmailChannel)
    assert outcome.status is SendStatus.SENT
    assert fake_sendgrid.violations == []
    assert outcome.message_id == fake_sendgrid.message_ids[-1]
    [entry] = ContactLedger(engine).entries_for("test", "0000611365")
    assert entry.provider_message_id == outcome.message_id
    assert "0000611365" in fake_sendgrid.requests[-1].json()["subject"]


async def test_the_send_rate_cap_reaches_the_worker_for_the_server_to_enforce(
    sqlite_url: str, time_skipping_env: WorkflowEnvironment
) -> None:
    settings = load_settings({"DUNNING_MAX_SENDS_PER_SECOND": "20"})
    engine = make_engine(sqlite_url)

    capped = build_worker(
        time_skipping_env.client, engine, settings, task_queue="rate-cap-capped"
    )
    uncapped = build_worker(
        time_skipping_env.client, engine, load_settings({}), task_queue="rate-cap-free"
    )

    assert capped.config()["max_task_queue_activities_per_second"] == 20.0
    assert uncapped.config()["max_task_queue_activities_per_second"] is None
