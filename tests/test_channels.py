"""The credential-free outbox channel: one stored message per idempotency key."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.channels import OutboxChannel, OutgoingMessage, idempotency_key
from receivables.store import OutboxMessage, session_scope


def message(recipient: str = "pagos@customers.invalid") -> OutgoingMessage:
    """A rendered e-mail reminder for step R+1 of folio 000123."""
    return OutgoingMessage(
        idempotency_key=idempotency_key("acme", "000123", "R+1", "email", recipient),
        tenant="acme",
        invoice_number="000123",
        step_id="R+1",
        channel="email",
        recipient=recipient,
        subject="Factura 000123 vencida",
        body="Su factura 000123 venció el 31 de marzo de 2026.",
        html_body="<p>Su factura 000123 venció el 31 de marzo de 2026.</p>",
        policy_name="preventive-b2b",
        policy_version=1,
    )


def stored(engine: Engine) -> list[OutboxMessage]:
    """Every message in the outbox, oldest first."""
    with session_scope(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_a_sent_message_is_stored_whole_and_found_by_its_key(engine: Engine) -> None:
    outbox = OutboxChannel(engine)

    message_id = outbox.send(message())

    [row] = stored(engine)
    assert message_id == f"outbox-{row.id}"
    assert (row.recipient, row.subject, row.body, row.html_body) == (
        message().recipient,
        message().subject,
        message().body,
        message().html_body,
    )
    assert (row.policy_name, row.policy_version) == ("preventive-b2b", 1)
    assert outbox.find_sent(message().idempotency_key) == message_id


def test_a_second_send_with_the_same_key_stores_nothing_and_returns_the_first_id(
    engine: Engine,
) -> None:
    outbox = OutboxChannel(engine)
    first = outbox.send(message())

    again = outbox.send(replace(message(), body="a re-rendered body"))

    assert again == first
    assert [row.body for row in stored(engine)] == [message().body]


def test_another_recipient_is_another_message(engine: Engine) -> None:
    outbox = OutboxChannel(engine)

    first = outbox.send(message())
    second = outbox.send(message(recipient="tesoreria@customers.invalid"))

    assert first != second
    assert len(stored(engine)) == 2


def test_a_key_never_sent_is_not_found(engine: Engine) -> None:
    assert OutboxChannel(engine).find_sent(message().idempotency_key) is None


def test_the_key_names_tenant_invoice_step_channel_and_recipient() -> None:
    keys = {
        idempotency_key("acme", "000123", "R+1", "email", "a@x.invalid"),
        idempotency_key("other", "000123", "R+1", "email", "a@x.invalid"),
        idempotency_key("acme", "000124", "R+1", "email", "a@x.invalid"),
        idempotency_key("acme", "000123", "R+1#2", "email", "a@x.invalid"),
        idempotency_key("acme", "000123", "R+1", "sms", "a@x.invalid"),
        idempotency_key("acme", "000123", "R+1", "email", "b@x.invalid"),
    }

    assert len(keys) == 6
