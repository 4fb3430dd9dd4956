"""SMS and WhatsApp through the official Twilio SDK, with WhatsApp's 24-hour window kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from requests import RequestException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from receivables.channels import (
    Answer,
    EarlierAttempt,
    Lookup,
    OutgoingMessage,
    text_fingerprint,
)
from receivables.providers.endpoints import TWILIO_API_BASE_URL, checked_base_url
from receivables.providers.errors import (
    Failure,
    ProviderError,
    transport_error,
    twilio_error,
)
from receivables.providers.sms_encoding import analyse_sms

logger = logging.getLogger(__name__)
PROVIDER = "twilio"
WHATSAPP_WINDOW = timedelta(hours=24)
# Twilio judges the window when it processes the message, not when we decide: keep clear
# of the edge so a message decided at 23h59 does not arrive as free text at 24h01.
WINDOW_MARGIN = timedelta(minutes=10)
# A retry after a cut-off attempt reads this many of the recipient's latest messages from
# our sender; ours, if it went, was created moments before the cut.
LOOKUP_LIMIT = 20
# Our clock and Twilio's may disagree: a message created this long before the attempt
# began still counts as possibly ours.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class TemplateCall:
    """An approved WhatsApp template by our template id, with its numbered variables."""

    template_id: str
    variables: Mapping[str, str] = field(default_factory=dict)


# Given the recipient as stored (``+569...``), when the debtor last wrote to us, if ever.
LastInboundLookup = Callable[[str], datetime | None]
# Given a message, the template that says the same thing, if there is one.
TemplateChooser = Callable[[OutgoingMessage], TemplateCall | None]


def twilio_client(
    account_sid: str,
    auth_token: str,
    *,
    base_url: str = TWILIO_API_BASE_URL,
    timeout_seconds: float = 10.0,
) -> Client:
    """A Twilio client whose Messages calls go to ``base_url`` and time out."""
    client = Client(
        account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout_seconds)
    )
    client.api.base_url = checked_base_url(base_url, "TWILIO_API_BASE_URL")
    if base_url.rstrip("/") != TWILIO_API_BASE_URL:
        # TWILIO_EDGE / TWILIO_REGION from the environment would rewrite the host name.
        client.edge = None
        client.region = None
    return client


class _TwilioChannel:
    """What SMS and WhatsApp share: the client, the create call and error sorting."""

    def __init__(
        self, client: Client, sender: str, status_callback: str | None
    ) -> None:
        self._client = client
        self._sender = sender
        self._status_callback = status_callback

    @property
    def base_url(self) -> str:
        """Where Messages requests go: the real API, or a fake on this machine in tests."""
        return str(self._client.api.base_url)

    def _create(self, message: OutgoingMessage, fields: dict[str, Any]) -> str:
        if "body" in fields and not str(fields["body"]).strip():
            raise ProviderError(
                f"{message.channel} {message.step_id} of {message.invoice_number} has an "
                "empty text; fix its template",
                retryable=False,
                provider=PROVIDER,
                failure=Failure.REJECTED,
            )
        if self._status_callback:
            fields["status_callback"] = self._status_callback
        try:
            created = self._client.messages.create(**fields)
        except TwilioRestException as error:
            raise twilio_error(error.status, _int(error.code), error.msg) from error
        except TwilioServiceException as error:
            detail = error.detail or error.title
            raise twilio_error(error.status, _int(error.code), detail) from error
        except (RequestException, OSError) as error:
            raise transport_error(PROVIDER, error) from error
        logger.info(
            "twilio accepted %s of %s as %s, status %s",
            message.step_id,
            message.invoice_number,
            created.sid,
            created.status,
        )
        return str(created.sid)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Find a cut-off attempt among the recipient's latest messages by its exact text."""
        # Not filtered by DateSent: a message still queued at Twilio has no date_sent yet,
        # and that is just the message a cut-off attempt may have left behind.
        try:
            listed = self._client.messages.list(
                to=self._address(attempt.recipient),
                from_=self._sender,
                limit=LOOKUP_LIMIT,
                page_size=LOOKUP_LIMIT,
            )
        except TwilioRestException as error:
            refusal = twilio_error(error.status, _int(error.code), error.msg)
            if refusal.retryable:
                raise refusal from error
            logger.warning("twilio refused the message lookup: %s", refusal)
            return Lookup(Answer.CANNOT_TELL)
        except (RequestException, OSError) as error:
            raise transport_error(PROVIDER, error) from error
        since = attempt.started_at - CLOCK_SKEW
        recent = [
            message
            for message in listed
            if message.date_created is None or message.date_created >= since
        ]
        for message in recent:
            if message.body is not None and (
                text_fingerprint(message.body) == attempt.message_sha256
            ):
                return Lookup(Answer.TAKEN, str(message.sid))
        return self._unmatched(recent)

    def _address(self, recipient: str) -> str:
        return e164(recipient)

    def _unmatched(self, recent: list[Any]) -> Lookup:
        """No recent message has our text: for SMS, whose text is ours verbatim, none went."""
        return Lookup(Answer.NOT_TAKEN)


