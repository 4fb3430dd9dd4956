"""Provider channels through the real SDKs against local fakes held to the OpenAPI specs."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioRestException

from receivables.channels import (
    Answer,
    ChannelError,
    EarlierAttempt,
    Lookup,
    OutgoingMessage,
    idempotency_key,
    text_fingerprint,
)
from receivables.providers import (
    Failure,
    ProviderConfigError,
    ProviderError,
    SendGridEmailChannel,
    TemplateCall,
    TwilioSmsChannel,
    TwilioWhatsAppChannel,
    analyse_sms,
    provider_channels_from_env,
    transliterate,
    twilio_client,
)
from receivables.providers.endpoints import (
    EndpointError,
    checked_base_url,
    is_loopback_url,
)
from receivables.providers.errors import redact, transport_error
from receivables.providers.sms_encoding import describe_changes, fold_to_gsm7
from tests.fakes.fake_sendgrid import FakeSendGrid, sendgrid_errors
from tests.fakes.fake_twilio import FakeTwilio, twilio_errors
from tests.fakes.loopback import LeftThisMachine

pytest_plugins = ("tests.fakes.fixtures",)

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "fake-auth-token"
CONTENT_SID = "HX" + "1" * 32
SMS_FROM = "+15005550006"
DEBTOR_PHONE = "+56912345678"
NOW = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)


def outgoing(channel: str, recipient: str, **changes: object) -> OutgoingMessage:
    """A rendered reminder for folio 25568, as the send activity hands it to a channel."""
    message = OutgoingMessage(
        idempotency_key=idempotency_key("acme", "25568", "R2", channel, recipient),
        tenant="acme",
        invoice_number="25568",
        step_id="R2",
        channel=channel,
        recipient=recipient,
        subject="Factura folio 25568 vencida",
        body="Servicios Andinos: su factura folio 25568 por $1.190.000 venció el 01-03-2026.",
        html_body="<p>Servicios Andinos: su factura folio 25568 venció.</p>",
        policy_name="standard",
        policy_version=3,
    )
    return replace(message, **changes)  # type: ignore[arg-type]


def earlier_attempt(message: OutgoingMessage, started_at: datetime) -> EarlierAttempt:
    """A cut-off attempt that handed this message's text to its channel."""
    return EarlierAttempt(
        message.idempotency_key,
        message.recipient,
        text_fingerprint(message.body),
        started_at,
    )


def email_channel(fake: FakeSendGrid) -> SendGridEmailChannel:
    """The email channel aimed at the fake, after checking the fake is on loopback."""
    assert is_loopback_url(fake.base_url)
    return SendGridEmailChannel(
        "SG.fake", "cobranzas@servicios-andinos.example", host=fake.base_url
    )


def sms_channel(fake: FakeTwilio) -> TwilioSmsChannel:
    """The SMS channel aimed at the fake, after checking the fake is on loopback."""
    assert is_loopback_url(fake.base_url)
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url)
    return TwilioSmsChannel(client, SMS_FROM)


def whatsapp_channel(
    fake: FakeTwilio,
    last_inbound: datetime | None,
    choose: Callable[[OutgoingMessage], TemplateCall | None] | None = None,
) -> TwilioWhatsAppChannel:
    """The WhatsApp channel aimed at the fake, with one debtor's last inbound message."""
    assert is_loopback_url(fake.base_url)
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, base_url=fake.base_url)
    return TwilioWhatsAppChannel(
        client,
        SMS_FROM,
        content_sids={"overdue-first": CONTENT_SID},
        last_inbound_at=lambda number: last_inbound if number == DEBTOR_PHONE else None,
        choose_template=choose or overdue_template,
        clock=lambda: NOW,
    )


def overdue_template(message: OutgoingMessage) -> TemplateCall:
    """The approved template that says what the overdue reminder says."""
    return TemplateCall(
        "overdue-first", {"1": message.invoice_number, "2": "$1.190.000"}
    )


# Email


