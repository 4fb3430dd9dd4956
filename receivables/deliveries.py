"""What providers report after sending: deliveries, bounces and opt-outs, each applied once."""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select
from sqlmodel.sql.expression import SelectOfScalar

from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    ContactSuppression,
    session_scope,
    utc_now,
)
from receivables.webhooks import (
    DeliveryEvent,
    DeliveryStatus,
    InboundMessage,
    WebhookEvent,
)

logger = logging.getLogger(__name__)

BOUNCED = "bounced"
OPTED_OUT = "opted_out"
# What an erased address becomes (receivables.debtor_data): the prefix and a hash.
PSEUDONYM_PREFIX = "erased:"
# What an erased name (or typed note) becomes: a reader sees it was there and went.
ERASED_MARKER = "[erased]"

# The ContactAttempt outcome each report leaves; "delivery_failed" keeps a provider's later
# report apart from the "failed" the send activity writes when a channel refuses at once.
_REPORTED = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.BOUNCED: "bounced",
    DeliveryStatus.FAILED: "delivery_failed",
    DeliveryStatus.OPTED_OUT: "opted_out",
}
# A report that closes the address for good, on the channel the message went by.
_CLOSES = {DeliveryStatus.BOUNCED: BOUNCED, DeliveryStatus.OPTED_OUT: OPTED_OUT}


class Applied(enum.StrEnum):
    """What applying one provider event did to the store."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"  # the provider sent the same event again
    UNKNOWN_MESSAGE = "unknown_message"  # no ledger entry of the tenant has that id
    IGNORED = "ignored"  # an inbound text that is not an opt-out


@dataclass(frozen=True)
class Suppression:
    """A closed address as the send activity reads it, without the address itself."""

    channel: str
    reason: str
    source: str
    at: datetime


def normalise_address(channel: str, address: str) -> str:
    """The form an address is closed and looked up under: lower-case mail, ``+`` and digits."""
    if address.startswith(PSEUDONYM_PREFIX):
        return address  # an erased address has no other form
    if channel == "email":
        return address.strip().casefold()
    if channel in ("sms", "whatsapp"):
        # Imports keep numbers as written ("+56 9 1234 5678"); Twilio reports them bare.
        bare = address.strip().removeprefix("whatsapp:")
        digits = "".join(char for char in bare if char.isdigit())
        return ("+" if bare.startswith("+") else "") + digits
    return address.strip()


def is_erased(value: str | None) -> bool:
    """Whether a name or address is what erasing its debtor left: nobody can be reached by it."""
    if not value:
        return False
    return value.strip().startswith(PSEUDONYM_PREFIX) or value.strip() == ERASED_MARKER


def address_pseudonym(tenant: str, channel: str, address: str) -> str:
    """What an address becomes when its debtor's data is erased: stable, and not the address.

    The same address on the same channel always gives the same pseudonym, so a closed
    address that comes back in a later import is still found closed (see closed_among).
    """
    normalised = normalise_address(channel, address)
    if normalised.startswith(PSEUDONYM_PREFIX):
        return normalised
    # Limit: tenant and channel salt the hash but are no secret, so a phone number (a
    # small space) can be found again by hashing every candidate. A key kept outside the
    # store, given to the worker and the erase command alike, would lift this.
    salted = "\x1f".join((tenant, channel, normalised)).encode("utf-8")
    return PSEUDONYM_PREFIX + hashlib.sha256(salted).hexdigest()[:32]


def suppress(
    engine: Engine,
    *,
    tenant: str,
    channel: str,
    address: str,
    reason: str,
    source: str,
    at: datetime,
) -> bool:
    """Close an address on one channel; False when it was closed already."""
    try:
        with session_scope(engine) as session:
            return _suppress(session, tenant, channel, address, reason, source, at)
    except IntegrityError:
        # Another callback closed the same address between our read and our insert.
        return False


def find_suppressions(
    engine: Engine, tenant: str, routes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Suppression]:
    """The closed ones among (channel, address) pairs, keyed by the pair as given."""
    with session_scope(engine) as session:
        return closed_among(session, tenant, routes)


def closed_among(
    session: Session, tenant: str, routes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Suppression]:
    """``find_suppressions`` inside a transaction the caller holds."""
    found: dict[tuple[str, str], Suppression] = {}
    for channel, address in routes:
        params = {
            "tenant": tenant,
            "channel": channel,
            "address": normalise_address(channel, address),
            "pseudonym": address_pseudonym(tenant, channel, address),
        }
        row = session.exec(_OPEN_SUPPRESSION, params=params).first()
        if row is not None:
            found[(channel, address)] = Suppression(channel, *row)
    return found


def apply_delivery_event(engine: Engine, event: DeliveryEvent, tenant: str) -> Applied:
    """Update the ledger entry of the reported message; a bounce or opt-out closes the address."""
    try:
        return _apply_delivery(engine, event, tenant)
    except IntegrityError:
        # A copy of the same callback, applied at the same moment, closed the address
        # first and rolled this one back; applied again, it finds that copy's work.
        return _apply_delivery(engine, event, tenant)


def apply_inbound(engine: Engine, message: InboundMessage, tenant: str) -> Applied:
    """STOP, BAJA... close the sender's number on the channel it wrote from; START reopens it."""
    if message.opt_in:
        return _reopen(engine, message, tenant)
    if not message.opt_out:
        return Applied.IGNORED
    closed = suppress(
        engine,
        tenant=tenant,
        channel=message.channel,
        address=message.sender,
        reason=OPTED_OUT,
        source=f"{message.provider} inbound opt-out {message.message_id}",
        at=message.received_at,
    )
    logger.info(
        "inbound opt-out %s on %s: %s",
        message.message_id,
        message.channel,
        "closed the number" if closed else "number was closed already",
    )
    return Applied.APPLIED if closed else Applied.ALREADY_APPLIED


