"""How messages leave the system: the channel interface and the credential-free outbox."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from receivables.store import OutboxMessage, session_scope, utc_now


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message ready for a channel, with the key that makes delivery idempotent."""

    idempotency_key: str
    tenant: str
    invoice_number: str
    step_id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    html_body: str | None
    policy_name: str
    policy_version: int
    # For channels that must use pre-approved templates (WhatsApp outside the 24-hour window):
    # our template id and its numbered variables (folio, amount asked, due date).
    template_id: str | None = None
    template_variables: dict[str, str] = field(default_factory=dict)


class ChannelError(Exception):
    """A channel refused or failed a message; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class EarlierAttempt:
    """An attempt whose outcome was lost: what a channel is asked about before resending."""

    idempotency_key: str
    recipient: str
    message_sha256: str  # of the text handed to the channel, recorded before the call
    started_at: datetime  # the message, if it went, was created after this instant


class Answer(enum.StrEnum):
    """What a channel can say about an earlier attempt."""

    TAKEN = "taken"  # it holds the message: do not send it again
    NOT_TAKEN = "not taken"  # it can tell, and it never took the message
    CANNOT_TELL = "cannot tell"  # it offers no way to ask: the policy decides


@dataclass(frozen=True)
class Lookup:
    """A channel's answer about an earlier attempt, with the message id when it was taken."""

    answer: Answer
    message_id: str | None = None


class MessageChannel(Protocol):
    """What every channel offers: send once per key, and say whether an attempt went."""

    def send(self, message: OutgoingMessage) -> str:
        """Deliver the message and return the provider's message id."""
        ...

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Say whether an attempt whose outcome was lost reached the channel."""
        ...


def idempotency_key(
    tenant: str, invoice_number: str, step_id: str, channel: str, recipient: str
) -> str:
    """The one key of a contact: the same step to the same recipient is sent at most once."""
    return "|".join((tenant, invoice_number, step_id, channel, recipient))


def text_fingerprint(text: str) -> str:
    """The SHA-256 of a text as handed to a channel, to recognise it among a provider's."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OutboxChannel:
    """Stores every message in the database instead of delivering it; needs no credentials."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def send(self, message: OutgoingMessage) -> str:
        """Store the message; a second send with the same key returns the first one's id."""
        row = {
            "idempotency_key": message.idempotency_key,
            "tenant": message.tenant,
            "invoice_number": message.invoice_number,
            "step_id": message.step_id,
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "html_body": message.html_body,
            "policy_name": message.policy_name,
            "policy_version": message.policy_version,
            "created_at": utc_now(),
        }
        try:
            # A plain insert: an ORM object would cost more CPU than the write itself.
            with self._engine.begin() as connection:
                stored = connection.execute(_STORE_MESSAGE, row).inserted_primary_key
                assert stored is not None
                return f"outbox-{stored.id}"
        except IntegrityError:
            existing = self.find_sent(message.idempotency_key)
            if existing is None:
                raise
            return existing

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """The outbox always knows: it stores every message under its key."""
        found = self.find_sent(attempt.idempotency_key)
        if found is None:
            return Lookup(Answer.NOT_TAKEN)
        return Lookup(Answer.TAKEN, found)

    def find_sent(self, idempotency_key: str) -> str | None:
        """Return ``outbox-<id>`` of the message stored under this key, if any."""
        with session_scope(self._engine) as session:
            params = {"idempotency_key": idempotency_key}
            found = session.exec(_SENT_UNDER_KEY, params=params).first()
        return None if found is None else f"outbox-{found}"


# Built once: the outbox stores and looks up on every send it is given.
_STORE_MESSAGE = insert(OutboxMessage)
_SENT_UNDER_KEY = select(OutboxMessage.id).where(
    OutboxMessage.idempotency_key == bindparam("idempotency_key")
)
