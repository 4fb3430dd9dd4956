"""Provider callbacks: Twilio status and inbound texts, SendGrid events, all signature-checked."""

from __future__ import annotations

import binascii
import enum
import json
import logging
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

logger = logging.getLogger(__name__)

TWILIO_STATUS_PATH = "/twilio/status"
TWILIO_INBOUND_PATH = "/twilio/inbound"
SENDGRID_EVENTS_PATH = "/sendgrid/events"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# Twilio's own opt-out words, and what Chilean debtors write instead.
OPT_OUT_WORDS = frozenset(
    {
        "stop",
        "stop all",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "baja",
        "parar",
        "no mas",
        "detener",
        "cancelar",
    }
)


# Twilio's own opt-in words, and the Spanish a debtor who wrote BAJA would use to undo it.
OPT_IN_WORDS = frozenset({"start", "unstop", "alta", "suscribir", "suscribirme"})


class DeliveryStatus(enum.StrEnum):
    """What became of a message we sent, as far as the ledger cares."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"  # a hard bounce: the mailbox or number does not exist
    FAILED = "failed"  # the provider gave up: carrier error, dropped, undelivered
    OPTED_OUT = "opted_out"  # unsubscribe link or spam report on an email


@dataclass(frozen=True)
class DeliveryEvent:
    """A provider's report on one message, found in the ledger by ``message_id``."""

    provider: str
    message_id: str
    status: DeliveryStatus
    error_code: int | None = None
    idempotency_key: str | None = None  # echoed by SendGrid from our custom_args
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A text a debtor sent us: ``opt_out`` asks us to stop writing, ``opt_in`` to resume."""

    provider: str
    message_id: str
    channel: str  # sms or whatsapp
    sender: str  # E.164, without the whatsapp: prefix
    text: str
    opt_out: bool
    received_at: datetime
    opt_in: bool = False


WebhookEvent = DeliveryEvent | InboundMessage


def is_opt_out(text: str) -> bool:
    """True when the whole message is an opt-out word: ``STOP``, ``¡Baja!``, ``no más``."""
    # The whole message, as Twilio's own keywords work: "no más tarde del viernes" is a
    # promise to pay, not a request to stop; a person reads longer texts.
    return _normalise(text) in OPT_OUT_WORDS


def is_opt_in(text: str) -> bool:
    """True when the whole message takes an opt-out back: ``START``, ``Alta``, ``suscribir``."""
    return _normalise(text) in OPT_IN_WORDS


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    kept = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn":
            continue
        kept.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(kept).casefold().split())


def parse_twilio_status(form: Mapping[str, str]) -> DeliveryEvent | None:
    """A Twilio status callback as an event; None for steps on the way (queued, sent)."""
    status = {
        "delivered": DeliveryStatus.DELIVERED,
        "read": DeliveryStatus.DELIVERED,
        "undelivered": DeliveryStatus.FAILED,
        "failed": DeliveryStatus.FAILED,
    }.get(form.get("MessageStatus", ""))
    if status is None or not form.get("MessageSid"):
        return None
    code = form.get("ErrorCode")
    return DeliveryEvent(
        "twilio", form["MessageSid"], status, int(code) if code else None
    )


def parse_twilio_inbound(
    form: Mapping[str, str], received_at: datetime
) -> InboundMessage:
    """A debtor's SMS or WhatsApp to our number, with its opt-out verdict."""
    sender = form.get("From", "")
    text = form.get("Body", "")
    return InboundMessage(
        provider="twilio",
        message_id=form.get("MessageSid", ""),
        channel="whatsapp" if sender.startswith("whatsapp:") else "sms",
        sender=sender.removeprefix("whatsapp:"),
        text=text,
        opt_out=is_opt_out(text),
        received_at=received_at,
        opt_in=is_opt_in(text),
    )


_SENDGRID_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "bounce": DeliveryStatus.BOUNCED,
    "dropped": DeliveryStatus.FAILED,
    "unsubscribe": DeliveryStatus.OPTED_OUT,
    "group_unsubscribe": DeliveryStatus.OPTED_OUT,
    "spamreport": DeliveryStatus.OPTED_OUT,
}