class TwilioSmsChannel(_TwilioChannel):
    """Sends the rendered text as SMS; the encoding and segments are logged for cost."""

    def __init__(
        self, client: Client, sender: str, *, status_callback: str | None = None
    ) -> None:
        super().__init__(client, sender, status_callback)

    def send(self, message: OutgoingMessage) -> str:
        """Create the SMS; raise ProviderError, retryable or not, when Twilio refuses it."""
        cost = analyse_sms(message.body)
        logger.info(
            "sms %s of %s: %s, %d segments",
            message.step_id,
            message.invoice_number,
            cost.encoding,
            cost.segments,
        )
        fields = {
            "to": e164(message.recipient),
            "from_": self._sender,
            "body": message.body,
        }
        return self._create(message, fields)


class TwilioWhatsAppChannel(_TwilioChannel):
    """Free text inside the 24-hour window; an approved template outside it, never text."""

    def __init__(
        self,
        client: Client,
        sender: str,
        *,
        content_sids: Mapping[str, str],
        last_inbound_at: LastInboundLookup,
        choose_template: TemplateChooser,
        status_callback: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(client, whatsapp_address(sender), status_callback)
        self._content_sids = dict(content_sids)
        self._last_inbound_at = last_inbound_at
        self._choose_template = choose_template
        self._clock = clock

    def send(self, message: OutgoingMessage) -> str:
        """Create the WhatsApp message as free text or template, as the window allows."""
        fields: dict[str, Any] = {
            "to": whatsapp_address(message.recipient),
            "from_": self._sender,
        }
        if self.window_open(message.recipient):
            fields["body"] = message.body
        else:
            content_sid, variables = self._template_for(message)
            fields["content_sid"] = content_sid
            fields["content_variables"] = json.dumps(variables, ensure_ascii=False)
        return self._create(message, fields)

    def _address(self, recipient: str) -> str:
        return whatsapp_address(recipient)

    def _unmatched(self, recent: list[Any]) -> Lookup:
        """A recent message may be our template, whose text Twilio fills in: cannot tell."""
        return Lookup(Answer.CANNOT_TELL if recent else Answer.NOT_TAKEN)

    def window_open(self, recipient: str) -> bool:
        """True while the debtor's last message is recent enough for free text."""
        last = self._last_inbound_at(_bare_number(recipient))
        if last is None:
            return False
        if last.tzinfo is None:
            raise ValueError("last inbound time must be an aware datetime (UTC)")
        return self._clock() - last < WHATSAPP_WINDOW - WINDOW_MARGIN

    def _template_for(self, message: OutgoingMessage) -> tuple[str, dict[str, str]]:
        call = self._choose_template(message)
        content_sid = self._content_sids.get(call.template_id) if call else None
        if call is None or content_sid is None:
            wanted = call.template_id if call else "none chosen"
            raise ProviderError(
                f"whatsapp {message.step_id} of {message.invoice_number} is outside the "
                f"24-hour window and has no approved template ({wanted}); add its "
                "ContentSid to TWILIO_WHATSAPP_TEMPLATES or use another channel",
                retryable=False,
                provider=PROVIDER,
                failure=Failure.OUTSIDE_WHATSAPP_WINDOW,
            )
        return content_sid, {
            str(key): str(value) for key, value in call.variables.items()
        }


def template_from_message(message: OutgoingMessage) -> TemplateCall | None:
    """The template a message names in ``template_id`` / ``template_variables``, if any."""
    # Limit: OutgoingMessage does not carry these fields yet; until it does, pass a
    # chooser to the channel, or every WhatsApp outside the window fails permanently.
    template_id = getattr(message, "template_id", None)
    if not template_id:
        return None
    variables = getattr(message, "template_variables", None) or {}
    return TemplateCall(str(template_id), dict(variables))


def e164(number: str) -> str:
    """A stored number as Twilio reads it: ``+56 9 1234-5678`` becomes ``+56912345678``."""
    # Imports keep numbers as the debtor wrote them; Twilio wants E.164, reports numbers in
    # it (STOP, status callbacks), and filters its message list by it.
    bare = _bare_number(number.strip())
    digits = "".join(char for char in bare if char.isdigit())
    return ("+" if bare.startswith("+") else "") + digits


def whatsapp_address(number: str) -> str:
    """Twilio's WhatsApp address of a phone number: ``whatsapp:+56912345678``."""
    return f"whatsapp:{e164(number)}"


def _bare_number(address: str) -> str:
    return address.removeprefix("whatsapp:")


def _int(code: Any) -> int | None:
    try:
        return int(code)
    except (TypeError, ValueError):
        return None
