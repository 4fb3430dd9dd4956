"""SMS spelling by policy: accents kept at their true cost, or folded with the change recorded."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from activities.sending import CreditorProfile
from receivables.case import SendStatus
from receivables.channels import MessageChannel
from receivables.providers import TwilioSmsChannel, analyse_sms, twilio_client
from receivables.store import ContactAttempt, session_scope
from tests.case_helpers import add_invoice
from tests.fakes.fake_twilio import FakeTwilio
from tests.test_providers import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM
from tests.test_sending import FOLIO, ledger, outbox, request, send

pytest_plugins = ("tests.fakes.fixtures",)
# ú and á have no GSM-7 septet; é and ñ do.
CREDITOR = CreditorProfile(name="José Núñez Ibáñez")


@pytest.fixture(autouse=True)
def invoice(engine: Engine) -> str:
    """An open invoice whose customer has a mobile number."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    return FOLIO


def send_sms(engine: Engine, fake: FakeTwilio, *fields: str) -> str:
    """Send the R+1 reminder as SMS through the fake; return the text Twilio received."""
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url)
    channels: dict[str, MessageChannel] = {"sms": TwilioSmsChannel(client, SMS_FROM)}
    reminder = request(channel="sms", sms_transliterate=fields)

    outcome = send(engine, reminder, channels, CREDITOR)

    assert outcome.status is SendStatus.SENT
    [message] = fake.messages()
    return message["Body"]


def trail(engine: Engine, outcome: str) -> list[str | None]:
    """The details of the ledger's attempt lines with this outcome."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(ContactAttempt)
            .where(ContactAttempt.outcome == outcome)
            .order_by(col(ContactAttempt.id))
        )
        return [row.detail for row in rows]


def test_a_name_is_kept_as_written_and_the_sms_costs_what_ucs2_costs(
    engine: Engine, fake_twilio: FakeTwilio
) -> None:
    body = send_sms(engine, fake_twilio)

    assert "José Núñez Ibáñez" in body
    cost = analyse_sms(body)
    assert cost.encoding == "UCS-2" and set(cost.non_gsm) == {"ú", "á"}
    [entry] = ledger(engine)
    assert (entry.sms_encoding, entry.sms_segments) == ("UCS-2", cost.segments)
    assert trail(engine, "transliterated") == []


def test_a_name_the_policy_transliterates_is_folded_and_the_change_recorded(
    engine: Engine, fake_twilio: FakeTwilio
) -> None:
    body = send_sms(engine, fake_twilio, "creditor_name")

    assert "José Nuñez Ibañez" in body and "Núñez" not in body
    cost = analyse_sms(body)
    assert cost.encoding == "GSM-7"
    [entry] = ledger(engine)
    assert (entry.sms_encoding, entry.sms_segments) == ("GSM-7", cost.segments)
    assert trail(engine, "transliterated") == [
        "creditor_name: 'José Núñez Ibáñez' -> 'José Nuñez Ibañez'"
    ]
    assert fake_twilio.violations == []


def test_transliteration_leaves_email_untouched(engine: Engine) -> None:
    outcome = send(
        engine, request(sms_transliterate=("creditor_name",)), None, CREDITOR
    )

    assert outcome.status is SendStatus.SENT
    [email] = outbox(engine)
    assert "José Núñez Ibáñez" in email.body
    assert trail(engine, "transliterated") == []
