"""Provider reports applied to the store: deliveries, hard bounces, opt-outs, applied once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receivables.case import SendReminderRequest, SendStatus
from receivables.channels import MessageChannel, OutboxChannel
from receivables.deliveries import (
    Applied,
    apply_delivery_event,
    apply_inbound,
    event_handler,
    find_suppressions,
    normalise_address,
)
from receivables.providers import TwilioSmsChannel, twilio_client
from receivables.providers.endpoints import is_loopback_url
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    ContactSuppression,
    session_scope,
)
from receivables.webhooks import (
    TWILIO_INBOUND_PATH,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    WebhookApp,
    WebhookSecrets,
    WebhookServer,
)
from tests.case_helpers import add_invoice
from tests.fakes.fake_twilio import FakeTwilio
from tests.test_sending import (
    FOLIO,
    change_customer,
    customer_email,
    ledger,
    outbox,
    request,
    send,
)
from tests.test_webhooks import AUTH_TOKEN, PUBLIC_URL, Hooks

pytest_plugins = ("tests.fakes.fixtures",)

TENANT = "test"
PHONE = "+56911112222"
WHATSAPP = "+56933334444"
REPORTED_AT = datetime(2026, 4, 1, 13, 5, tzinfo=UTC)


@pytest.fixture
def customer(engine: Engine) -> None:
    """Folio 000123, its customer reachable by e-mail, SMS and WhatsApp (numbers as typed)."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    change_customer(engine, phone="+56 9 1111 2222", whatsapp="+56 9 3333 4444")


def every_channel(engine: Engine) -> dict[str, MessageChannel]:
    """The outbox behind e-mail, SMS and WhatsApp."""
    box = OutboxChannel(engine)
    return {"email": box, "sms": box, "whatsapp": box}


def step(step_id: str) -> SendReminderRequest:
    """An e-mail step of folio 000123 that falls back to SMS, then WhatsApp."""
    return request(step_id=step_id, fallback_channels=("sms", "whatsapp"))


def inbound(channel: str, sender: str, text: str, *, opt_out: bool) -> InboundMessage:
    """A text the debtor sent us through Twilio."""
    return InboundMessage(
        provider="twilio",
        message_id=f"SM-in-{channel}-{text}",
        channel=channel,
        sender=sender,
        text=text,
        opt_out=opt_out,
        received_at=REPORTED_AT,
    )


def bounce(message_id: str) -> DeliveryEvent:
    """SendGrid's hard bounce of a message we sent."""
    return DeliveryEvent(
        "sendgrid", message_id, DeliveryStatus.BOUNCED, occurred_at=REPORTED_AT
    )


def store_rows(engine: Engine) -> tuple[list[Any], list[Any], list[Any]]:
    """Ledger entries, attempts and suppressions as plain tuples, to compare snapshots."""
    with session_scope(engine) as session:
        entries = [
            (row.id, row.status, row.reason, row.attempts, row.decided_at)
            for row in session.exec(
                select(ContactLedgerEntry).order_by(col(ContactLedgerEntry.id))
            )
        ]
        attempts = [
            (row.id, row.ledger_entry_id, row.outcome, row.detail)
            for row in session.exec(
                select(ContactAttempt).order_by(col(ContactAttempt.id))
            )
        ]
        closed = [
            (row.channel, row.address, row.reason, row.source)
            for row in session.exec(
                select(ContactSuppression).order_by(col(ContactSuppression.id))
            )
        ]
    return entries, attempts, closed


def entry_by_message(engine: Engine, message_id: str) -> ContactLedgerEntry:
    """The one ledger entry holding a provider message id."""
    [entry] = [row for row in ledger(engine) if row.provider_message_id == message_id]
    return entry


def step_entries(engine: Engine, step_id: str) -> list[tuple[str, str, str]]:
    """(channel, recipient, status) of one step's ledger entries, in the order written."""
    rows = sorted(
        (row for row in ledger(engine) if row.step_id == step_id),
        key=lambda row: row.id or 0,
    )
    return [(row.channel, row.recipient, row.status) for row in rows]


