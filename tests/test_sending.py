"""The send activity run in an activity context: re-check, route, render, deliver once."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.sending import CreditorProfile, ReminderSender
from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import (
    ChannelError,
    EarlierAttempt,
    Lookup,
    MessageChannel,
    OutboxChannel,
    OutgoingMessage,
    idempotency_key,
    text_fingerprint,
)
from receivables.ledger import ContactKey, ContactLedger
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    InvoiceStatus,
    OutboxMessage,
    find_customer,
    find_invoice,
    session_scope,
)
from tests.case_helpers import add_invoice, santiago

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "messages"
DUE = date(2026, 3, 31)
PLANNED = santiago(date(2026, 4, 1), time(9, 0))
FOLIO = "000123"


class FlakyChannel:
    """Refuses the first sends with a given error, then hands messages to the outbox."""

    def __init__(self, outbox: OutboxChannel, *failures: ChannelError) -> None:
        self._outbox = outbox
        self._failures = list(failures)
        self.calls = 0

    def send(self, message: OutgoingMessage) -> str:
        """Fail while failures are left, then store the message."""
        self.calls += 1
        if self._failures:
            raise self._failures.pop(0)
        return self._outbox.send(message)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Ask the outbox."""
        return self._outbox.look_up(attempt)


def record_fingerprint(engine: Engine, entry_id: int, text: str) -> None:
    """What the activity writes just before it hands a text to a channel."""
    with session_scope(engine) as session:
        entry = session.get(ContactLedgerEntry, entry_id)
        assert entry is not None
        entry.message_sha256 = text_fingerprint(text)
        session.add(entry)


def request(**changes: Any) -> SendReminderRequest:
    """The R+1 e-mail reminder of folio 000123, planned for 09:00 in Santiago."""
    reminder = SendReminderRequest(
        tenant="test",
        invoice_number=FOLIO,
        step_id="R+1",
        channel="email",
        template="overdue-first",
        fallback_channels=(),
        policy_name="preventive-b2b",
        policy_version=1,
        planned_at=PLANNED.astimezone(UTC),
        language="es-CL",
    )
    return dataclasses.replace(reminder, **changes)


def send(
    engine: Engine,
    reminder: SendReminderRequest,
    channels: dict[str, MessageChannel] | None = None,
    creditor: CreditorProfile | None = None,
) -> SendOutcome:
    """Run send_reminder as the worker would, scheduled at the planned instant."""
    outbox = OutboxChannel(engine)
    sender = ReminderSender(
        engine, channels or {"email": outbox, "sms": outbox}, TEMPLATES_DIR, creditor
    )
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        activity_type="send_reminder",
        current_attempt_scheduled_time=reminder.planned_at,
    )
    return environment.run(sender.send_reminder, reminder)


@pytest.fixture
def invoice(engine: Engine) -> str:
    """An open 900.000 CLP invoice due 2026-03-31, its customer reachable by e-mail."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=DUE,
        amount_minor=900_000,
    )
    return FOLIO


def change_invoice(engine: Engine, **changes: object) -> None:
    """Commit changes to the invoice, as a payment or an operator would."""
    with session_scope(engine) as session:
        row = find_invoice(session, "test", FOLIO)
        assert row is not None
        for name, value in changes.items():
            setattr(row, name, value)
        session.add(row)


def change_customer(engine: Engine, **changes: object) -> None:
    """Commit changes to the invoice's customer."""
    with session_scope(engine) as session:
        row = find_customer(session, "test", f"C-{FOLIO}")
        assert row is not None
        for name, value in changes.items():
            setattr(row, name, value)
        session.add(row)


def customer_email(engine: Engine) -> str:
    """The e-mail address on file for the invoice's customer."""
    with session_scope(engine) as session:
        row = find_customer(session, "test", f"C-{FOLIO}")
        assert row is not None and row.email is not None
        return row.email