def test_sendgrid_request_from_the_sdk_validates_and_returns_the_message_id(
    fake_sendgrid: FakeSendGrid,
) -> None:
    """Subject, text and HTML go out; custom_args carry our ids; X-Message-Id comes back."""
    message = outgoing("email", "ana@cliente.example")

    message_id = email_channel(fake_sendgrid).send(message)

    assert fake_sendgrid.violations == []
    assert message_id == fake_sendgrid.message_ids[-1]
    sent = fake_sendgrid.requests[-1].json()
    assert sent["subject"] == message.subject
    assert [part["type"] for part in sent["content"]] == ["text/plain", "text/html"]
    assert sent["personalizations"][0]["to"] == [{"email": "ana@cliente.example"}]
    custom = sent["personalizations"][0]["custom_args"]
    assert custom["idempotency_key"] == message.idempotency_key
    assert custom["invoice_number"] == "25568"
    # The body may name the debtor; the arguments SendGrid echoes in events must not.
    assert not any(message.body in value for value in custom.values())


def test_sendgrid_plain_text_only_email_still_satisfies_the_spec(
    fake_sendgrid: FakeSendGrid,
) -> None:
    """An email without HTML sends one text/plain part."""
    email_channel(fake_sendgrid).send(
        outgoing("email", "ana@cliente.example", html_body=None)
    )

    assert [part["type"] for part in fake_sendgrid.requests[-1].json()["content"]] == [
        "text/plain"
    ]


@pytest.mark.parametrize(
    ("status", "retryable", "failure"),
    [
        (429, True, Failure.RATE_LIMITED),
        (500, True, Failure.PROVIDER_DOWN),
        (400, False, Failure.REJECTED),
        (401, False, Failure.NOT_AUTHORISED),
        (413, False, Failure.REJECTED),
    ],
)
def test_sendgrid_answers_are_sorted_for_retry(
    fake_sendgrid: FakeSendGrid, status: int, retryable: bool, failure: Failure
) -> None:
    """429 and 5xx may pass later; any other 4xx never will."""
    fake_sendgrid.fail_next(1, sendgrid_errors(status, "refused by the fake", "from"))

    with pytest.raises(ProviderError) as raised:
        email_channel(fake_sendgrid).send(outgoing("email", "ana@cliente.example"))

    assert isinstance(raised.value, ChannelError)
    assert (raised.value.retryable, raised.value.failure) == (retryable, failure)
    assert raised.value.code == status
    assert "refused by the fake" in str(raised.value)


def test_sendgrid_retry_after_a_429_is_accepted(fake_sendgrid: FakeSendGrid) -> None:
    """The failure lasts for the requests it was set for, then SendGrid accepts."""
    channel = email_channel(fake_sendgrid)
    fake_sendgrid.fail_next(1, sendgrid_errors(429, "too many requests"))
    with pytest.raises(ProviderError):
        channel.send(outgoing("email", "ana@cliente.example"))

    message_id = channel.send(outgoing("email", "ana@cliente.example"))

    assert message_id == fake_sendgrid.message_ids[-1]
    assert len(fake_sendgrid.requests) == 2


def test_email_without_subject_or_address_is_refused_before_any_request(
    fake_sendgrid: FakeSendGrid,
) -> None:
    """What the spec would reject is refused here, permanently, and never sent."""
    channel = email_channel(fake_sendgrid)
    for message in (
        outgoing("email", "ana@cliente.example", subject=None),
        outgoing("email", DEBTOR_PHONE),
    ):
        with pytest.raises(ProviderError) as raised:
            channel.send(message)
        assert raised.value.retryable is False

    assert fake_sendgrid.requests == []


def test_sendgrid_cannot_tell_whether_a_cut_off_send_went(
    fake_sendgrid: FakeSendGrid,
) -> None:
    """Mail send has no lookup: the answer is "cannot tell", and nothing is requested."""
    channel = email_channel(fake_sendgrid)
    message = outgoing("email", "ana@cliente.example")
    channel.send(message)

    lookup = channel.look_up(earlier_attempt(message, datetime.now(UTC)))

    assert lookup == Lookup(Answer.CANNOT_TELL)
    assert len(fake_sendgrid.requests) == 1