def close_email_and_sms(engine: Engine) -> None:
    """The first reminder's e-mail bounces hard, then the debtor answers an SMS with STOP."""
    first = send(engine, step("R+1"), every_channel(engine))
    assert first.channel == "email" and first.message_id is not None
    apply = event_handler(engine, TENANT)
    apply(bounce(first.message_id))
    apply(inbound("sms", PHONE, "STOP", opt_out=True))


@pytest.mark.usefixtures("customer")
def test_a_hard_bounce_and_an_sms_stop_send_the_next_step_by_whatsapp(
    engine: Engine,
) -> None:
    close_email_and_sms(engine)
    sent_before = len(outbox(engine))

    outcome = send(engine, step("R+5"), every_channel(engine))

    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "whatsapp")
    [message] = outbox(engine)[sent_before:]
    assert (message.channel, message.recipient) == ("whatsapp", "+56 9 3333 4444")
    assert step_entries(engine, "R+5") == [
        ("email", customer_email(engine), ContactStatus.FAILED),
        ("sms", "+56 9 1111 2222", ContactStatus.FAILED),
        ("whatsapp", "+56 9 3333 4444", ContactStatus.SENT),
    ]
    reasons = [row.reason or "" for row in ledger(engine) if row.step_id == "R+5"]
    assert "address closed (bounced, sendgrid bounced" in reasons[0]
    assert "address closed (opted_out, twilio inbound opt-out" in reasons[1]


@pytest.mark.usefixtures("customer")
def test_with_whatsapp_closed_too_the_step_asks_a_person(engine: Engine) -> None:
    close_email_and_sms(engine)
    apply_inbound(engine, inbound("whatsapp", WHATSAPP, "Baja", opt_out=True), TENANT)
    sent_before = len(outbox(engine))

    outcome = send(engine, step("R+5"), every_channel(engine))

    assert outcome.status == SendStatus.BLOCKED
    assert outcome.reason.startswith("no reachable contact: email: address closed")
    assert "; sms: address closed (opted_out" in outcome.reason
    assert "; whatsapp: address closed (opted_out" in outcome.reason
    assert "@" not in outcome.reason and "1111" not in outcome.reason
    assert len(outbox(engine)) == sent_before
    assert [status for _, _, status in step_entries(engine, "R+5")] == [
        ContactStatus.FAILED,
        ContactStatus.FAILED,
        ContactStatus.FAILED,
        ContactStatus.BLOCKED,
    ]


def twilio_sms(fake: FakeTwilio) -> TwilioSmsChannel:
    """The real Twilio SMS channel aimed at the fake on this machine."""
    assert is_loopback_url(fake.base_url)
    client = twilio_client("AC" + "0" * 32, "fake-auth-token", base_url=fake.base_url)
    return TwilioSmsChannel(client, "+15005550006")


@pytest.mark.usefixtures("customer")
def test_twilio_21610_closes_the_number_and_the_step_falls_back(
    engine: Engine, fake_twilio: FakeTwilio
) -> None:
    change_customer(engine, phone=PHONE)
    fake_twilio.opted_out.add(PHONE)
    channels: dict[str, MessageChannel] = {
        "sms": twilio_sms(fake_twilio),
        "email": OutboxChannel(engine),
    }
    sms_first = request(channel="sms", fallback_channels=("email",))

    outcome = send(engine, sms_first, channels)

    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "email")
    [sms, email] = [row for row in ledger(engine) if row.step_id == "R+1"]
    assert (sms.channel, sms.status) == ("sms", ContactStatus.FAILED)
    assert "twilio error 21610" in (sms.reason or "")
    assert email.status == ContactStatus.SENT
    closed = find_suppressions(engine, TENANT, [("sms", PHONE)])
    assert closed[("sms", PHONE)].source == "twilio error 21610"

    again = send(engine, request(channel="sms", step_id="R+5"), channels)

    # The closed number is passed over without asking Twilio again.
    assert len(fake_twilio.messages()) == 1
    assert again.status == SendStatus.BLOCKED
    assert again.reason.startswith("no reachable contact: sms: address closed")