def outbox(engine: Engine) -> list[OutboxMessage]:
    """Every message the outbox holds, oldest first."""
    with session_scope(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


def ledger(engine: Engine) -> list[ContactLedgerEntry]:
    """The ledger entries of the invoice."""
    return ContactLedger(engine).entries_for("test", FOLIO)


def attempt_outcomes(engine: Engine) -> list[tuple[int, str]]:
    """(attempt, outcome) of every try of every entry of the invoice, in order."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(ContactAttempt)
            .join(ContactLedgerEntry)
            .where(ContactLedgerEntry.invoice_number == FOLIO)
            .order_by(col(ContactAttempt.id))
        )
        return [(row.attempt, row.outcome) for row in rows]


@pytest.mark.usefixtures("invoice")
def test_a_due_reminder_is_rendered_recorded_and_sent_once(engine: Engine) -> None:
    outcome = send(engine, request())

    [message] = outbox(engine)
    assert outcome == SendOutcome(
        SendStatus.SENT, "email", "sent", f"outbox-{message.id}"
    )
    assert message.recipient == customer_email(engine)
    assert FOLIO in message.body and "$900.000" in message.body
    assert message.subject and message.html_body
    [entry] = ledger(engine)
    assert (entry.status, entry.attempts, entry.provider_message_id) == (
        ContactStatus.SENT,
        1,
        f"outbox-{message.id}",
    )
    assert attempt_outcomes(engine) == [(1, "started"), (1, "sent")]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (InvoiceStatus.PAID, "invoice is paid in the store at send time"),
        (InvoiceStatus.WRITTEN_OFF, "invoice is written_off in the store at send time"),
    ],
)
@pytest.mark.usefixtures("invoice")
def test_an_invoice_closed_in_the_store_cancels_the_reminder(
    engine: Engine, status: InvoiceStatus, reason: str
) -> None:
    change_invoice(engine, status=status)

    outcome = send(engine, request())

    assert (outcome.status, outcome.reason) == (SendStatus.CANCELLED, reason)
    assert outbox(engine) == []
    [entry] = ledger(engine)
    assert (entry.status, entry.reason) == (ContactStatus.CANCELLED, reason)


@pytest.mark.usefixtures("invoice")
def test_a_zero_balance_cancels_the_reminder(engine: Engine) -> None:
    change_invoice(engine, balance_minor=0)

    outcome = send(engine, request())

    assert outcome.status == SendStatus.CANCELLED
    assert outcome.reason == "balance is 0 at send time: nothing to collect"
    assert outbox(engine) == []


def test_an_invoice_missing_from_the_store_fails_without_retry(engine: Engine) -> None:
    with pytest.raises(
        ApplicationError, match=f"invoice {FOLIO} of tenant test"
    ) as raised:
        send(engine, request())

    assert raised.value.non_retryable is True
    assert ledger(engine) == []


@pytest.mark.usefixtures("invoice")
def test_a_customer_without_email_is_reached_by_the_fallback_sms(
    engine: Engine,
) -> None:
    change_customer(engine, email=None)

    outcome = send(engine, request(fallback_channels=("sms",)))

    [message] = outbox(engine)
    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "sms")
    assert (message.channel, message.recipient) == ("sms", "+56911112222")
    assert message.subject is None and message.html_body is None


@pytest.mark.usefixtures("invoice")
def test_a_fallback_channel_the_worker_does_not_have_is_passed_over(
    engine: Engine,
) -> None:
    change_customer(engine, email=None)

    outcome = send(
        engine,
        request(fallback_channels=("whatsapp", "sms")),
        channels={"email": OutboxChannel(engine), "sms": OutboxChannel(engine)},
    )

    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "sms")


@pytest.mark.usefixtures("invoice")
def test_a_customer_without_any_contact_is_blocked(engine: Engine) -> None:
    change_customer(engine, email=None, phone=None)

    outcome = send(engine, request(fallback_channels=("sms",)))

    assert (outcome.status, outcome.reason) == (
        SendStatus.BLOCKED,
        "no reachable contact: no usable address on email, sms",
    )
    assert outbox(engine) == []
    [entry] = ledger(engine)
    assert (entry.status, entry.recipient) == (ContactStatus.BLOCKED, "(none)")


@pytest.mark.usefixtures("invoice")
def test_an_invoice_whose_customer_is_missing_is_blocked(engine: Engine) -> None:
    with session_scope(engine) as session:
        customer = session.exec(select(Customer)).one()
        session.delete(customer)

    outcome = send(engine, request())

    assert outcome.status == SendStatus.BLOCKED
    assert outcome.reason.startswith("no reachable contact")


@pytest.mark.usefixtures("invoice")
def test_a_template_that_cannot_be_rendered_blocks_the_reminder_and_sends_nothing(
    engine: Engine,
) -> None:
    outcome = send(engine, request(template="no-such-template"))

    assert outcome.status == SendStatus.BLOCKED
    assert "template file is missing" in outcome.reason
    assert "no-such-template" in outcome.reason
    assert outbox(engine) == []
    [entry] = ledger(engine)
    assert (entry.status, entry.reason) == (ContactStatus.BLOCKED, outcome.reason)


@pytest.mark.usefixtures("invoice")
def test_a_retryable_channel_error_leaves_the_contact_pending_and_raises(
    engine: Engine,
) -> None:
    channel = FlakyChannel(
        OutboxChannel(engine), ChannelError("SMTP 421 try later", retryable=True)
    )

    with pytest.raises(ChannelError, match="SMTP 421"):
        send(engine, request(), channels={"email": channel})

    [entry] = ledger(engine)
    assert (entry.status, entry.attempts, entry.reason) == (
        ContactStatus.PENDING,
        1,
        "SMTP 421 try later",
    )
    assert attempt_outcomes(engine) == [(1, "started"), (1, "pending")]
    assert outbox(engine) == []


@pytest.mark.usefixtures("invoice")
def test_a_permanent_refusal_on_the_only_channel_asks_a_person(engine: Engine) -> None:
    channel = FlakyChannel(
        OutboxChannel(engine), ChannelError("address rejected", retryable=False)
    )

    outcome = send(engine, request(), channels={"email": channel})

    assert (outcome.status, outcome.reason) == (
        SendStatus.BLOCKED,
        "no reachable contact: email: address rejected",
    )
    [refused, blocked] = ledger(engine)
    assert (refused.status, refused.reason) == (
        ContactStatus.FAILED,
        "address rejected",
    )
    assert (blocked.status, blocked.recipient) == (ContactStatus.BLOCKED, "(none)")
    assert outbox(engine) == []


@pytest.mark.usefixtures("invoice")
def test_a_permanent_refusal_falls_back_to_the_next_channel(engine: Engine) -> None:
    email = FlakyChannel(
        OutboxChannel(engine), ChannelError("mailbox unknown", retryable=False)
    )
    channels: dict[str, MessageChannel] = {
        "email": email,
        "sms": OutboxChannel(engine),
    }

    outcome = send(engine, request(fallback_channels=("sms",)), channels)

    [message] = outbox(engine)
    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "sms")
    assert (message.channel, message.recipient) == ("sms", "+56911112222")
    assert [
        (entry.channel, entry.status, entry.reason) for entry in ledger(engine)
    ] == [
        ("email", ContactStatus.FAILED, "mailbox unknown"),
        ("sms", ContactStatus.SENT, "sent"),
    ]


@pytest.mark.usefixtures("invoice")
def test_a_retry_after_the_fallback_was_sent_sends_nothing_again(
    engine: Engine,
) -> None:
    # The result of the send by SMS was lost; the retry must not try e-mail again either.
    email = FlakyChannel(
        OutboxChannel(engine), ChannelError("mailbox unknown", retryable=False)
    )
    channels: dict[str, MessageChannel] = {
        "email": email,
        "sms": OutboxChannel(engine),
    }
    first = send(engine, request(fallback_channels=("sms",)), channels)

    again = send(engine, request(fallback_channels=("sms",)), channels)

    assert again == dataclasses.replace(first, duplicate=True)
    assert email.calls == 1
    assert len(outbox(engine)) == 1


@pytest.mark.usefixtures("invoice")
def test_a_retryable_refusal_of_the_fallback_raises_after_recording_the_first(
    engine: Engine,
) -> None:
    email = FlakyChannel(
        OutboxChannel(engine), ChannelError("mailbox unknown", retryable=False)
    )
    sms = FlakyChannel(
        OutboxChannel(engine), ChannelError("carrier busy", retryable=True)
    )

    with pytest.raises(ChannelError, match="carrier busy"):
        send(engine, request(fallback_channels=("sms",)), {"email": email, "sms": sms})

    assert [(entry.channel, entry.status) for entry in ledger(engine)] == [
        ("email", ContactStatus.FAILED),
        ("sms", ContactStatus.PENDING),
    ]


@pytest.mark.usefixtures("invoice")
def test_a_failed_attempt_never_blocks_the_next_one(engine: Engine) -> None:
    channel = FlakyChannel(
        OutboxChannel(engine), ChannelError("SMTP 421 try later", retryable=True)
    )
    with pytest.raises(ChannelError):
        send(engine, request(), channels={"email": channel})

    outcome = send(engine, request(), channels={"email": channel})

    assert (outcome.status, outcome.duplicate) == (SendStatus.SENT, False)
    assert len(outbox(engine)) == 1
    [entry] = ledger(engine)
    assert (entry.status, entry.attempts) == (ContactStatus.SENT, 2)
    assert attempt_outcomes(engine) == [
        (1, "started"),
        (1, "pending"),
        (2, "started"),
        (2, "sent"),
    ]


@pytest.mark.usefixtures("invoice")
def test_a_second_call_after_sending_is_a_duplicate_and_sends_nothing(
    engine: Engine,
) -> None:
    first = send(engine, request())

    second = send(engine, request())

    assert second == dataclasses.replace(first, duplicate=True)
    assert len(outbox(engine)) == 1
    assert attempt_outcomes(engine) == [(1, "started"), (1, "sent")]


@pytest.mark.usefixtures("invoice")
def test_a_message_the_channel_took_before_the_worker_died_is_not_sent_again(
    engine: Engine,
) -> None:
    # The first attempt got as far as the channel, then the worker died: the ledger
    # still says pending, with the text's fingerprint; the outbox has the message.
    key = ContactKey("test", FOLIO, "R+1", "email", customer_email(engine))
    begun = ContactLedger(engine).begin_attempt(
        key, policy=("preventive-b2b", 1), planned_at=PLANNED
    )
    record_fingerprint(engine, begun.entry_id, f"Factura {FOLIO}")
    taken = OutboxChannel(engine).send(
        OutgoingMessage(
            idempotency_key=idempotency_key(*dataclasses.astuple(key)),
            **dataclasses.asdict(key),
            subject="Factura vencida",
            body=f"Factura {FOLIO}",
            html_body=None,
            policy_name="preventive-b2b",
            policy_version=1,
        )
    )
    channel = FlakyChannel(OutboxChannel(engine))

    outcome = send(engine, request(), channels={"email": channel})

    assert (outcome.status, outcome.message_id, outcome.duplicate) == (
        SendStatus.SENT,
        taken,
        True,
    )
    assert channel.calls == 0
    assert len(outbox(engine)) == 1
    [entry] = ledger(engine)
    # The retry only asked the channel, which had the message: no new attempt to send.
    assert (entry.status, entry.attempts) == (ContactStatus.SENT, 1)


@pytest.mark.usefixtures("invoice")
def test_a_reminder_already_sent_stays_sent_when_the_invoice_is_paid_later(
    engine: Engine,
) -> None:
    # The activity's result was lost after the message went out; the retry finds the
    # invoice paid in the meantime. The debtor did get the message.
    first = send(engine, request())
    change_invoice(engine, status=InvoiceStatus.PAID, balance_minor=0)

    again = send(engine, request())

    assert (again.status, again.duplicate, again.message_id) == (
        SendStatus.SENT,
        True,
        first.message_id,
    )
    [entry] = ledger(engine)
    assert entry.status == ContactStatus.SENT


@pytest.mark.usefixtures("invoice")
def test_the_ledger_key_is_the_route_actually_used(engine: Engine) -> None:
    send(engine, request())

    [entry] = ledger(engine)
    assert ContactKey(
        entry.tenant,
        entry.invoice_number,
        entry.step_id,
        entry.channel,
        entry.recipient,
    ) == ContactKey("test", FOLIO, "R+1", "email", customer_email(engine))


class DiesAfterAccepting:
    """Hands the message to the outbox, then dies before the activity can record it."""

    def __init__(self, outbox: OutboxChannel) -> None:
        self._outbox = outbox

    def send(self, message: OutgoingMessage) -> str:
        """Accept the message, then lose the worker."""
        self._outbox.send(message)
        raise RuntimeError("worker lost after the channel accepted the message")

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Ask the outbox."""
        return self._outbox.look_up(attempt)


def test_a_message_accepted_before_a_crash_stays_sent_when_the_invoice_is_paid_meanwhile(
    engine: Engine, invoice: str
) -> None:
    dying = DiesAfterAccepting(OutboxChannel(engine))
    with pytest.raises(RuntimeError, match="worker lost"):
        send(engine, request(), {"email": dying})
    with session_scope(engine) as session:
        stored = find_invoice(session, "test", invoice)
        assert stored is not None
        stored.status, stored.balance_minor = InvoiceStatus.PAID, 0
        session.add(stored)

    outcome = send(engine, request())

    assert outcome.status is SendStatus.SENT and outcome.duplicate
    [entry] = ContactLedger(engine).entries_for("test", invoice)
    assert entry.status == ContactStatus.SENT
    assert entry.provider_message_id == outcome.message_id


class CostReadingChannel:
    """Notes what the ledger says a text costs at the moment the channel is called."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._outbox = OutboxChannel(engine)
        self.seen: list[tuple[str | None, int | None]] = []

    def send(self, message: OutgoingMessage) -> str:
        """Read the entry's SMS cost, then store the message."""
        with session_scope(self._engine) as session:
            entry = session.exec(
                select(ContactLedgerEntry).where(
                    ContactLedgerEntry.channel == message.channel,
                    ContactLedgerEntry.recipient == message.recipient,
                )
            ).one()
            self.seen.append((entry.sms_encoding, entry.sms_segments))
        return self._outbox.send(message)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Ask the outbox."""
        return self._outbox.look_up(attempt)


@pytest.mark.parametrize(
    ("creditor_name", "encoding", "part"),
    [
        # ú and á have no GSM-7 septet: the whole text goes as UCS-2, 67 per part.
        ("José Núñez Ibáñez E.I.R.L.", "UCS-2", 67),
        # é and ñ do: the text stays GSM-7, 153 septets per part.
        ("José Muñoz E.I.R.L.", "GSM-7", 153),
    ],
)
@pytest.mark.usefixtures("invoice")
def test_an_sms_records_its_encoding_and_true_segments_before_it_is_sent(
    engine: Engine, creditor_name: str, encoding: str, part: int
) -> None:
    change_customer(engine, email=None)
    sms = CostReadingChannel(engine)

    send(
        engine,
        request(fallback_channels=("sms",)),
        {"email": OutboxChannel(engine), "sms": sms},
        CreditorProfile(name=creditor_name),
    )

    [message] = outbox(engine)
    assert creditor_name in message.body
    # Long enough to be split; no character costs two units (no emoji, no € or brackets).
    assert len(message.body) > 160
    assert not set(message.body) & set("^{}\\[~]|€\f")
    assert all(ord(char) <= 0xFFFF for char in message.body)
    expected = (encoding, math.ceil(len(message.body) / part))
    assert sms.seen == [expected]
    [entry] = ledger(engine)
    assert (entry.sms_encoding, entry.sms_segments) == expected


@pytest.mark.usefixtures("invoice")
def test_an_email_records_no_sms_cost(engine: Engine) -> None:
    send(engine, request())

    [entry] = ledger(engine)
    assert entry.status == ContactStatus.SENT
    assert (entry.sms_encoding, entry.sms_segments) == (None, None)


class LedgerReadingChannel:
    """Reads, in a transaction of its own, what the ledger holds when it is called."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._outbox = OutboxChannel(engine)
        self.seen: list[tuple[str, str | None, list[tuple[int, str]]]] = []

    def send(self, message: OutgoingMessage) -> str:
        """Note the entry's status, fingerprint and attempt lines, then store the message."""
        [entry] = ledger(self._engine)
        self.seen.append(
            (entry.status, entry.message_sha256, attempt_outcomes(self._engine))
        )
        return self._outbox.send(message)

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Ask the outbox."""
        return self._outbox.look_up(attempt)


@pytest.mark.parametrize(
    ("jurisdiction", "begun_as"), [(None, "started"), ("cl.b2b", "allow")]
)
@pytest.mark.usefixtures("invoice")
def test_the_attempt_and_its_fingerprint_are_committed_before_the_channel_is_called(
    engine: Engine, jurisdiction: str | None, begun_as: str
) -> None:
    # What a worker killed mid-call leaves behind: the retry asks the channel about it.
    channel = LedgerReadingChannel(engine)

    outcome = send(engine, request(jurisdiction=jurisdiction), {"email": channel})

    assert outcome.status == SendStatus.SENT
    [message] = outbox(engine)
    assert channel.seen == [
        (ContactStatus.PENDING, text_fingerprint(message.body), [(1, begun_as)])
    ]


@pytest.mark.parametrize("jurisdiction", [None, "cl.b2b"])
@pytest.mark.usefixtures("invoice")
def test_a_send_reads_once_writes_once_before_the_call_and_once_after(
    engine: Engine, jurisdiction: str | None
) -> None:
    # Each transaction costs a worker more CPU than the statements in it: the common
    # path keeps to four, the channel's own one included.
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(engine, "commit", count)
    try:
        outcome = send(engine, request(jurisdiction=jurisdiction))
    finally:
        event.remove(engine, "commit", count)

    assert outcome.status == SendStatus.SENT
    assert len(commits) == 4