def test_sendgrid_fake_reports_a_body_the_spec_refuses(
    fake_sendgrid: FakeSendGrid,
) -> None:
    """A raw SDK call without subject and content is a 400 and a recorded violation."""
    client = SendGridAPIClient(api_key="SG.fake", host=fake_sendgrid.base_url)
    body = {
        "personalizations": [{"to": [{"email": "ana@cliente.example"}]}],
        "from": {"email": "cobranzas@servicios-andinos.example"},
        "template_id": "d-0123456789abcdef0123456789abcdef",
    }
    with pytest.raises(Exception) as raised:
        client.send(body)

    assert getattr(raised.value, "status_code", None) == 400
    violations = fake_sendgrid.take_violations()
    assert any("'subject' is a required property" in v for v in violations)
    assert any("'content' is a required property" in v for v in violations)


# SMS


def test_twilio_sms_from_the_sdk_validates_and_returns_the_sid(
    fake_twilio: FakeTwilio,
) -> None:
    """The SDK's form post matches the spec; the SM sid is the provider id."""
    message = outgoing("sms", DEBTOR_PHONE)

    sid = sms_channel(fake_twilio).send(message)

    assert fake_twilio.violations == []
    assert sid.startswith("SM") and len(sid) == 34
    request = fake_twilio.requests[-1]
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.content_type == "application/x-www-form-urlencoded"
    assert fake_twilio.messages()[-1] == {
        "To": DEBTOR_PHONE,
        "From": SMS_FROM,
        "Body": message.body,
    }


def test_a_number_stored_as_typed_reaches_twilio_in_e164(
    fake_twilio: FakeTwilio,
) -> None:
    """Imports keep "+56 9 1234-5678"; Twilio is sent, and asked about, +56912345678."""
    channel = sms_channel(fake_twilio)
    message = outgoing("sms", "+56 9 1234-5678")
    started = datetime.now(UTC)

    sid = channel.send(message)
    lookup = channel.look_up(earlier_attempt(message, started))

    assert fake_twilio.messages()[-1]["To"] == "+56912345678"
    assert fake_twilio.lookups()[-1].query["To"] == ["+56912345678"]
    assert lookup == Lookup(Answer.TAKEN, sid)
    assert fake_twilio.violations == []


def test_twilio_fake_refuses_a_number_that_is_not_e164(
    fake_twilio: FakeTwilio,
) -> None:
    """The document asks for E.164 in words; the fake holds the SDK's callers to it."""
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, base_url=fake_twilio.base_url)

    with pytest.raises(TwilioRestException):
        client.messages.create(to="09 1234 5678", from_=SMS_FROM, body="Aviso")

    [violation] = fake_twilio.take_violations()
    assert "21211" in violation


@pytest.mark.parametrize(
    ("status", "code", "retryable", "failure"),
    [
        (429, 20429, True, Failure.RATE_LIMITED),
        (429, 63018, True, Failure.RATE_LIMITED),
        (500, 20500, True, Failure.PROVIDER_DOWN),
        (503, 20503, True, Failure.PROVIDER_DOWN),
        (400, 21610, False, Failure.OPTED_OUT),
        (400, 63016, False, Failure.OUTSIDE_WHATSAPP_WINDOW),
        (400, 21211, False, Failure.INVALID_RECIPIENT),
        (400, 21614, False, Failure.INVALID_RECIPIENT),
        (400, 21617, False, Failure.REJECTED),
    ],
)
def test_twilio_error_codes_are_sorted_for_retry(
    fake_twilio: FakeTwilio, status: int, code: int, retryable: bool, failure: Failure
) -> None:
    """Twilio's code decides first: 20429/63018 wait, 21610/63016/21211/21614 never pass."""
    fake_twilio.fail_next(1, twilio_errors(status, code, f"refused with {code}"))

    with pytest.raises(ProviderError) as raised:
        sms_channel(fake_twilio).send(outgoing("sms", DEBTOR_PHONE))

    assert (raised.value.retryable, raised.value.failure) == (retryable, failure)
    assert (raised.value.code, raised.value.status) == (code, status)
    assert f"error {code}" in str(raised.value)