@pytest.mark.usefixtures("customer")
def test_a_delivered_callback_records_the_delivery_and_keeps_the_contact_sent(
    engine: Engine,
) -> None:
    sent = send(engine, request())
    assert sent.message_id is not None
    event = DeliveryEvent(
        "sendgrid", sent.message_id, DeliveryStatus.DELIVERED, occurred_at=REPORTED_AT
    )

    applied = apply_delivery_event(engine, event, TENANT)

    assert applied is Applied.APPLIED
    entry = entry_by_message(engine, sent.message_id)
    assert entry.status == ContactStatus.SENT
    with session_scope(engine) as session:
        last = session.exec(
            select(ContactAttempt)
            .where(ContactAttempt.ledger_entry_id == entry.id)
            .order_by(col(ContactAttempt.id).desc())
        ).first()
    assert last is not None
    assert (last.outcome, last.detail) == ("delivered", "sendgrid reported delivered")
    assert last.at.astimezone(UTC) == REPORTED_AT
    assert find_suppressions(engine, TENANT, [("email", customer_email(engine))]) == {}


@pytest.mark.usefixtures("customer")
def test_a_hard_bounce_fails_the_contact_and_closes_the_address(
    engine: Engine,
) -> None:
    sent = send(engine, request())
    assert sent.message_id is not None

    applied = apply_delivery_event(engine, bounce(sent.message_id), TENANT)

    assert applied is Applied.APPLIED
    entry = entry_by_message(engine, sent.message_id)
    assert (entry.status, entry.reason) == (
        ContactStatus.FAILED,
        "sendgrid reported bounced",
    )
    # However the address is written, the closed one is found.
    written_otherwise = customer_email(engine).upper()
    closed = find_suppressions(engine, TENANT, [("email", written_otherwise)])
    assert closed[("email", written_otherwise)].reason == "bounced"


@pytest.mark.usefixtures("customer")
def test_a_failed_sms_fails_the_contact_but_leaves_the_number_open(
    engine: Engine,
) -> None:
    change_customer(engine, email=None)
    sent = send(engine, request(fallback_channels=("sms",)))
    assert sent.message_id is not None
    event = DeliveryEvent("twilio", sent.message_id, DeliveryStatus.FAILED, 30003)

    applied = apply_delivery_event(engine, event, TENANT)

    assert applied is Applied.APPLIED
    entry = entry_by_message(engine, sent.message_id)
    assert (entry.status, entry.reason) == (
        ContactStatus.FAILED,
        "twilio reported failed with error 30003",
    )
    assert store_rows(engine)[2] == []


@pytest.mark.parametrize(
    "status",
    [DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED],
)
@pytest.mark.usefixtures("customer")
def test_a_redelivered_callback_changes_nothing(
    engine: Engine, status: DeliveryStatus
) -> None:
    sent = send(engine, request())
    assert sent.message_id is not None
    event = DeliveryEvent("sendgrid", sent.message_id, status, occurred_at=REPORTED_AT)
    assert apply_delivery_event(engine, event, TENANT) is Applied.APPLIED
    before = store_rows(engine)

    again = apply_delivery_event(engine, event, TENANT)

    assert again is Applied.ALREADY_APPLIED
    assert store_rows(engine) == before


@pytest.mark.usefixtures("customer")
def test_a_repeated_stop_closes_the_number_once(engine: Engine) -> None:
    stop = inbound("sms", PHONE, "STOP", opt_out=True)
    assert apply_inbound(engine, stop, TENANT) is Applied.APPLIED
    before = store_rows(engine)

    again = apply_inbound(engine, stop, TENANT)

    assert again is Applied.ALREADY_APPLIED
    assert store_rows(engine) == before
    assert before[2] == [
        ("sms", PHONE, "opted_out", "twilio inbound opt-out SM-in-sms-STOP")
    ]


@pytest.mark.usefixtures("customer")
def test_an_ordinary_reply_closes_nothing(engine: Engine) -> None:
    reply = inbound("sms", PHONE, "no más tarde del viernes", opt_out=False)

    assert apply_inbound(engine, reply, TENANT) is Applied.IGNORED
    assert store_rows(engine)[2] == []


@pytest.mark.usefixtures("customer")
def test_a_report_on_a_message_we_did_not_send_changes_nothing(engine: Engine) -> None:
    send(engine, request())
    before = store_rows(engine)

    applied = apply_delivery_event(engine, bounce("not-ours"), TENANT)

    assert applied is Applied.UNKNOWN_MESSAGE
    assert store_rows(engine) == before


