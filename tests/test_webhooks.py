"""Provider callbacks: signatures checked over real HTTP, events parsed, opt-outs found."""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from receivables.providers.endpoints import is_loopback_url
from receivables.webhooks import (
    SENDGRID_EVENTS_PATH,
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    TWILIO_INBOUND_PATH,
    TWILIO_STATUS_PATH,
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    WebhookApp,
    WebhookEvent,
    WebhookSecrets,
    WebhookServer,
    is_opt_out,
    parse_sendgrid_events,
)

pytest_plugins = ("tests.fakes.fixtures",)

AUTH_TOKEN = "fake-auth-token"
PUBLIC_URL = "https://hooks.servicios-andinos.example"
NOW = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
MESSAGE_SID = "SM" + "a" * 32


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    """A throwaway P-256 key standing in for SendGrid's signing key."""
    return ec.generate_private_key(ec.SECP256R1())


class Hooks:
    """A running webhook server and the events it handed on."""

    def __init__(self, server: WebhookServer, events: list[WebhookEvent]) -> None:
        self.server = server
        self.events = events

    def post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """POST to the local server; return status and body, error statuses included."""
        assert is_loopback_url(self.server.url)
        request = urllib.request.Request(
            self.server.url + path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post_twilio(
        self, path: str, form: dict[str, str], *, token: str = AUTH_TOKEN
    ) -> tuple[int, bytes]:
        """A form callback signed as Twilio signs it, with ``token``."""
        signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        return self.post(path, urlencode(form).encode(), headers)


@pytest.fixture
def hooks(
    sendgrid_key: ec.EllipticCurvePrivateKey, loopback_only: list[str]
) -> Iterator[Hooks]:
    """The webhook server on 127.0.0.1 with Twilio's token and SendGrid's public key."""
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets = WebhookSecrets(PUBLIC_URL, AUTH_TOKEN, base64.b64encode(public).decode())
    events: list[WebhookEvent] = []
    with WebhookServer(WebhookApp(secrets, events.append, clock=lambda: NOW)) as server:
        yield Hooks(server, events)


def status_form(status: str, error_code: str = "") -> dict[str, str]:
    """A Twilio status callback for our message."""
    form = {
        "MessageSid": MESSAGE_SID,
        "MessageStatus": status,
        "To": "+56912345678",
        "From": "+15005550006",
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


def test_twilio_status_with_a_wrong_signature_is_refused_and_logged(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed with another token: 403, a warning, and no event."""
    with caplog.at_level(logging.WARNING, logger="receivables.webhooks"):
        status, _ = hooks.post_twilio(
            TWILIO_STATUS_PATH, status_form("delivered"), token="another-token"
        )

    assert status == 403
    assert hooks.events == []
    assert "signature" in caplog.text and TWILIO_STATUS_PATH in caplog.text
    assert "+56912345678" not in caplog.text


def test_twilio_status_without_signature_is_refused(hooks: Hooks) -> None:
    """No X-Twilio-Signature at all is refused the same way."""
    body = urlencode(status_form("delivered")).encode()

    status, _ = hooks.post(
        TWILIO_STATUS_PATH, body, {"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert status == 403
    assert hooks.events == []


@pytest.mark.parametrize(
    ("twilio_status", "code", "expected"),
    [
        ("delivered", "", DeliveryStatus.DELIVERED),
        ("read", "", DeliveryStatus.DELIVERED),
        ("undelivered", "30003", DeliveryStatus.FAILED),
        ("failed", "63016", DeliveryStatus.FAILED),
    ],
)
def test_signed_twilio_status_becomes_a_delivery_event(
    hooks: Hooks, twilio_status: str, code: str, expected: DeliveryStatus
) -> None:
    """Final statuses are handed on with the error code; Twilio gets empty TwiML."""
    status, body = hooks.post_twilio(
        TWILIO_STATUS_PATH, status_form(twilio_status, code)
    )

    assert status == 200 and b"<Response>" in body
    assert hooks.events == [
        DeliveryEvent("twilio", MESSAGE_SID, expected, int(code) if code else None)
    ]


def test_in_flight_twilio_status_is_acknowledged_without_event(hooks: Hooks) -> None:
    """queued and sent are steps on the way: nothing for the ledger."""
    status, _ = hooks.post_twilio(TWILIO_STATUS_PATH, status_form("sent"))

    assert status == 200
    assert hooks.events == []


def test_inbound_whatsapp_baja_is_an_opt_out(hooks: Hooks) -> None:
    """A debtor's ``¡BAJA!`` on WhatsApp arrives as an inbound opt-out."""
    form = {
        "MessageSid": MESSAGE_SID,
        "From": "whatsapp:+56912345678",
        "To": "whatsapp:+15005550006",
        "Body": "¡BAJA!",
    }

    status, _ = hooks.post_twilio(TWILIO_INBOUND_PATH, form)

    assert status == 200
    assert hooks.events == [
        InboundMessage(
            "twilio", MESSAGE_SID, "whatsapp", "+56912345678", "¡BAJA!", True, NOW
        )
    ]


def test_failure_to_apply_an_event_asks_twilio_to_retry(
    sendgrid_key: ec.EllipticCurvePrivateKey, loopback_only: list[str]
) -> None:
    """If the ledger cannot take the event, 500 makes the provider send it again."""

    def broken(event: WebhookEvent) -> None:
        """A ledger that is down."""
        raise RuntimeError("store unavailable")

    app = WebhookApp(WebhookSecrets(PUBLIC_URL, AUTH_TOKEN), broken, clock=lambda: NOW)
    with WebhookServer(app) as server:
        status, _ = Hooks(server, []).post_twilio(
            TWILIO_STATUS_PATH, status_form("delivered")
        )

    assert status == 500


def sign_sendgrid(
    key: ec.EllipticCurvePrivateKey, payload: str, timestamp: str
) -> dict[str, str]:
    """The headers SendGrid's signed event webhook sends."""
    signature = key.sign((timestamp + payload).encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        SENDGRID_SIGNATURE: base64.b64encode(signature).decode(),
        SENDGRID_TIMESTAMP: timestamp,
    }


SENDGRID_BATCH = [
    {
        "email": "ana@cliente.example",
        "timestamp": 1774969200,
        "event": "delivered",
        "sg_message_id": "Na_QX2IHXwET_KurFjNULQ.filterdrecv-5f8d-1-0",
        "idempotency_key": "acme|25568|R2|email|ana@cliente.example",
    },
    {
        "email": "ana@cliente.example",
        "timestamp": 1774969300,
        "event": "open",
        "sg_message_id": "Na_QX2IHXwET_KurFjNULQ.filterdrecv-5f8d-1-0",
    },
    {
        "email": "bruno@cliente.example",
        "timestamp": 1774969400,
        "event": "bounce",
        "type": "bounce",
        "sg_message_id": "Xy12.filterdrecv-5f8d-1-1",
    },
]


def test_signed_sendgrid_events_are_parsed(
    hooks: Hooks, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    """Delivered and bounced become events under the X-Message-Id; opens are left out."""
    payload = json.dumps(SENDGRID_BATCH)

    status, _ = hooks.post(
        SENDGRID_EVENTS_PATH,
        payload.encode(),
        sign_sendgrid(sendgrid_key, payload, "1"),
    )

    assert status == 200
    assert [(e.message_id, e.status) for e in hooks.events] == [
        ("Na_QX2IHXwET_KurFjNULQ", DeliveryStatus.DELIVERED),
        ("Xy12", DeliveryStatus.BOUNCED),
    ]
    first = hooks.events[0]
    assert isinstance(first, DeliveryEvent)
    assert first.idempotency_key == SENDGRID_BATCH[0]["idempotency_key"]
    assert first.occurred_at == datetime.fromtimestamp(1774969200, UTC)


@pytest.mark.parametrize(
    ("bounce_type", "status"),
    [("bounce", DeliveryStatus.BOUNCED), ("blocked", DeliveryStatus.FAILED)],
)
def test_only_a_hard_sendgrid_bounce_counts_as_bounced(
    bounce_type: str, status: DeliveryStatus
) -> None:
    """A "blocked" bounce is a refusal for now: the message failed, the address exists."""
    item = {
        "email": "bruno@cliente.example",
        "timestamp": 1774969400,
        "event": "bounce",
        "type": bounce_type,
        "sg_message_id": "Xy12.filterdrecv-5f8d-1-1",
    }

    [event] = parse_sendgrid_events(json.dumps([item]))

    assert (event.message_id, event.status) == ("Xy12", status)


def test_sendgrid_events_with_a_changed_payload_are_refused(
    hooks: Hooks, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    """A signature over other bytes, or none at all, is a 403 and no event."""
    signed = json.dumps(SENDGRID_BATCH[:1])
    tampered = signed.replace("delivered", "bounce")
    headers = sign_sendgrid(sendgrid_key, signed, "1")

    assert hooks.post(SENDGRID_EVENTS_PATH, tampered.encode(), headers)[0] == 403
    unsigned = {"Content-Type": "application/json"}
    assert hooks.post(SENDGRID_EVENTS_PATH, signed.encode(), unsigned)[0] == 403
    garbled = headers | {SENDGRID_SIGNATURE: "not base64!"}
    assert hooks.post(SENDGRID_EVENTS_PATH, signed.encode(), garbled)[0] == 403
    assert hooks.events == []


def test_unknown_paths_are_not_found(hooks: Hooks) -> None:
    """Only the three callback paths answer."""
    assert hooks.post("/admin", b"", {})[0] == 404


def test_the_server_listens_on_loopback_by_default() -> None:
    """Nothing is exposed beyond this machine unless a host is given."""
    app = WebhookApp(WebhookSecrets(PUBLIC_URL), lambda event: None)
    with WebhookServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "  stop  ",
        "Stop.",
        "STOP ALL",
        "stopall",
        "¡BAJA!",
        "baja",
        "Parar",
        "NO MÁS",
        "no mas",
        "No  Más!!",
        "DETENER",
        "Cancelar.",
        "«detener»",
        "stop 🛑",
    ],
)
def test_opt_out_words_are_found_whatever_the_case_accents_and_punctuation(
    text: str,
) -> None:
    """The opt-out word alone, in any case, with or without accents and punctuation."""
    assert is_opt_out(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no más tarde del viernes le pago",
        "Quiero pagar, ¿me manda el link?",
        "bajar el monto",
        "stopper",
        "cancelaré mañana",
        "no",
    ],
)
def test_texts_that_merely_contain_a_word_are_not_opt_outs(text: str) -> None:
    """A sentence goes to a person: it may be a promise to pay, not a refusal."""
    assert is_opt_out(text) is False
