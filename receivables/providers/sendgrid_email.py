"""Email through the official SendGrid SDK (v3 mail send), errors sorted for retries."""

from __future__ import annotations

import hashlib
import json
import logging
from http.client import HTTPException
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, From, Mail, To

from receivables.channels import Answer, EarlierAttempt, Lookup, OutgoingMessage
from receivables.providers.endpoints import SENDGRID_HOST, checked_base_url
from receivables.providers.errors import (
    Failure,
    ProviderError,
    http_error,
    transport_error,
)

logger = logging.getLogger(__name__)
PROVIDER = "sendgrid"


class SendGridEmailChannel:
    """Sends subject, plain text and HTML; the ``X-Message-Id`` answer is the message id."""

    def __init__(
        self,
        api_key: str,
        sender: str,
        *,
        sender_name: str | None = None,
        host: str = SENDGRID_HOST,
        timeout_seconds: float = 10.0,
    ) -> None:
        if not api_key or not sender:
            raise ValueError(
                "SendGridEmailChannel needs an API key and a sender address"
            )
        self._sender = From(sender, sender_name)
        self.host = checked_base_url(host, "SENDGRID_HOST")
        self._client = SendGridAPIClient(api_key=api_key, host=self.host)
        # The SDK exposes no timeout; its HTTP client reads this one on every call.
        self._client.client.timeout = timeout_seconds

    def send(self, message: OutgoingMessage) -> str:
        """Post one email; raise ProviderError, retryable or not, when SendGrid refuses it."""
        mail = self._mail(message)
        try:
            response = self._client.send(mail)
        except HTTPError as error:
            raise _refusal(error) from error
        except (HTTPException, OSError) as error:  # timeouts and URLError are OSErrors
            raise transport_error(PROVIDER, error) from error

        message_id = response.headers.get("X-Message-Id")
        if not message_id:
            # Accepted (2xx) without an id: raising would make the activity send it twice.
            logger.warning("sendgrid accepted %s without X-Message-Id", message.step_id)
            digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()
            return f"sendgrid-accepted-{digest[:20]}"
        return str(message_id)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Cannot tell: mail send offers no way to ask whether a message was accepted."""
        # The v3 mail send document we hold has one operation, POST /v3/mail/send. Our key
        # does travel in custom_args, so the Email Activity API or the event webhook could
        # show it later; neither is in the spec, and events may come minutes after the
        # retry. The policy's on_unknown_outcome decides: resend or hold for a person.
        return Lookup(Answer.CANNOT_TELL)

    def _mail(self, message: OutgoingMessage) -> Mail:
        if "@" not in message.recipient.strip("@"):
            raise ProviderError(
                f"email for {message.step_id} of {message.invoice_number} has no email "
                "address as recipient; correct the customer's email",
                retryable=False,
                provider=PROVIDER,
                failure=Failure.INVALID_RECIPIENT,
            )
        if not message.subject or not message.body.strip():
            raise ProviderError(
                f"email for {message.step_id} of {message.invoice_number} has no subject "
                "or no text body; fix the email template",
                retryable=False,
                provider=PROVIDER,
                failure=Failure.REJECTED,
            )
        mail = Mail(
            from_email=self._sender,
            to_emails=To(message.recipient),
            subject=message.subject,
            plain_text_content=message.body,
            html_content=message.html_body or None,
        )
        # At the personalization: the v3 spec types the message-level custom_args as a
        # string, while SendGrid and its SDK send an object.
        for key, value in _custom_args(message).items():
            mail.add_custom_arg(CustomArg(key, value, p=0))
        return mail


def _custom_args(message: OutgoingMessage) -> dict[str, str]:
    """Our ids, echoed back by SendGrid events; no personal data besides the recipient."""
    return {
        "idempotency_key": message.idempotency_key,
        "tenant": message.tenant,
        "invoice_number": message.invoice_number,
        "step_id": message.step_id,
        "policy": f"{message.policy_name}@{message.policy_version}",
    }


def _refusal(error: HTTPError) -> ProviderError:
    status = int(error.status_code)
    return http_error(PROVIDER, status, _error_text(error.body) or str(error.reason))


def _error_text(body: Any) -> str:
    """Join SendGrid's ``errors[].message`` (with their fields) into one line."""
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        errors = data.get("errors") or []
        parts = [
            f"{item.get('field')}: {item['message']}"
            if item.get("field")
            else item["message"]
            for item in errors
        ]
    except (ValueError, AttributeError, KeyError, TypeError):
        return ""
    return "; ".join(parts)
