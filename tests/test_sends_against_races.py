"""The four-transaction send against payments, crashes and changed addresses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from activities.sending import CreditorProfile, ReminderSender
from receivables.case import SendStatus
from receivables.cases import commit_money_movement
from receivables.channels import (
    Answer,
    EarlierAttempt,
    Lookup,
    OutboxChannel,
    OutgoingMessage,
)
from receivables.policy import UnknownOutcome
from receivables.store import ContactStatus, PaymentKind
from tests.case_helpers import add_invoice
from tests.test_sending import (
    FOLIO,
    attempt_outcomes,
    change_customer,
    ledger,
    outbox,
    request,
    send,
)


@pytest.fixture(autouse=True)
def invoice(engine: Engine) -> str:
    """An open 900.000 CLP invoice due 2026-03-31, reachable by e-mail and SMS."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
    )
    return FOLIO


def pay_in_full(engine: Engine) -> None:
    commit_money_movement(
        engine,
        "test",
        FOLIO,
        kind=PaymentKind.PAYMENT,
        reference="TRX-RACE",
        amount_minor=900_000,
        currency="CLP",
        at=datetime(2026, 4, 1, 12, 0, tzinfo=UTC),
    )


class Unaskable:
    """An outbox that, like SendGrid, cannot be asked about a cut-off attempt."""

    def __init__(self, engine: Engine, *, die_after_accepting: int = 0) -> None:
        self._outbox = OutboxChannel(engine)
        self._deaths = die_after_accepting
        self.calls = 0

    def send(self, message: OutgoingMessage) -> str:
        """Store the message; die after it while deaths are left."""
        self.calls += 1
        taken = self._outbox.send(message)
        if self._deaths:
            self._deaths -= 1
            raise RuntimeError("worker lost after the channel accepted the message")
        return taken

    def look_up(self, attempt: EarlierAttempt) -> Lookup:
        """Nothing to ask."""
        return Lookup(Answer.CANNOT_TELL)


@pytest.mark.parametrize("jurisdiction", [None, "cl.b2b"])
def test_a_payment_committed_after_the_read_and_before_the_attempt_cancels_the_send(
    engine: Engine, jurisdiction: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    original: Callable[..., Any] = ReminderSender._begin

    def payment_lands_first(self: ReminderSender, *args: Any, **kwargs: Any) -> Any:
        # The bank's payment commits while the activity renders / waits for the lock.
        pay_in_full(engine)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ReminderSender, "_begin", payment_lands_first)

    outcome = send(engine, request(jurisdiction=jurisdiction))

    assert outbox(engine) == [], "a reminder went out after the payment was committed"
    assert outcome.status == SendStatus.CANCELLED


def test_a_step_sent_before_the_address_changed_is_not_sent_again(
    engine: Engine,
) -> None:
    dying = Unaskable(engine, die_after_accepting=0)
    first = send(engine, request(), {"email": dying})
    assert first.status == SendStatus.SENT
    # The activity's completion was lost (worker died after recording SENT), and the
    # operator corrected the debtor's e-mail before Temporal retried the activity.
    change_customer(engine, email="nueva-casilla@customers.invalid")

    again = send(engine, request())

    assert again.duplicate, again
    assert len(outbox(engine)) == 1, [m.recipient for m in outbox(engine)]


@pytest.mark.parametrize("jurisdiction", [None, "cl.b2b"])
def test_a_respelt_sms_cut_off_after_the_channel_took_it_is_held_not_resent(
    engine: Engine, jurisdiction: str | None
) -> None:
    change_customer(engine, email=None)
    creditor = CreditorProfile(name="Ñandú Ibáñez Núñez SpA")
    reminder = request(
        channel="sms",
        jurisdiction=jurisdiction,
        sms_transliterate=("creditor_name",),
        on_unknown_outcome=UnknownOutcome.HOLD,
    )
    with pytest.raises(RuntimeError, match="worker lost"):
        send(
            engine,
            reminder,
            {"sms": Unaskable(engine, die_after_accepting=1)},
            creditor,
        )

    again = send(engine, reminder, {"sms": Unaskable(engine)}, creditor)

    assert again.status == SendStatus.BLOCKED
    assert len(outbox(engine)) == 1
    [entry] = ledger(engine)
    assert entry.status == ContactStatus.HELD
    assert "transliterated" in [o for _, o in attempt_outcomes(engine)]


@pytest.mark.parametrize("jurisdiction", [None, "cl.b2b"])
def test_a_respelt_sms_cut_off_is_found_in_the_outbox_and_not_resent(
    engine: Engine, jurisdiction: str | None
) -> None:
    change_customer(engine, email=None)
    creditor = CreditorProfile(name="Ñandú Ibáñez Núñez SpA")
    reminder = request(
        channel="sms", jurisdiction=jurisdiction, sms_transliterate=("creditor_name",)
    )

    class DiesAfterAccepting(Unaskable):
        def look_up(self, attempt: EarlierAttempt) -> Lookup:
            return self._outbox.look_up(attempt)

    with pytest.raises(RuntimeError, match="worker lost"):
        send(
            engine,
            reminder,
            {"sms": DiesAfterAccepting(engine, die_after_accepting=1)},
            creditor,
        )
    pay_in_full(engine)

    again = send(engine, reminder, {"sms": OutboxChannel(engine)}, creditor)

    assert (again.status, again.duplicate) == (SendStatus.SENT, True)
    assert len(outbox(engine)) == 1
    [entry] = ledger(engine)
    assert entry.status == ContactStatus.SENT


def test_a_held_step_stays_held_after_the_invoice_is_paid(engine: Engine) -> None:
    reminder = request(on_unknown_outcome=UnknownOutcome.HOLD)
    with pytest.raises(RuntimeError):
        send(engine, reminder, {"email": Unaskable(engine, die_after_accepting=1)})
    held = send(engine, reminder, {"email": Unaskable(engine)})
    pay_in_full(engine)

    again = send(engine, reminder, {"email": Unaskable(engine)})

    assert held.status == again.status == SendStatus.BLOCKED
    assert len(outbox(engine)) == 1