def parse_sendgrid_events(payload: str) -> list[DeliveryEvent]:
    """SendGrid's event batch as events; opens, clicks and deferrals are left out."""
    events = []
    for item in json.loads(payload):
        status = _SENDGRID_STATUS.get(str(item.get("event")))
        if status is None or not item.get("sg_message_id"):
            continue
        if status is DeliveryStatus.BOUNCED and item.get("type") == "blocked":
            # A receiving server refused for now (reputation, full mailbox): this message
            # failed, but the address exists and must not be closed as a hard bounce.
            status = DeliveryStatus.FAILED
        # sg_message_id is the X-Message-Id we stored, then ".filter..." per recipient.
        message_id = str(item["sg_message_id"]).split(".", 1)[0]
        stamp = item.get("timestamp")
        events.append(
            DeliveryEvent(
                "sendgrid",
                message_id,
                status,
                idempotency_key=item.get("idempotency_key"),
                occurred_at=datetime.fromtimestamp(stamp, UTC) if stamp else None,
            )
        )
    return events


@dataclass(frozen=True)
class WebhookSecrets:
    """What proves a callback came from the provider; a missing one turns its route off."""

    public_url: str  # as the providers call us, e.g. https://hooks.example.cl
    twilio_auth_token: str | None = None
    sendgrid_public_key: str | None = None  # the base64 key from Mail Settings


@dataclass(frozen=True)
class WebhookReply:
    """Status, content type and body sent back to the provider."""

    status: int
    content_type: str = "text/plain"
    body: bytes = b""


class WebhookApp:
    """Checks signatures, parses, and hands each event to ``on_event``."""

    def __init__(
        self,
        secrets: WebhookSecrets,
        on_event: Callable[[WebhookEvent], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._secrets = secrets
        self._on_event = on_event
        self._clock = clock
        token = secrets.twilio_auth_token
        key = secrets.sendgrid_public_key
        self._twilio = RequestValidator(token) if token else None
        self._sendgrid = EventWebhook(key) if key else None

    def handle(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookReply:
        """Answer one POST; 403 for a wrong signature, 500 if applying the event failed."""
        route = urlsplit(path).path
        if route in (TWILIO_STATUS_PATH, TWILIO_INBOUND_PATH) and self._twilio:
            return self._twilio_callback(path, headers, body)
        if route == SENDGRID_EVENTS_PATH and self._sendgrid:
            return self._sendgrid_events(headers, body)
        return WebhookReply(404)

    def _twilio_callback(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookReply:
        assert self._twilio is not None
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        url = self._secrets.public_url.rstrip("/") + path
        signature = headers.get("x-twilio-signature", "")
        if not signature or not self._twilio.validate(url, form, signature):
            return _forbidden(path)
        if urlsplit(path).path == TWILIO_INBOUND_PATH:
            event: WebhookEvent | None = parse_twilio_inbound(form, self._clock())
        else:
            event = parse_twilio_status(form)
        if event is not None and not self._apply(event):
            return WebhookReply(500)
        # An empty TwiML answer: Twilio sends no automatic reply to the debtor.
        return WebhookReply(200, "text/xml", EMPTY_TWIML)

    def _sendgrid_events(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        assert self._sendgrid is not None
        payload = body.decode("utf-8")
        signature = headers.get(SENDGRID_SIGNATURE.lower(), "")
        timestamp = headers.get(SENDGRID_TIMESTAMP.lower(), "")
        try:
            valid = self._sendgrid.verify_signature(payload, signature, timestamp)
        except (binascii.Error, ValueError):
            valid = False
        if not (signature and timestamp and valid):
            return _forbidden(SENDGRID_EVENTS_PATH)
        try:
            events = parse_sendgrid_events(payload)
        except (ValueError, TypeError, AttributeError):
            return WebhookReply(400, body=b"not a SendGrid event batch")
        if not all(self._apply(event) for event in events):
            return WebhookReply(500)
        return WebhookReply(200)

    def _apply(self, event: WebhookEvent) -> bool:
        try:
            self._on_event(event)
        except Exception:
            # The provider retries on 5xx: the event is not lost, only delayed.
            logger.exception(
                "could not apply %s event %s", event.provider, event.message_id
            )
            return False
        return True


def _forbidden(path: str) -> WebhookReply:
    logger.warning("refused a callback on %s: missing or wrong signature", path)
    return WebhookReply(403, body=b"signature check failed")


class WebhookServer:
    """The webhook app on a local port; a TLS proxy in front makes it public."""

    def __init__(self, app: WebhookApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.app = app  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def url(self) -> str:
        """``http://host:port`` of the listening socket."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        """Read the body, let the app judge it, write its reply."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        app: WebhookApp = self.server.app  # type: ignore[attr-defined]
        reply = app.handle(self.path, headers, body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: refusals are logged by the app, without the caller's data."""
