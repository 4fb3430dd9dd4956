"""The contact ledger: one entry per contact key, every attempt kept for the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receivables import ledger as ledger_module
from receivables.ledger import (
    ContactKey,
    ContactLedger,
    MessageRecord,
    entries_of_step,
)
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    session_scope,
)

PLANNED = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
DECIDED = PLANNED + timedelta(minutes=1)
POLICY = ("preventive-b2b", 1)


def key(step_id: str = "R+1", recipient: str = "pagos@customers.invalid") -> ContactKey:
    """The contact key of one step of folio 000123 by e-mail."""
    return ContactKey("acme", "000123", step_id, "email", recipient)


def attempts(engine: Engine, entry_id: int) -> list[tuple[int, str, str | None]]:
    """(attempt, outcome, detail) of every try of one entry, in order."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(ContactAttempt)
            .where(ContactAttempt.ledger_entry_id == entry_id)
            .order_by(col(ContactAttempt.id))
        )
        return [(row.attempt, row.outcome, row.detail) for row in rows]


def test_the_first_attempt_creates_a_pending_entry(engine: Engine) -> None:
    ledger = ContactLedger(engine)

    entry = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)

    assert (entry.status, entry.attempts, entry.provider_message_id) == (
        ContactStatus.PENDING,
        1,
        None,
    )
    [stored] = ledger.entries_for("acme", "000123")
    assert (stored.policy_name, stored.policy_version) == POLICY
    assert stored.planned_at == PLANNED
    assert attempts(engine, entry.entry_id) == [(1, "started", None)]


def test_a_sent_entry_is_not_attempted_again(engine: Engine) -> None:
    ledger = ContactLedger(engine)
    first = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    ledger.finish(
        first.entry_id,
        ContactStatus.SENT,
        reason="sent",
        at=DECIDED,
        provider_message_id="outbox-7",
    )

    again = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)

    assert (again.entry_id, again.status, again.attempts) == (
        first.entry_id,
        ContactStatus.SENT,
        1,
    )
    assert again.provider_message_id == "outbox-7"
    assert attempts(engine, first.entry_id) == [
        (1, "started", None),
        (1, "sent", "sent"),
    ]


def test_an_attempt_after_a_failure_counts_up_and_is_pending_again(
    engine: Engine,
) -> None:
    ledger = ContactLedger(engine)
    first = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    ledger.finish(
        first.entry_id, ContactStatus.FAILED, reason="mailbox full", at=DECIDED
    )

    second = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)

    assert (second.status, second.attempts) == (ContactStatus.PENDING, 2)
    assert attempts(engine, first.entry_id) == [
        (1, "started", None),
        (1, "failed", "mailbox full"),
        (2, "started", None),
    ]


def test_a_decision_is_recorded_with_its_reason(engine: Engine) -> None:
    ledger = ContactLedger(engine)

    snapshot = ledger.record_decision(
        key(),
        ContactStatus.CANCELLED,
        reason="invoice is paid",
        policy=POLICY,
        planned_at=PLANNED,
        at=DECIDED,
    )

    [entry] = ledger.entries_for("acme", "000123")
    assert (entry.status, entry.reason, entry.decided_at) == (
        ContactStatus.CANCELLED,
        "invoice is paid",
        DECIDED,
    )
    assert attempts(engine, snapshot.entry_id)[-1] == (
        1,
        "cancelled",
        "invoice is paid",
    )


def test_a_decision_never_overwrites_a_contact_already_sent(engine: Engine) -> None:
    ledger = ContactLedger(engine)
    first = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    ledger.finish(
        first.entry_id,
        ContactStatus.SENT,
        reason="sent",
        at=DECIDED,
        provider_message_id="m-1",
    )

    snapshot = ledger.record_decision(
        key(),
        ContactStatus.CANCELLED,
        reason="invoice is paid",
        policy=POLICY,
        planned_at=PLANNED,
        at=DECIDED,
    )

    assert (snapshot.status, snapshot.provider_message_id) == (
        ContactStatus.SENT,
        "m-1",
    )
    [entry] = ledger.entries_for("acme", "000123")
    assert (entry.status, entry.reason) == (ContactStatus.SENT, "sent")


def test_entries_are_listed_in_planned_order(engine: Engine) -> None:
    ledger = ContactLedger(engine)
    ledger.begin_attempt(
        key("R+8"), policy=POLICY, planned_at=PLANNED + timedelta(days=7)
    )
    ledger.begin_attempt(
        key("R-3"), policy=POLICY, planned_at=PLANNED - timedelta(days=4)
    )
    ledger.begin_attempt(key("R+1"), policy=POLICY, planned_at=PLANNED)
    ledger.begin_attempt(
        ContactKey("acme", "000999", "R+1", "email", "x@customers.invalid"),
        policy=POLICY,
        planned_at=PLANNED,
    )

    steps = [e.step_id for e in ledger.entries_for("acme", "000123")]

    assert steps == ["R-3", "R+1", "R+8"]