@pytest.mark.usefixtures("customer")
def test_a_report_for_another_tenant_leaves_this_one_alone(engine: Engine) -> None:
    sent = send(engine, request())
    assert sent.message_id is not None
    before = store_rows(engine)

    applied = apply_delivery_event(engine, bounce(sent.message_id), "other-tenant")

    assert applied is Applied.UNKNOWN_MESSAGE
    assert store_rows(engine) == before


@pytest.mark.parametrize(
    ("channel", "written", "normalised"),
    [
        ("email", " Pagos@Cliente.EXAMPLE ", "pagos@cliente.example"),
        ("sms", "+56 9 (1111) 22-22", "+56911112222"),
        ("whatsapp", "whatsapp:+56933334444", "+56933334444"),
    ],
)
def test_addresses_are_closed_in_one_spelling(
    channel: str, written: str, normalised: str
) -> None:
    assert normalise_address(channel, written) == normalised


def signed_sms(engine: Engine, text: str, message_sid: str) -> int:
    """Post a debtor's SMS to our webhook, signed as Twilio signs it; return the status."""
    secrets = WebhookSecrets(PUBLIC_URL, AUTH_TOKEN)
    app = WebhookApp(secrets, event_handler(engine, TENANT), clock=lambda: REPORTED_AT)
    form = {
        "MessageSid": message_sid,
        "From": PHONE,
        "To": "+15005550006",
        "Body": text,
    }
    with WebhookServer(app) as server:
        status, _ = Hooks(server, []).post_twilio(TWILIO_INBOUND_PATH, form)
    return status


def sms_step(step_id: str) -> SendReminderRequest:
    """An SMS step of folio 000123 with no fallback."""
    return request(step_id=step_id, channel="sms")


@pytest.mark.usefixtures("customer", "loopback_only")
def test_start_after_stop_reopens_the_number_on_that_channel_with_both_kept(
    engine: Engine,
) -> None:
    assert signed_sms(engine, "STOP", "SM-in-stop") == 200
    closed = send(engine, sms_step("R+5"), every_channel(engine))
    assert signed_sms(engine, "Alta", "SM-in-start") == 200

    reopened = send(engine, sms_step("R+8"), every_channel(engine))

    assert closed.status is SendStatus.BLOCKED
    assert (reopened.status, reopened.channel) == (SendStatus.SENT, "sms")
    [message] = outbox(engine)
    assert (message.step_id, message.recipient) == ("R+8", "+56 9 1111 2222")
    with session_scope(engine) as session:
        [row] = session.exec(select(ContactSuppression)).all()
    assert (row.channel, row.reason, row.source) == (
        "sms",
        "opted_out",
        "twilio inbound opt-out SM-in-stop",
    )
    assert (row.reopened_at, row.reopened_by) == (
        REPORTED_AT,
        "twilio inbound opt-in SM-in-start",
    )


@pytest.mark.usefixtures("customer", "loopback_only")
def test_stop_after_start_closes_the_number_again(engine: Engine) -> None:
    for text, sid in (("STOP", "SM-1"), ("START", "SM-2"), ("Baja", "SM-3")):
        assert signed_sms(engine, text, sid) == 200

    outcome = send(engine, sms_step("R+5"), every_channel(engine))

    assert outcome.status is SendStatus.BLOCKED
    assert "opted_out, twilio inbound opt-out SM-3" in outcome.reason


@pytest.mark.usefixtures("customer")
def test_start_from_one_channel_does_not_reopen_another(
    engine: Engine,
) -> None:
    apply_inbound(engine, inbound("whatsapp", WHATSAPP, "Baja", opt_out=True), TENANT)
    start = dataclasses.replace(
        inbound("sms", WHATSAPP, "START", opt_out=False), opt_in=True
    )

    applied = apply_inbound(engine, start, TENANT)

    assert applied is Applied.IGNORED
    closed = find_suppressions(engine, TENANT, [("whatsapp", WHATSAPP)])
    assert set(closed) == {("whatsapp", WHATSAPP)}