def test_empty_sms_is_refused_before_any_request(fake_twilio: FakeTwilio) -> None:
    """Twilio would answer 21602; an empty text is a template fault, never retried."""
    with pytest.raises(ProviderError) as raised:
        sms_channel(fake_twilio).send(outgoing("sms", DEBTOR_PHONE, body="  "))

    assert raised.value.retryable is False
    assert fake_twilio.requests == []


def test_opted_out_number_is_a_permanent_failure(fake_twilio: FakeTwilio) -> None:
    """A debtor who replied STOP gets 21610 from Twilio: never retried, marked opted out."""
    fake_twilio.opted_out.add(DEBTOR_PHONE)

    with pytest.raises(ProviderError) as raised:
        sms_channel(fake_twilio).send(outgoing("sms", DEBTOR_PHONE))

    assert raised.value.retryable is False
    assert raised.value.failure == Failure.OPTED_OUT
    assert raised.value.code == 21610


def test_refused_connection_is_retryable(loopback_only: list[str]) -> None:
    """Nothing listening on the port: unreachable, retry later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = twilio_client(ACCOUNT_SID, AUTH_TOKEN, base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(ProviderError) as raised:
        TwilioSmsChannel(client, SMS_FROM).send(outgoing("sms", DEBTOR_PHONE))

    assert raised.value.retryable is True
    assert raised.value.failure == Failure.UNREACHABLE


def test_timeouts_are_retryable_and_say_the_message_may_have_gone() -> None:
    """A timeout cannot tell whether the provider took the message."""
    error = transport_error("sendgrid", TimeoutError("timed out"))

    assert error.retryable is True
    assert "may have accepted it" in str(error)


def test_error_texts_lose_numbers_and_addresses() -> None:
    """Provider messages quote the refused number; the error we keep does not."""
    text = redact(
        "The 'To' number +56 9 1234 5678 is not valid for ana@cliente.example."
    )

    assert "5678" not in text and "ana@" not in text
    assert "<number>" in text and "<address>" in text


def test_twilio_fake_reports_a_request_the_spec_refuses(
    fake_twilio: FakeTwilio,
) -> None:
    """A malformed ContentSid is a 400 for the channel and a violation for the test."""
    channel = whatsapp_channel(fake_twilio, last_inbound=None)
    channel._content_sids["overdue-first"] = "HX-not-a-content-sid"

    with pytest.raises(ProviderError) as raised:
        channel.send(outgoing("whatsapp", DEBTOR_PHONE))

    assert raised.value.retryable is False
    assert "does not match '^HX[0-9a-fA-F]{32}$'" in str(raised.value)
    violations = fake_twilio.take_violations()
    assert any("HX[0-9a-fA-F]{32}" in violation for violation in violations)


# WhatsApp


def test_whatsapp_three_days_after_the_last_inbound_uses_the_template(
    fake_twilio: FakeTwilio,
) -> None:
    """Outside the 24-hour window the reminder goes as ContentSid + variables, no Body."""
    channel = whatsapp_channel(fake_twilio, last_inbound=NOW - timedelta(days=3))

    sid = channel.send(outgoing("whatsapp", DEBTOR_PHONE))

    assert sid.startswith("SM")
    sent = fake_twilio.messages()
    assert len(sent) == 1
    assert "Body" not in sent[0]
    assert sent[0]["ContentSid"] == CONTENT_SID
    assert json.loads(sent[0]["ContentVariables"]) == {"1": "25568", "2": "$1.190.000"}
    assert sent[0]["To"] == f"whatsapp:{DEBTOR_PHONE}"
    assert sent[0]["From"] == f"whatsapp:{SMS_FROM}"


def test_whatsapp_inside_the_window_sends_the_rendered_text(
    fake_twilio: FakeTwilio,
) -> None:
    """A debtor who wrote two hours ago may get the free-text reminder."""
    fake_twilio.whatsapp_sessions.add(DEBTOR_PHONE)
    channel = whatsapp_channel(fake_twilio, last_inbound=NOW - timedelta(hours=2))
    message = outgoing("whatsapp", DEBTOR_PHONE)

    channel.send(message)

    sent = fake_twilio.messages()[-1]
    assert sent["Body"] == message.body
    assert "ContentSid" not in sent


def test_whatsapp_near_the_end_of_the_window_uses_the_template(
    fake_twilio: FakeTwilio,
) -> None:
    """Five minutes before the window closes is too late to trust free text."""
    channel = whatsapp_channel(
        fake_twilio, last_inbound=NOW - timedelta(hours=23, minutes=55)
    )

    channel.send(outgoing("whatsapp", DEBTOR_PHONE))

    assert "ContentSid" in fake_twilio.messages()[-1]


def test_whatsapp_outside_the_window_without_template_is_never_sent(
    fake_twilio: FakeTwilio,
) -> None:
    """No approved template: a permanent failure, and nothing reaches Twilio."""
    channel = whatsapp_channel(fake_twilio, None, choose=lambda message: None)

    with pytest.raises(ProviderError) as raised:
        channel.send(outgoing("whatsapp", DEBTOR_PHONE))

    assert raised.value.retryable is False
    assert raised.value.failure == Failure.OUTSIDE_WHATSAPP_WINDOW
    assert fake_twilio.requests == []


def test_whatsapp_63016_from_twilio_is_permanent(fake_twilio: FakeTwilio) -> None:
    """Our inbound record says open, Twilio says closed: 63016, not retried."""
    channel = whatsapp_channel(fake_twilio, last_inbound=NOW - timedelta(hours=1))

    with pytest.raises(ProviderError) as raised:
        channel.send(outgoing("whatsapp", DEBTOR_PHONE))

    assert raised.value.retryable is False
    assert raised.value.code == 63016
    assert raised.value.failure == Failure.OUTSIDE_WHATSAPP_WINDOW


def test_twilio_finds_a_cut_off_sms_by_its_text_with_a_spec_valid_list_request(
    fake_twilio: FakeTwilio,
) -> None:
    """The recipient's latest messages from our number are listed; ours matches its text."""
    channel = sms_channel(fake_twilio)
    message = outgoing("sms", DEBTOR_PHONE)
    started = datetime.now(UTC)
    sid = channel.send(message)
    channel.send(outgoing("sms", DEBTOR_PHONE, body="Otro aviso, folio 99"))

    lookup = channel.look_up(earlier_attempt(message, started))

    assert lookup == Lookup(Answer.TAKEN, sid)
    [listing] = fake_twilio.lookups()
    assert (listing.query["To"], listing.query["From"]) == ([DEBTOR_PHONE], [SMS_FROM])
    assert fake_twilio.violations == []