def test_a_worker_that_loses_the_insert_race_uses_the_entry_of_the_winner(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ContactLedger(engine)
    winner = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    real_find_entry = ledger_module.find_entry
    lookups: list[ContactKey] = []

    def stale_then_real(
        session: Session, wanted: ContactKey
    ) -> ContactLedgerEntry | None:
        # The first read happens before the winner's insert became visible.
        lookups.append(wanted)
        if len(lookups) == 1:
            return None
        return real_find_entry(session, wanted)

    monkeypatch.setattr(ledger_module, "find_entry", stale_then_real)

    loser = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)

    assert len(lookups) == 2
    assert (loser.entry_id, loser.attempts) == (winner.entry_id, 2)
    assert len(ledger.entries_for("acme", "000123")) == 1


def test_an_attempt_begun_with_its_text_records_fingerprint_cost_and_notes(
    engine: Engine,
) -> None:
    ledger = ContactLedger(engine)
    text = MessageRecord(
        "ab" * 32, "GSM-7", 2, (("transliterated", "customer_name: Núñez -> Nunez"),)
    )

    begun = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED, message=text)

    [entry] = ledger.entries_for("acme", "000123")
    assert (entry.message_sha256, entry.sms_encoding, entry.sms_segments) == (
        "ab" * 32,
        "GSM-7",
        2,
    )
    assert attempts(engine, begun.entry_id) == [
        (1, "started", None),
        (1, "transliterated", "customer_name: Núñez -> Nunez"),
    ]


def test_an_attempt_cut_off_after_it_began_with_its_text_is_in_doubt(
    engine: Engine,
) -> None:
    ledger = ContactLedger(engine)
    text = MessageRecord("cd" * 32)

    begun = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED, message=text)

    unsettled = ledger.unsettled_attempt(begun.entry_id)
    assert unsettled is not None
    assert (unsettled.attempt, unsettled.message_sha256) == (1, "cd" * 32)


def test_a_respelt_text_cut_off_mid_call_is_in_doubt_too(engine: Engine) -> None:
    ledger = ContactLedger(engine)
    text = MessageRecord(
        "cd" * 32, "GSM-7", 1, (("transliterated", "customer_name: Núñez -> Nunez"),)
    )

    begun = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED, message=text)

    # The note follows "started" in the trail; the channel may still have taken the text.
    unsettled = ledger.unsettled_attempt(begun.entry_id)
    assert unsettled is not None
    assert unsettled.message_sha256 == "cd" * 32


def test_a_sent_entry_keeps_the_text_it_was_sent_with(engine: Engine) -> None:
    ledger = ContactLedger(engine)
    first = ledger.begin_attempt(
        key(), policy=POLICY, planned_at=PLANNED, message=MessageRecord("ef" * 32)
    )
    ledger.finish(first.entry_id, ContactStatus.SENT, reason="sent", at=DECIDED)

    again = ledger.begin_attempt(
        key(), policy=POLICY, planned_at=PLANNED, message=MessageRecord("00" * 32)
    )

    assert again.status == ContactStatus.SENT
    [entry] = ledger.entries_for("acme", "000123")
    assert entry.message_sha256 == "ef" * 32
    assert attempts(engine, first.entry_id) == [
        (1, "started", None),
        (1, "sent", "sent"),
    ]


def test_an_outcome_without_a_message_id_keeps_the_one_recorded(
    engine: Engine,
) -> None:
    ledger = ContactLedger(engine)
    begun = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    ledger.finish(
        begun.entry_id,
        ContactStatus.SENT,
        reason="sent",
        at=DECIDED,
        provider_message_id="m-1",
    )

    ledger.finish(
        begun.entry_id,
        ContactStatus.HELD,
        reason="held for a person",
        at=DECIDED + timedelta(minutes=1),
    )

    [entry] = ledger.entries_for("acme", "000123")
    assert (entry.status, entry.provider_message_id, entry.reason) == (
        ContactStatus.HELD,
        "m-1",
        "held for a person",
    )
    assert entry.decided_at == DECIDED + timedelta(minutes=1)
    assert attempts(engine, begun.entry_id)[-1] == (1, "held", "held for a person")


def test_the_entries_of_a_step_are_read_by_channel_and_recipient(
    engine: Engine,
) -> None:
    ledger = ContactLedger(engine)
    email = ledger.begin_attempt(key(), policy=POLICY, planned_at=PLANNED)
    ledger.begin_attempt(key("R+8"), policy=POLICY, planned_at=PLANNED)

    with session_scope(engine) as session:
        entries = entries_of_step(session, "acme", "000123", "R+1")

    assert entries == {("email", "pagos@customers.invalid"): email}
