"""How messages leave the system: the channel interface and the credential-free outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from receivables.store import OutboxMessage, session_scope


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


class MessageChannel(Protocol):
    """What every channel offers: send once per key, and tell whether a key was already sent."""

    def send(self, message: OutgoingMessage) -> str:
        """Deliver the message and return the provider's message id."""
        ...

    def find_sent(self, idempotency_key: str) -> str | None:
        """Return the message id already accepted under this key, if any."""
        ...


def idempotency_key(
    tenant: str, invoice_number: str, step_id: str, channel: str, recipient: str
) -> str:
    """The one key of a contact: the same step to the same recipient is sent at most once."""
    return "|".join((tenant, invoice_number, step_id, channel, recipient))


class OutboxChannel:
    """Stores every message in the database instead of delivering it; needs no credentials."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def send(self, message: OutgoingMessage) -> str:
        """Store the message; a second send with the same key returns the first one's id."""
        try:
            with session_scope(self._engine) as session:
                row = OutboxMessage(
                    idempotency_key=message.idempotency_key,
                    tenant=message.tenant,
                    invoice_number=message.invoice_number,
                    step_id=message.step_id,
                    channel=message.channel,
                    recipient=message.recipient,
                    subject=message.subject,
                    body=message.body,
                    html_body=message.html_body,
                    policy_name=message.policy_name,
                    policy_version=message.policy_version,
                )
                session.add(row)
                session.flush()
                return f"outbox-{row.id}"
        except IntegrityError:
            existing = self.find_sent(message.idempotency_key)
            if existing is None:
                raise
            return existing

    def find_sent(self, idempotency_key: str) -> str | None:
        """Return ``outbox-<id>`` of the message stored under this key, if any."""
        with session_scope(self._engine) as session:
            statement = select(OutboxMessage.id).where(
                OutboxMessage.idempotency_key == idempotency_key
            )
            found = session.exec(statement).first()
        return None if found is None else f"outbox-{found}"