def test_twilio_says_an_sms_never_taken_was_not_taken(fake_twilio: FakeTwilio) -> None:
    """No recent message has the text: the cut-off attempt never reached Twilio."""
    channel = sms_channel(fake_twilio)
    message = outgoing("sms", DEBTOR_PHONE)
    channel.send(outgoing("sms", DEBTOR_PHONE, body="Otro aviso, folio 99"))
    long_after = datetime.now(UTC) + timedelta(hours=1)

    assert channel.look_up(earlier_attempt(message, datetime.now(UTC))) == Lookup(
        Answer.NOT_TAKEN
    )
    # The same text, sent well before the attempt began, is an older message, not ours.
    channel.send(message)
    assert channel.look_up(earlier_attempt(message, long_after)) == Lookup(
        Answer.NOT_TAKEN
    )


def test_twilio_cannot_tell_about_whatsapp_when_a_template_went_meanwhile(
    fake_twilio: FakeTwilio,
) -> None:
    """Twilio fills a template's text in: a recent template message may be ours."""
    channel = whatsapp_channel(fake_twilio, last_inbound=None)
    message = outgoing("whatsapp", DEBTOR_PHONE)
    started = datetime.now(UTC)
    channel.send(message)

    assert channel.look_up(earlier_attempt(message, started)) == Lookup(
        Answer.CANNOT_TELL
    )
    assert fake_twilio.violations == []


# SMS encoding


def test_jose_nunez_ibanez_is_ucs2_because_of_u_and_a_acute() -> None:
    """é and ñ are GSM-7; ú and á are not, so the whole text is UCS-2."""
    cost = analyse_sms("José Núñez Ibáñez")

    assert cost.encoding == "UCS-2"
    assert cost.non_gsm == ("ú", "á")
    assert analyse_sms("José Muñoz").encoding == "GSM-7"


