"""The contact ledger: every planned contact, every attempt and its outcome, for the audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    as_utc,
    session_scope,
)

# Attempt outcomes after which a channel may have taken the message without our knowing:
# begun ("started", or "allow" from the contact gate) and never finished because the
# worker died, or a timeout after the request may have reached the provider.
IN_DOUBT = frozenset({"started", "allow", "unknown"})


@dataclass(frozen=True)
class ContactKey:
    """What makes a contact unique: the same step to the same recipient happens once."""

    tenant: str
    invoice_number: str
    step_id: str
    channel: str
    recipient: str


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


class ContactLedger:
    """Writes the ledger in short committed transactions, so a crash loses no decision."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def begin_attempt(
        self, key: ContactKey, *, policy: tuple[str, int], planned_at: datetime
    ) -> LedgerSnapshot:
        """Find or create the entry and count one more attempt, committed before sending."""
        try:
            return self._begin(key, policy, planned_at)
        except IntegrityError:
            # Another worker created the same entry between our read and our insert.
            return self._begin(key, policy, planned_at)

    def _begin(
        self, key: ContactKey, policy: tuple[str, int], planned_at: datetime
    ) -> LedgerSnapshot:
        with session_scope(self._engine) as session:
            entry = session.exec(_by_key(key)).first()
            if entry is None:
                entry = ContactLedgerEntry(
                    **key.__dict__,
                    policy_name=policy[0],
                    policy_version=policy[1],
                    planned_at=planned_at,
                )
            if entry.status != ContactStatus.SENT:
                entry.attempts += 1
                entry.status = ContactStatus.PENDING
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
            return LedgerSnapshot(
                entry.id,
                ContactStatus(entry.status),
                entry.attempts,
                entry.provider_message_id,
            )

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
        with session_scope(self._engine) as session:
            entry = session.get(ContactLedgerEntry, entry_id)
            assert entry is not None
            entry.status = status
            entry.reason = reason
            entry.decided_at = at
            entry.provider_message_id = provider_message_id or entry.provider_message_id
            session.add(entry)
            session.add(
                ContactAttempt(
                    ledger_entry_id=entry_id,
                    attempt=entry.attempts,
                    outcome=outcome or str(status),
                    detail=reason,
                )
            )

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
        if entry.message_sha256 is None or not trail:
            return None
        if trail[-1].outcome not in IN_DOUBT:
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
            entry = session.exec(_by_key(key)).first()
            if entry is None or entry.id is None:
                return None
            return LedgerSnapshot(
                entry.id,
                ContactStatus(entry.status),
                entry.attempts,
                entry.provider_message_id,
            )

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


def _by_key(key: ContactKey) -> SelectOfScalar[ContactLedgerEntry]:
    return select(ContactLedgerEntry).where(
        ContactLedgerEntry.tenant == key.tenant,
        ContactLedgerEntry.invoice_number == key.invoice_number,
        ContactLedgerEntry.step_id == key.step_id,
        ContactLedgerEntry.channel == key.channel,
        ContactLedgerEntry.recipient == key.recipient,
    )