def _reopen(engine: Engine, message: InboundMessage, tenant: str) -> Applied:
    """Open a number closed by the debtor's own opt-out; a bounce stays closed."""
    source = f"{message.provider} inbound opt-in {message.message_id}"
    address = normalise_address(message.channel, message.sender)
    with session_scope(engine) as session:
        row = session.exec(
            _suppression(tenant, message.channel, address).with_for_update()
        ).first()
        if row is None or row.reason != OPTED_OUT or row.reopened_at is not None:
            logger.info(
                "inbound opt-in %s on %s: number was not closed by an opt-out",
                message.message_id,
                message.channel,
            )
            return Applied.ALREADY_APPLIED if row is not None else Applied.IGNORED
        row.reopened_at, row.reopened_by = message.received_at, source
        session.add(row)
    logger.info(
        "inbound opt-in %s on %s: reopened the number",
        message.message_id,
        message.channel,
    )
    return Applied.APPLIED


def event_handler(engine: Engine, tenant: str) -> Callable[[WebhookEvent], None]:
    """The ``on_event`` of a WebhookApp that applies every verified callback to the store."""

    def apply(event: WebhookEvent) -> None:
        """Apply one event; an error makes the app answer 500 so the provider retries."""
        if isinstance(event, DeliveryEvent):
            apply_delivery_event(engine, event, tenant)
        else:
            apply_inbound(engine, event, tenant)

    return apply


def _apply_delivery(engine: Engine, event: DeliveryEvent, tenant: str) -> Applied:
    at = event.occurred_at or utc_now()
    outcome = _REPORTED[event.status]
    with session_scope(engine) as session:
        entry = session.exec(_entry_of(tenant, event.message_id)).first()
        if entry is None or entry.id is None:
            logger.info("no %s ledger entry for %s", event.provider, event.message_id)
            return Applied.UNKNOWN_MESSAGE
        if _reported_before(session, entry.id, outcome):
            return Applied.ALREADY_APPLIED
        detail = _describe(event)
        if event.status in (DeliveryStatus.BOUNCED, DeliveryStatus.FAILED):
            entry.status = ContactStatus.FAILED
            entry.reason = detail
            entry.decided_at = at
            session.add(entry)
        session.add(
            ContactAttempt(
                ledger_entry_id=entry.id,
                attempt=entry.attempts,
                outcome=outcome,
                detail=detail,
                at=at,
            )
        )
        closing = _CLOSES.get(event.status)
        if closing is not None:
            source = f"{event.provider} {event.status} {event.message_id}"
            _suppress(
                session, tenant, entry.channel, entry.recipient, closing, source, at
            )
    logger.info("%s message %s: %s", event.provider, event.message_id, outcome)
    return Applied.APPLIED


def _describe(event: DeliveryEvent) -> str:
    code = f" with error {event.error_code}" if event.error_code is not None else ""
    return f"{event.provider} reported {event.status}{code}"


def _suppress(
    session: Session,
    tenant: str,
    channel: str,
    address: str,
    reason: str,
    source: str,
    at: datetime,
) -> bool:
    normalised = normalise_address(channel, address)
    existing = session.exec(_suppression(tenant, channel, normalised)).first()
    if existing is not None and existing.reopened_at is not None:
        # Closed again after a START: the row now says why it is closed this time.
        existing.reason, existing.source, existing.at = reason, source, at
        existing.reopened_at = existing.reopened_by = None
        session.add(existing)
        session.flush()
        return True
    if existing is not None:
        return False
    session.add(
        ContactSuppression(
            tenant=tenant,
            channel=channel,
            address=normalised,
            reason=reason,
            source=source,
            at=at,
        )
    )
    session.flush()
    return True


def _entry_of(tenant: str, message_id: str) -> SelectOfScalar[ContactLedgerEntry]:
    # FOR UPDATE on PostgreSQL: two copies of one callback apply one after the other.
    # The index on (tenant, provider_message_id) keeps this one lookup per callback.
    return (
        select(ContactLedgerEntry)
        .where(
            ContactLedgerEntry.tenant == tenant,
            ContactLedgerEntry.provider_message_id == message_id,
        )
        .with_for_update()
    )


def _reported_before(session: Session, entry_id: int, outcome: str) -> bool:
    statement = select(ContactAttempt.id).where(
        ContactAttempt.ledger_entry_id == entry_id, ContactAttempt.outcome == outcome
    )
    return session.exec(statement).first() is not None


def _suppression(
    tenant: str, channel: str, normalised: str
) -> SelectOfScalar[ContactSuppression]:
    # An erased debtor's suppression keeps only the pseudonym: it must still close the address.
    pseudonym = address_pseudonym(tenant, channel, normalised)
    return select(ContactSuppression).where(
        ContactSuppression.tenant == tenant,
        ContactSuppression.channel == channel,
        or_(
            ContactSuppression.address == normalised,
            ContactSuppression.address == pseudonym,
        ),
    )


# Built once and run with parameters, as the send activity reads it on every send.
_OPEN_SUPPRESSION = select(
    ContactSuppression.reason, ContactSuppression.source, ContactSuppression.at
).where(
    ContactSuppression.tenant == bindparam("tenant"),
    ContactSuppression.channel == bindparam("channel"),
    # The address as written, or as it stands after its debtor's data was erased.
    col(ContactSuppression.address).in_([bindparam("address"), bindparam("pseudonym")]),
    col(ContactSuppression.reopened_at).is_(None),
)
