"""A send cut off mid-call: the retry asks the provider, or the policy resends or holds."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.engine import Engine

from activities.sending import OUTCOME_UNKNOWN
from receivables.case import SendStatus
from receivables.channels import MessageChannel
from receivables.ledger import ContactKey, ContactLedger
from receivables.policy import UnknownOutcome
from receivables.providers import (
    Failure,
    ProviderError,
    SendGridEmailChannel,
    TwilioSmsChannel,
    twilio_client,
)
from receivables.store import ContactStatus
from tests.case_helpers import add_invoice
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio
from tests.test_providers import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM
from tests.test_sending import (
    FOLIO,
    PLANNED,
    attempt_outcomes,
    customer_email,
    ledger,
    record_fingerprint,
    request,
    send,
)

pytest_plugins = ("tests.fakes.fixtures",)
DEBTOR_PHONE = "+56911112222"  # the number add_invoice gives every customer
# Short enough that a stalled provider cuts the call off at once in these tests.
CUT_OFF_SECONDS = 0.5


@pytest.fixture(autouse=True)
def invoice(engine: Engine) -> str:
    """An open invoice whose customer has an e-mail address and a mobile number."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    return FOLIO


def sms_through(fake: FakeTwilio) -> TwilioSmsChannel:
    """The SMS channel on the fake, with a timeout that cuts a stalled call off."""
    client = twilio_client(
        ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url, timeout_seconds=CUT_OFF_SECONDS
    )
    return TwilioSmsChannel(client, SMS_FROM)


def email_through(fake: FakeSendGrid) -> SendGridEmailChannel:
    """The email channel on the fake, with a timeout that cuts a stalled call off."""
    return SendGridEmailChannel(
        "SG.fake",
        "cobranzas@servicios-andinos.example",
        host=fake.base_url,
        timeout_seconds=CUT_OFF_SECONDS,
    )


def test_an_sms_twilio_took_before_the_cut_is_found_and_not_sent_again(
    engine: Engine, fake_twilio: FakeTwilio
) -> None:
    channels: dict[str, MessageChannel] = {"sms": sms_through(fake_twilio)}
    stall = fake_twilio.stall_next()
    with pytest.raises(ProviderError) as cut:
        send(engine, request(channel="sms"), channels)
    stall.release.set()

    outcome = send(engine, request(channel="sms"), channels)

    assert cut.value.failure is Failure.UNREACHABLE
    [taken] = fake_twilio.created
    assert (outcome.status, outcome.message_id, outcome.duplicate) == (
        SendStatus.SENT,
        taken["sid"],
        True,
    )
    assert len(fake_twilio.messages()) == 1 and len(fake_twilio.lookups()) == 1
    [entry] = ledger(engine)
    assert (entry.status, entry.provider_message_id) == (
        ContactStatus.SENT,
        taken["sid"],
    )
    assert attempt_outcomes(engine) == [(1, "started"), (1, "unknown"), (1, "sent")]


def test_an_sms_cut_off_before_twilio_took_it_is_sent_once(
    engine: Engine, fake_twilio: FakeTwilio
) -> None:
    # The worker died after recording the text, before Twilio had it.
    key = ContactKey("test", FOLIO, "R+1", "sms", DEBTOR_PHONE)
    begun = ContactLedger(engine).begin_attempt(
        key, policy=("preventive-b2b", 1), planned_at=PLANNED
    )
    record_fingerprint(engine, begun.entry_id, "a text Twilio never received")

    outcome = send(engine, request(channel="sms"), {"sms": sms_through(fake_twilio)})

    assert (outcome.status, outcome.duplicate) == (SendStatus.SENT, False)
    assert len(fake_twilio.lookups()) == 1 and len(fake_twilio.messages()) == 1
    assert attempt_outcomes(engine) == [
        (1, "started"),
        (1, "not_taken"),
        (2, "started"),
        (2, "sent"),
    ]


def test_an_email_cut_off_is_held_for_a_person_when_the_policy_says_hold(
    engine: Engine, fake_sendgrid: FakeSendGrid
) -> None:
    channels: dict[str, MessageChannel] = {"email": email_through(fake_sendgrid)}
    held = request(on_unknown_outcome=UnknownOutcome.HOLD)
    stall = fake_sendgrid.stall_next()
    with pytest.raises(ProviderError):
        send(engine, held, channels)
    stall.release.set()

    outcome = send(engine, held, channels)
    again = send(engine, held, channels)

    assert outcome.status is SendStatus.BLOCKED
    assert outcome.reason.startswith(OUTCOME_UNKNOWN)
    assert again == outcome
    assert len(fake_sendgrid.requests) == 1
    [entry] = ledger(engine)
    assert (entry.status, entry.recipient) == (
        ContactStatus.HELD,
        customer_email(engine),
    )
    assert entry.reason == outcome.reason


def test_an_email_cut_off_is_resent_with_the_risk_recorded_when_the_policy_says_resend(
    engine: Engine, fake_sendgrid: FakeSendGrid
) -> None:
    channels: dict[str, MessageChannel] = {"email": email_through(fake_sendgrid)}
    resent = request(on_unknown_outcome=UnknownOutcome.RESEND)
    stall = fake_sendgrid.stall_next()
    with pytest.raises(ProviderError):
        send(engine, resent, channels)
    stall.release.set()

    outcome = send(engine, resent, channels)

    assert outcome.status is SendStatus.SENT
    assert outcome.message_id == fake_sendgrid.message_ids[-1]
    # SendGrid cannot be asked: the policy took the risk, and the ledger says so.
    assert len(fake_sendgrid.requests) == 2
    assert attempt_outcomes(engine) == [
        (1, "started"),
        (1, "unknown"),
        (1, "resent_after_unknown"),
        (2, "started"),
        (2, "sent"),
    ]
    [entry] = ledger(engine)
    assert entry.status == ContactStatus.SENT