def test_jose_nunez_ibanez_reminder_costs_its_true_segments() -> None:
    """A reminder naming him is billed in 67-character parts, not 153-septet ones."""
    text = (
        "Estimado José Núñez Ibáñez: su factura folio 25568 por $1.190.000 venció "
        "el 01-03-2026. Consultas: cobranzas@servicios-andinos.example. Si ya pagó, "
        "omita este aviso."
    )
    cost = analyse_sms(text)

    assert cost.encoding == "UCS-2"
    assert cost.characters == len(text)
    assert cost.segments == math.ceil(len(text) / 67)
    assert cost.non_gsm == ("ú", "á", "ó")  # venció, pagó: ó has no septet, ò has
    ascii_cost = analyse_sms(fold_to_gsm7(text))
    assert ascii_cost.encoding == "GSM-7"
    assert ascii_cost.segments == math.ceil(len(text) / 153)
    assert cost.segments > ascii_cost.segments


def test_degree_sign_makes_ucs2_and_no_dot_stays_gsm7() -> None:
    """``N°`` costs the UCS-2 rate for the whole message; ``No.`` does not."""
    filler = "Recordatorio de pago, " * 4
    with_degree = analyse_sms(f"{filler}factura N° 25568")
    with_no = analyse_sms(f"{filler}factura No. 25568")

    assert (with_degree.encoding, with_degree.non_gsm) == ("UCS-2", ("°",))
    assert (with_no.encoding, with_no.septets) == ("GSM-7", with_no.characters)
    assert with_degree.characters > 70 and with_degree.segments == 2
    assert with_no.segments == 1


def test_extension_characters_cost_two_septets_and_never_split() -> None:
    """€ is escape plus code: two septets, kept together at a segment boundary."""
    assert analyse_sms("€" * 80).septets == 160
    assert analyse_sms("€" * 80).segments == 1
    assert analyse_sms("€" * 81).segments == 2

    boundary = "a" * 152 + "€" + "a" * 152  # 306 septets, but € cannot straddle
    assert analyse_sms(boundary).septets == 2 * 153
    assert analyse_sms(boundary).segments == 3


def test_emoji_counts_two_ucs2_units_and_never_splits() -> None:
    """A character beyond the BMP takes a surrogate pair, never split across parts."""
    text = "a" * 66 + "\U0001f44d" + "a" * 66

    cost = analyse_sms(text)

    assert cost.units == 134 and cost.characters == 133
    assert cost.segments == 3


def test_empty_text_costs_nothing() -> None:
    """No text, no segment."""
    assert analyse_sms("").segments == 0


def test_transliteration_folds_chosen_fields_and_records_every_change() -> None:
    """The creditor's wording is folded; the debtor's name is kept and reported."""
    result = transliterate(
        {
            "customer_name": "José Núñez Ibáñez",
            "creditor_name": "Cobranzas Línea Ñuñoa",
            "reference": "Factura N° 25568 – “marzo”",
        },
        fields={"creditor_name", "reference"},
    )

    assert result.values["customer_name"] == "José Núñez Ibáñez"
    assert result.values["creditor_name"] == "Cobranzas Linea Ñuñoa"
    assert result.values["reference"] == 'Factura No. 25568 - "marzo"'
    assert [change.field for change in result.changes] == ["creditor_name", "reference"]
    assert result.changes[0].before == "Cobranzas Línea Ñuñoa"
    assert result.still_ucs2 == ("customer_name",)
    lines = list(describe_changes(result.changes))
    assert (
        lines[0] == "creditor_name: 'Cobranzas Línea Ñuñoa' -> 'Cobranzas Linea Ñuñoa'"
    )


def test_transliteration_leaves_gsm7_accents_alone() -> None:
    """é, ñ and ü already have septets: folding them would only lose meaning."""
    result = transliterate({"creditor_name": "Pingüino Ñandú Café"}, {"creditor_name"})

    assert result.values["creditor_name"] == "Pingüino Ñandu Café"
    assert len(result.changes) == 1


