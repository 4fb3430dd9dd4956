"""The contact ledger: every planned contact, every attempt and its outcome, for the audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import DateTime, String, bindparam, func, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Invoice,
    as_utc,
    find_invoice,
    session_scope,
    utc_now,
    why_not_payable,
)

# Attempt outcomes after which a channel may have taken the message without our knowing:
# begun ("started", or "allow" from the contact gate) and never finished because the
# worker died, or a timeout after the request may have reached the provider.
IN_DOUBT = frozenset({"started", "allow", "unknown"})
# Lines written beside an attempt before its text goes to a channel: they say nothing of
# whether the channel took it, so they never settle the attempt.
BEFORE_THE_CALL_NOTES = frozenset({"transliterated"})


@dataclass(frozen=True)
class ContactKey:
    """What makes a contact unique: the same step to the same recipient happens once."""

    tenant: str
    invoice_number: str
    step_id: str
    channel: str
    recipient: str


@dataclass(frozen=True)
class NotPayable:
    """The invoice stopped being payable before the attempt was written: nothing counted."""

    reason: str


@dataclass(frozen=True)
class UnsettledAttempt:
    """The latest attempt of an entry, handed to a channel, whose outcome was never learned."""

    attempt: int
    started_at: datetime
    message_sha256: str


@dataclass(frozen=True)
class LedgerSnapshot:
    """A committed view of one ledger entry, safe to use after its session closed."""

    entry_id: int
    status: ContactStatus
    attempts: int
    provider_message_id: str | None


@dataclass(frozen=True)
class MessageRecord:
    """What the ledger keeps of a text before a channel gets it: fingerprint, cost, notes.

    It is written in the transaction that counts the attempt, so the attempt and the text
    it carries are committed together, before the channel is called.
    """

    message_sha256: str
    # What an SMS or WhatsApp text costs; None on other channels.
    sms_encoding: str | None = None
    sms_segments: int | None = None
    # Lines for the audit trail about this text, as (outcome, detail).
    notes: tuple[tuple[str, str], ...] = ()


class ContactLedger:
    """Writes the ledger in short committed transactions, so a crash loses no decision."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def begin_attempt(
        self,
        key: ContactKey,
        *,
        policy: tuple[str, int],
        planned_at: datetime,
        message: MessageRecord | None = None,
    ) -> LedgerSnapshot:
        """Find or create the entry and count one more attempt, committed before sending.

        ``message``, the text about to be sent, is recorded with the attempt. An entry
        already sent is left as it is; the snapshot returned shows it.
        """
        begun = self._begin_retrying(key, policy, planned_at, message, payable=False)
        assert isinstance(begun, LedgerSnapshot)
        return begun

    def begin_send(
        self,
        key: ContactKey,
        *,
        policy: tuple[str, int],
        planned_at: datetime,
        message: MessageRecord,
    ) -> LedgerSnapshot | NotPayable:
        """Begin an attempt as ``begin_attempt`` does, if the invoice is still payable.

        Read in the same transaction that counts the attempt: a payment committed after
        the send first read the store still stops it, and nothing is counted.
        """
        return self._begin_retrying(key, policy, planned_at, message, payable=True)

    def _begin_retrying(
        self,
        key: ContactKey,
        policy: tuple[str, int],
        planned_at: datetime,
        message: MessageRecord | None,
        *,
        payable: bool,
    ) -> LedgerSnapshot | NotPayable:
        try:
            return self._begin(key, policy, planned_at, message, payable)
        except IntegrityError:
            # Another worker created the same entry between our read and our insert.
            return self._begin(key, policy, planned_at, message, payable)

    def _begin(
        self,
        key: ContactKey,
        policy: tuple[str, int],
        planned_at: datetime,
        message: MessageRecord | None,
        payable: bool,
    ) -> LedgerSnapshot | NotPayable:
        with session_scope(self._engine) as session:
            if payable:
                invoice = find_invoice(session, key.tenant, key.invoice_number)
                refusal = refusal_to_send(invoice)
                if refusal is not None:
                    return refusal
            entry = find_entry(session, key) or ContactLedgerEntry(
                **key.__dict__,
                policy_name=policy[0],
                policy_version=policy[1],
                planned_at=planned_at,
            )
            if entry.status != ContactStatus.SENT:
                entry.attempts += 1
                entry.status = ContactStatus.PENDING
                if message is not None:
                    _put_cost(entry, message)
            session.add(entry)
            session.flush()
            assert entry.id is not None
            if entry.status == ContactStatus.PENDING:
                session.add(
                    ContactAttempt(
                        ledger_entry_id=entry.id,
                        attempt=entry.attempts,
                        outcome="started",
                    )
                )
                if message is not None:
                    _add_notes(session, entry, message)
            return snapshot_of(entry)

    def finish(
        self,
        entry_id: int,
        status: ContactStatus,
        *,
        reason: str,
        at: datetime,
        provider_message_id: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """Record the outcome of the entry's latest attempt (``outcome``: else the status)."""
        with self._engine.begin() as connection:
            connection.execute(
                _FINISH,
                {
                    "entry_id": entry_id,
                    "new_status": str(status),
                    "new_reason": reason,
                    "decided": at,
                    "message_id": provider_message_id,
                },
            )
            connection.execute(
                _LINE_FOR_LATEST_ATTEMPT,
                {
                    "entry_id": entry_id,
                    "line_outcome": outcome or str(status),
                    "line_detail": reason,
                    "line_at": utc_now(),
                },
            )

    def record_message(self, entry_id: int, message: MessageRecord) -> None:
        """Record the text of an attempt begun without it, before it goes to a channel."""
        with session_scope(self._engine) as session:
            entry = session.get(ContactLedgerEntry, entry_id)
            assert entry is not None
            record_message_on(session, entry, message)
            session.add(entry)

    def note(self, entry_id: int, outcome: str, detail: str) -> None:
        """Add a line to the entry's audit trail without changing its status."""
        with session_scope(self._engine) as session:
            entry = session.get(ContactLedgerEntry, entry_id)
            assert entry is not None
            session.add(
                ContactAttempt(
                    ledger_entry_id=entry_id,
                    attempt=entry.attempts,
                    outcome=outcome,
                    detail=detail,
                )
            )

    def unsettled_attempt(self, entry_id: int) -> UnsettledAttempt | None:
        """The latest attempt if its text went to a channel and its outcome is in doubt."""
        with session_scope(self._engine) as session:
            entry = session.get(ContactLedgerEntry, entry_id)
            assert entry is not None
            statement = (
                select(ContactAttempt)
                .where(
                    ContactAttempt.ledger_entry_id == entry_id,
                    ContactAttempt.attempt == entry.attempts,
                )
                .order_by(col(ContactAttempt.id))
            )
            trail = list(session.exec(statement).all())
        # No fingerprint: the attempt stopped before any text was handed to a channel.
        said = [line for line in trail if line.outcome not in BEFORE_THE_CALL_NOTES]
        if entry.message_sha256 is None or not said:
            return None
        if said[-1].outcome not in IN_DOUBT:
            return None
        return UnsettledAttempt(
            entry.attempts, as_utc(trail[0].at), entry.message_sha256
        )

    def record_decision(
        self,
        key: ContactKey,
        status: ContactStatus,
        *,
        reason: str,
        policy: tuple[str, int],
        planned_at: datetime,
        at: datetime,
    ) -> LedgerSnapshot:
        """Record a contact decided without calling any channel (cancelled or blocked).

        An entry already sent stays sent; the snapshot returned shows it.
        """
        snapshot = self.begin_attempt(key, policy=policy, planned_at=planned_at)
        if snapshot.status != ContactStatus.SENT:
            self.finish(snapshot.entry_id, status, reason=reason, at=at)
        return snapshot

    def find(self, key: ContactKey) -> LedgerSnapshot | None:
        """The committed entry of a contact, if one was ever begun."""
        with session_scope(self._engine) as session:
            entry = find_entry(session, key)
            return None if entry is None else snapshot_of(entry)

    def entries_for(self, tenant: str, invoice_number: str) -> list[ContactLedgerEntry]:
        """Every ledger entry of one invoice, in the order they were planned."""
        with session_scope(self._engine) as session:
            statement = (
                select(ContactLedgerEntry)
                .where(
                    ContactLedgerEntry.tenant == tenant,
                    ContactLedgerEntry.invoice_number == invoice_number,
                )
                .order_by(
                    col(ContactLedgerEntry.planned_at), col(ContactLedgerEntry.id)
                )
            )
            return list(session.exec(statement).all())


def refusal_to_send(invoice: Invoice | None) -> NotPayable | None:
    """Why an invoice just read may no longer be asked for money, or None when it may."""
    reason = why_not_payable(invoice) if invoice is not None else "invoice not in store"
    return None if reason is None else NotPayable(reason)


def entries_of_step(
    session: Session, tenant: str, invoice_number: str, step_id: str
) -> dict[tuple[str, str], LedgerSnapshot]:
    """The entries of one step of an invoice, keyed by (channel, recipient)."""
    params = {"tenant": tenant, "invoice_number": invoice_number, "step_id": step_id}
    entries = {}
    rows = session.connection().execute(_ENTRIES_OF_STEP, params)
    for entry_id, channel, recipient, status, attempts, message_id in rows:
        assert entry_id is not None
        entries[(channel, recipient)] = LedgerSnapshot(
            entry_id, ContactStatus(status), attempts, message_id
        )
    return entries


def snapshot_of(entry: ContactLedgerEntry) -> LedgerSnapshot:
    """A flushed entry as a snapshot that outlives its session."""
    assert entry.id is not None
    return LedgerSnapshot(
        entry.id, ContactStatus(entry.status), entry.attempts, entry.provider_message_id
    )


def record_message_on(
    session: Session, entry: ContactLedgerEntry, message: MessageRecord
) -> None:
    """Write a text's record on an entry whose attempt line was just added."""
    _put_cost(entry, message)
    _add_notes(session, entry, message)


def _add_notes(
    session: Session, entry: ContactLedgerEntry, message: MessageRecord
) -> None:
    assert entry.id is not None
    for outcome, detail in message.notes:
        session.add(
            ContactAttempt(
                ledger_entry_id=entry.id,
                attempt=entry.attempts,
                outcome=outcome,
                detail=detail,
            )
        )


def _put_cost(entry: ContactLedgerEntry, message: MessageRecord) -> None:
    entry.message_sha256 = message.message_sha256
    if message.sms_encoding is not None:
        entry.sms_encoding = message.sms_encoding
        entry.sms_segments = message.sms_segments


def find_entry(session: Session, key: ContactKey) -> ContactLedgerEntry | None:
    """The entry of a contact, read in a transaction the caller holds."""
    return session.exec(_ENTRY_BY_KEY, params=key.__dict__).first()


# Built once and run with parameters: building a statement per call costs more CPU
# than SQLite takes to run it.
_ENTRY_BY_KEY = select(ContactLedgerEntry).where(
    ContactLedgerEntry.tenant == bindparam("tenant"),
    ContactLedgerEntry.invoice_number == bindparam("invoice_number"),
    ContactLedgerEntry.step_id == bindparam("step_id"),
    ContactLedgerEntry.channel == bindparam("channel"),
    ContactLedgerEntry.recipient == bindparam("recipient"),
)
# SQLModel's select types at most four columns; these read more, by SQLAlchemy's own.
_ENTRIES_OF_STEP = sa.select(
    col(ContactLedgerEntry.id),
    col(ContactLedgerEntry.channel),
    col(ContactLedgerEntry.recipient),
    col(ContactLedgerEntry.status),
    col(ContactLedgerEntry.attempts),
    col(ContactLedgerEntry.provider_message_id),
).where(
    col(ContactLedgerEntry.tenant) == bindparam("tenant"),
    col(ContactLedgerEntry.invoice_number) == bindparam("invoice_number"),
    col(ContactLedgerEntry.step_id) == bindparam("step_id"),
)
_FINISH = (
    update(ContactLedgerEntry)
    .where(col(ContactLedgerEntry.id) == bindparam("entry_id"))
    .values(
        status=bindparam("new_status", type_=String()),
        reason=bindparam("new_reason", type_=String()),
        decided_at=bindparam("decided", type_=DateTime()),
        provider_message_id=func.coalesce(
            bindparam("message_id", type_=String()),
            ContactLedgerEntry.provider_message_id,
        ),
    )
)
# The line is numbered by the entry's attempts as committed, read in the same statement.
_LINE_FOR_LATEST_ATTEMPT = insert(ContactAttempt).from_select(
    ["ledger_entry_id", "attempt", "outcome", "detail", "at"],
    sa.select(
        col(ContactLedgerEntry.id),
        col(ContactLedgerEntry.attempts),
        bindparam("line_outcome", type_=String()),
        bindparam("line_detail", type_=String()),
        bindparam("line_at", type_=DateTime()),
    ).where(col(ContactLedgerEntry.id) == bindparam("entry_id")),
)
