"""Provider answers sorted into retry-later and never-retry, with the provider's own code."""

from __future__ import annotations

import enum
import re

from receivables.channels import ChannelError


class Failure(enum.StrEnum):
    """Why a provider did not take a message, in the terms the ledger and opt-outs need."""

    RATE_LIMITED = "rate_limited"
    PROVIDER_DOWN = "provider_down"
    UNREACHABLE = (
        "unreachable"  # timeout or connection error: the message may have gone
    )
    OPTED_OUT = "opted_out"
    OUTSIDE_WHATSAPP_WINDOW = "outside_whatsapp_window"
    INVALID_RECIPIENT = "invalid_recipient"
    NOT_AUTHORISED = "not_authorised"
    REJECTED = "rejected"


class ProviderError(ChannelError):
    """A provider's refusal: ``code`` is its error code (Twilio's 21610) or the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        provider: str,
        failure: Failure,
        code: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.provider = provider
        self.failure = failure
        self.code = code
        self.status = status


# Provider messages quote the number or address they refused ("The 'To' number +569...").
_PHONE = re.compile(r"\+?\d(?:[\s().-]?\d){7,}")
_EMAIL = re.compile(r"[^\s'\"<>@]+@[^\s'\"<>@]+")

# Twilio error codes: https://www.twilio.com/docs/api/errors/<code>
TWILIO_RETRYABLE = {
    20429: Failure.RATE_LIMITED,  # too many requests to the account
    63018: Failure.RATE_LIMITED,  # WhatsApp rate limit for the sender
    20500: Failure.PROVIDER_DOWN,
    20503: Failure.PROVIDER_DOWN,
}
TWILIO_PERMANENT = {
    21610: Failure.OPTED_OUT,  # the recipient replied STOP to this sender
    63016: Failure.OUTSIDE_WHATSAPP_WINDOW,  # free-form text after the 24-hour window
    21211: Failure.INVALID_RECIPIENT,  # not a valid phone number
    21614: Failure.INVALID_RECIPIENT,  # not a mobile number
    21408: Failure.REJECTED,  # sending to that region is not enabled on the account
    20003: Failure.NOT_AUTHORISED,
}
_WHAT_TO_DO = {
    Failure.RATE_LIMITED: "retry later, slower",
    Failure.PROVIDER_DOWN: "retry later",
    Failure.UNREACHABLE: "retry later; the provider may have accepted it",
    Failure.OPTED_OUT: "record the opt-out; do not contact this number on this channel",
    Failure.OUTSIDE_WHATSAPP_WINDOW: "send an approved template instead of free text",
    Failure.INVALID_RECIPIENT: "correct the customer's number",
    Failure.NOT_AUTHORISED: "check the provider credentials and sender",
    Failure.REJECTED: "read the provider's message; resending the same will fail again",
}


def twilio_error(status: int | None, code: int | None, detail: str) -> ProviderError:
    """Classify a Twilio error answer by its error code first, then by its HTTP status."""
    if code in TWILIO_RETRYABLE:
        return _build("twilio", TWILIO_RETRYABLE[code], True, code, status, detail)
    if code in TWILIO_PERMANENT:
        return _build("twilio", TWILIO_PERMANENT[code], False, code, status, detail)
    return http_error("twilio", status, detail, code=code)


def http_error(
    provider: str, status: int | None, detail: str, *, code: int | None = None
) -> ProviderError:
    """Classify by HTTP status: 429 and 5xx may pass on retry, any other 4xx will not."""
    if status == 429:
        failure, retryable = Failure.RATE_LIMITED, True
    elif status is None or status >= 500:
        failure, retryable = Failure.PROVIDER_DOWN, True
    elif status in (401, 403):
        failure, retryable = Failure.NOT_AUTHORISED, False
    else:
        failure, retryable = Failure.REJECTED, False
    return _build(provider, failure, retryable, code or status, status, detail)


def transport_error(provider: str, error: BaseException) -> ProviderError:
    """A timeout or a refused connection: retryable, though the message may have gone."""
    detail = f"{type(error).__name__}: {error}"
    return _build(provider, Failure.UNREACHABLE, True, None, None, detail)


def redact(detail: str) -> str:
    """Mask phone numbers and email addresses: error texts reach workflow histories."""
    masked = _EMAIL.sub("<address>", detail.strip().rstrip("."))
    return _PHONE.sub("<number>", masked)


def _build(
    provider: str,
    failure: Failure,
    retryable: bool,
    code: int | None,
    status: int | None,
    detail: str,
) -> ProviderError:
    label = f"{provider} error {code}" if code is not None else f"{provider} error"
    http = f" (HTTP {status})" if status is not None and status != code else ""
    message = f"{label}{http}, {failure}: {redact(detail)}; {_WHAT_TO_DO[failure]}"
    return ProviderError(
        message,
        retryable=retryable,
        provider=provider,
        failure=failure,
        code=code,
        status=status,
    )