# Configuration and endpoints


def test_no_credentials_means_no_provider_channels() -> None:
    """An empty environment leaves every channel to the outbox."""
    assert provider_channels_from_env({}) is None


def test_channels_are_built_only_for_configured_providers(
    fake_twilio: FakeTwilio, fake_sendgrid: FakeSendGrid
) -> None:
    """Credentials decide which channels exist; the test URLs are loopback."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_SMS": SMS_FROM,
        "TWILIO_API_BASE_URL": fake_twilio.base_url,
    }
    channels = provider_channels_from_env(env)

    assert channels is not None and set(channels) == {"sms"}
    sms = channels["sms"]
    assert isinstance(sms, TwilioSmsChannel) and is_loopback_url(sms.base_url)
    sms.send(outgoing("sms", DEBTOR_PHONE))
    assert len(fake_twilio.requests) == 1

    env |= {
        "SENDGRID_API_KEY": "SG.fake",
        "SENDGRID_FROM": "cobranzas@servicios-andinos.example",
        "SENDGRID_HOST": fake_sendgrid.base_url,
        "TWILIO_FROM_WHATSAPP": SMS_FROM,
        "TWILIO_WHATSAPP_TEMPLATES": json.dumps({"overdue-first": CONTENT_SID}),
    }
    channels = provider_channels_from_env(env)
    assert channels is not None and set(channels) == {"email", "sms", "whatsapp"}
    email = channels["email"]
    assert isinstance(email, SendGridEmailChannel) and is_loopback_url(email.host)


def test_whatsapp_from_env_without_inbound_history_never_sends_free_text(
    fake_twilio: FakeTwilio,
) -> None:
    """No inbound lookup given: the window counts as closed, so a template or nothing."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_WHATSAPP": SMS_FROM,
        "TWILIO_API_BASE_URL": fake_twilio.base_url,
        "TWILIO_WHATSAPP_TEMPLATES": json.dumps({"overdue-first": CONTENT_SID}),
    }
    channels = provider_channels_from_env(env, choose_template=overdue_template)
    assert channels is not None

    channels["whatsapp"].send(outgoing("whatsapp", DEBTOR_PHONE))

    assert fake_twilio.messages()[-1]["ContentSid"] == CONTENT_SID


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SENDGRID_API_KEY": "SG.fake"}, "SENDGRID_FROM"),
        ({"TWILIO_ACCOUNT_SID": ACCOUNT_SID}, "TWILIO_AUTH_TOKEN"),
        (
            {"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "x"},
            "TWILIO_ACCOUNT_SID",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_WHATSAPP": SMS_FROM,
                "TWILIO_WHATSAPP_TEMPLATES": '{"overdue-first": "HXshort"}',
            },
            "TWILIO_WHATSAPP_TEMPLATES",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_API_BASE_URL": "http://twilio.example.invalid",
            },
            "TWILIO_API_BASE_URL",
        ),
    ],
)
def test_half_given_or_malformed_settings_are_refused(
    env: dict[str, str], names: str
) -> None:
    """A partial or malformed provider setting stops the worker with the setting's name."""
    with pytest.raises((ProviderConfigError, EndpointError), match=names):
        provider_channels_from_env(env)


def test_plain_http_is_only_for_this_machine() -> None:
    """Credentials travel in headers: http is allowed to loopback fakes only."""
    assert checked_base_url("http://127.0.0.1:8080/", "X") == "http://127.0.0.1:8080"
    assert (
        checked_base_url("https://api.sendgrid.com", "X") == "https://api.sendgrid.com"
    )
    with pytest.raises(EndpointError):
        checked_base_url("http://10.0.0.8:8080", "X")
    assert not is_loopback_url("https://api.twilio.com")


def test_loopback_guard_stops_lookups_of_other_hosts(loopback_only: list[str]) -> None:
    """The guard every provider test runs under refuses to resolve a remote name."""
    with pytest.raises(LeftThisMachine):
        socket.getaddrinfo("provider.example.invalid", 443)

    assert loopback_only == ["provider.example.invalid"]
    loopback_only.clear()
