"""A debtor's personal data rights (Ley 19.628 / 21.719): export what the store holds, erase it.

Personal data lives only in the store; Temporal keeps ids and amounts (see the README for
what free text still reaches a history). Every table was weighed; those about a debtor:

- customer: the row itself. Erase: name to a marker, e-mail, phone and WhatsApp to pseudonyms.
- invoice, payment, paymentpromise: ids, amounts, dates, outcomes. Exported, kept as they are.
- contactledgerentry: recipient to a pseudonym; machine reasons lose the debtor's identifiers.
- contactattempt: details lose the debtor's identifiers.
- outboxmessage: recipient (and the idempotency key naming it) to a pseudonym; subject and
  bodies to the marker.
- humantask: reasons lose identifiers; the notes in a task's outcome become the marker.
- dispute: the notes become the marker.
- stopfactrecord: the reason, typed by a person, becomes the marker.
- contactsuppression: the address becomes its pseudonym, which the send path still finds
  closed (receivables.deliveries.closed_among); the provider's source loses identifiers.
- operatoraction, supervisoraction: reasons typed by a person become the marker; the log
  of these requests themselves keeps its reason and counts.
- reconciledmovement (applied to the debtor's folios): the remittance text becomes the
  marker; candidates and reasons lose identifiers.
- portfolioassignment: who works the debtor. Exported; holds no personal data.

Not about a debtor: person (the creditor's own team), importbatch (a file's name and hash).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, or_, select

from receivables.bank_matching import REFERENCE_PREFIX
from receivables.commitments import StoredDispute, StoredPromise
from receivables.deliveries import ERASED_MARKER, address_pseudonym, normalise_address
from receivables.governance import PortfolioAssignment, SupervisorAction
from receivables.operator_actions import ActionKind, OperatorAction, record_action
from receivables.reconciliation import ReconciledMovement
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactSuppression,
    Customer,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    StopFactRecord,
    as_utc,
    find_customer,
    session_scope,
    utc_now,
)
from receivables.tasks import HumanTask

log = logging.getLogger(__name__)

ERASED = ERASED_MARKER  # what a name, a note or a message body becomes
CLOSED_STATUSES = frozenset(
    {
        InvoiceStatus.PAID,
        InvoiceStatus.CLOSED_BY_CREDIT,
        InvoiceStatus.WRITTEN_OFF,
        InvoiceStatus.CANCELLED,
    }
)
# The channels each address of a customer row is sent on, and so closed on.
_CHANNELS_OF_FIELD = {"email": ("email",), "phone": ("sms", "whatsapp")}
_CHANNELS_OF_FIELD["whatsapp"] = ("whatsapp",)
# Shorter identifiers would match inside unrelated words of a reason.
_SHORTEST_IDENTIFIER = 3
# Folios or ids per query: a customer may have thousands of invoices, and an IN list or an
# OR of LIKE terms that long meets SQLite's expression depth (1000) and bind limits.
_QUERY_CHUNK = 500
_LIKE_CHUNK = 100


class ErasureRefused(ValueError):
    """An erase that the law does not allow yet, or a customer that is not there."""


@dataclass
class CustomerRows:
    """Every row of the store about one customer, read in one transaction."""

    customer: Customer
    invoices: list[Invoice]
    tables: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def open_folios(self) -> list[str]:
        """The folios still being collected: the reason the data may be held."""
        return [
            i.invoice_number for i in self.invoices if i.status not in CLOSED_STATUSES
        ]


@dataclass(frozen=True)
class Erasure:
    """What erasing one customer changed (or would change, on a dry run): rows per table."""

    customer_id: str
    changed: dict[str, int]
    dry_run: bool

    @property
    def rows_changed(self) -> int:
        """Rows changed across every table; 0 when the customer was erased already."""
        return sum(self.changed.values())


# -- reading -------------------------------------------------------------------------------


def read_customer(session: Session, tenant: str, customer_id: str) -> CustomerRows:
    """Every covered row about one customer; a customer not in the store is refused."""
    customer = find_customer(session, tenant, customer_id)
    if customer is None:
        raise ErasureRefused(
            f"no customer {customer_id!r} in tenant {tenant!r}; check the id "
            "(it is the customer_id column of the portfolio file)"
        )
    invoices = list(
        session.exec(
            select(Invoice)
            .where(Invoice.tenant == tenant, Invoice.customer_id == customer_id)
            .order_by(col(Invoice.invoice_number))
        )
    )
    rows = CustomerRows(customer, invoices)
    folios = [invoice.invoice_number for invoice in invoices]
    by_folio = _rows_by_folio(session, tenant, folios)
    rows.tables = {
        "customer": [customer],
        "invoice": invoices,
        **by_folio,
        "contactattempt": _attempts_of(session, by_folio["contactledgerentry"]),
        "stopfactrecord": _of_customer(session, StopFactRecord, tenant, customer_id),
        "portfolioassignment": _of_customer(
            session, PortfolioAssignment, tenant, customer_id
        ),
        "operatoraction": _operator_actions(session, tenant, customer_id, folios),
        "reconciledmovement": _movements_of(
            session, tenant, customer_id, folios, by_folio["payment"]
        ),
        "contactsuppression": _suppressions_of(session, tenant, customer, by_folio),
    }
    return rows


def _rows_by_folio(
    session: Session, tenant: str, folios: Sequence[str]
) -> dict[str, list[Any]]:
    tables: tuple[type[Any], ...] = (
        Payment,
        ContactLedgerEntry,
        OutboxMessage,
        HumanTask,
        StoredPromise,
        StoredDispute,
        SupervisorAction,
    )
    found: dict[str, list[Any]] = {}
    for table in tables:
        rows: list[Any] = []
        for chunk in _chunks(folios, _QUERY_CHUNK):
            rows += session.exec(
                select(table).where(
                    table.tenant == tenant, col(table.invoice_number).in_(chunk)
                )
            )
        found[table.__tablename__] = sorted(rows, key=lambda row: row.id)
    return found


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _attempts_of(
    session: Session, entries: Sequence[ContactLedgerEntry]
) -> list[ContactAttempt]:
    ids = [entry.id for entry in entries]
    attempts: list[ContactAttempt] = []
    for chunk in _chunks(ids, _QUERY_CHUNK):
        attempts += session.exec(
            select(ContactAttempt).where(col(ContactAttempt.ledger_entry_id).in_(chunk))
        )
    return sorted(attempts, key=lambda attempt: attempt.id or 0)


def _of_customer(
    session: Session, table: type[Any], tenant: str, customer_id: str
) -> list[Any]:
    statement = select(table).where(
        table.tenant == tenant, table.customer_id == customer_id
    )
    return list(session.exec(statement.order_by(col(table.id))))


def _operator_actions(
    session: Session, tenant: str, customer_id: str, folios: Sequence[str]
) -> list[OperatorAction]:
    found = {
        action.id: action
        for action in session.exec(
            select(OperatorAction).where(
                OperatorAction.tenant == tenant,
                OperatorAction.customer_id == customer_id,
            )
        )
    }
    for chunk in _chunks(folios, _QUERY_CHUNK):
        statement = select(OperatorAction).where(
            OperatorAction.tenant == tenant,
            col(OperatorAction.invoice_number).in_(chunk),
        )
        found.update((action.id, action) for action in session.exec(statement))
    return [found[key] for key in sorted(found, key=lambda key: key or 0)]


def _movements_of(
    session: Session,
    tenant: str,
    customer_id: str,
    folios: Sequence[str],
    payments: Sequence[Payment],
) -> list[ReconciledMovement]:
    """Bank lines about the customer: applied to, paid by hand for, or naming them."""
    found: dict[int | None, ReconciledMovement] = {}
    texts = ("invoice_numbers", "reason", "candidates")
    for chunk in _chunks([customer_id, *folios], _LIKE_CHUNK):
        statement = select(ReconciledMovement).where(
            ReconciledMovement.tenant == tenant,
            or_(
                *(
                    col(getattr(ReconciledMovement, text)).contains(word)
                    for text in texts
                    for word in chunk
                )
            ),
        )
        names = _word_pattern(chunk)
        for row in session.exec(statement):
            if any(names.search(getattr(row, text)) for text in texts):
                found[row.id] = row
    # A line left unmatched and later recorded with ``pay`` names no folio of its own.
    line_ids = sorted(_bank_line_ids(payments))
    for chunk in _chunks(line_ids, _QUERY_CHUNK):
        statement = select(ReconciledMovement).where(
            ReconciledMovement.tenant == tenant,
            col(ReconciledMovement.bank_transaction_id).in_(chunk),
        )
        found.update((row.id, row) for row in session.exec(statement))
    return [found[key] for key in sorted(found, key=lambda key: key or 0)]


def _word_pattern(words: Sequence[str]) -> re.Pattern[str]:
    """A whole folio or customer id: "1001" is not found inside "10010" or "C-1001B"."""
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def _bank_line_ids(payments: Sequence[Payment]) -> set[str]:
    """The bank transaction ids of payments recorded as ``BANK:<id>`` or ``BANK:<id>/FOLIO``."""
    ids: set[str] = set()
    for payment in payments:
        if payment.reference.startswith(REFERENCE_PREFIX):
            line = payment.reference.removeprefix(REFERENCE_PREFIX)
            ids |= {line, line.rsplit("/", 1)[0]}
    return ids


def _suppressions_of(
    session: Session,
    tenant: str,
    customer: Customer,
    by_folio: dict[str, list[Any]],
) -> list[ContactSuppression]:
    """Closed addresses the debtor had on file or was written to, as given or erased."""
    routes = set(_routes_of(customer))
    for entry in by_folio["contactledgerentry"]:
        routes.add((entry.channel, entry.recipient))
    found: dict[int | None, ContactSuppression] = {}
    for channel, address in sorted(routes):
        forms = {
            normalise_address(channel, address),
            address_pseudonym(tenant, channel, address),
        }
        for row in session.exec(
            select(ContactSuppression).where(
                ContactSuppression.tenant == tenant,
                ContactSuppression.channel == channel,
                col(ContactSuppression.address).in_(forms),
            )
        ):
            found[row.id] = row
    return [found[key] for key in sorted(found, key=lambda key: key or 0)]


def _routes_of(customer: Customer) -> Iterable[tuple[str, str]]:
    """(channel, address) for every address of the customer row."""
    for field_name, channels in _CHANNELS_OF_FIELD.items():
        address = getattr(customer, field_name)
        if address:
            for channel in channels:
                yield channel, address


# -- export --------------------------------------------------------------------------------


def export_customer(
    engine: Engine, tenant: str, customer_id: str, *, requested_by: str | None = None
) -> dict[str, Any]:
    """Everything the store holds about one customer, as JSON-ready data.

    With ``requested_by`` the access request is logged (counts only): answering one is a
    duty the creditor may have to show it met.
    """
    with session_scope(engine) as session:
        rows = read_customer(session, tenant, customer_id)
        tables = {
            name: [_plain_row(row) for row in table_rows]
            for name, table_rows in rows.tables.items()
        }
        counts = {name: len(table_rows) for name, table_rows in tables.items()}
        if requested_by is not None:
            record_action(
                session,
                tenant=tenant,
                customer_id=customer_id,
                invoice_number=None,
                kind=ActionKind.EXPORT_PERSONAL_DATA,
                person_id=requested_by,
                reason="access request answered with an export",
                after=json.dumps(counts, sort_keys=True),
            )
    return {
        "tenant": tenant,
        "customer_id": customer_id,
        "exported_at": utc_now().isoformat(),
        "tables": tables,
    }


def _plain_row(row: SQLModel) -> dict[str, Any]:
    plain = row.model_dump(mode="json")
    for name in plain:
        value = getattr(row, name)
        if isinstance(value, datetime):
            # SQLite hands instants back naive; they are UTC, and the export says so.
            plain[name] = as_utc(value).isoformat()
    return plain


# -- erase ---------------------------------------------------------------------------------


def erase_customer(
    engine: Engine,
    tenant: str,
    customer_id: str,
    *,
    by: str,
    reason: str,
    dry_run: bool = False,
) -> Erasure:
    """Suppress one customer's personal data; ids, amounts, dates and outcomes stay.

    Refused while any of their invoices is open: collecting a live debt is the legal basis
    for holding the data. A second erase finds nothing to change and logs nothing.
    """
    with session_scope(engine) as session:
        rows = read_customer(session, tenant, customer_id)
        if rows.open_folios:
            raise ErasureRefused(
                f"customer {customer_id} still owes on {', '.join(rows.open_folios)}: "
                "collecting a live debt is the legal basis for holding their data; "
                "erase once every invoice is paid, credited, written off or cancelled"
            )
        changed = _erase_rows(session, tenant, rows)
        if dry_run:
            session.rollback()
        elif changed:
            record_action(
                session,
                tenant=tenant,
                customer_id=customer_id,
                invoice_number=None,
                kind=ActionKind.ERASE_PERSONAL_DATA,
                person_id=by,
                reason=reason,
                after=json.dumps(dict(sorted(changed.items()))),
            )
    erasure = Erasure(customer_id, dict(sorted(changed.items())), dry_run)
    log.info(
        "erase of customer %s%s: %d rows %s",
        customer_id,
        " (dry run)" if dry_run else "",
        erasure.rows_changed,
        "to change" if dry_run else "changed",
    )
    return erasure


def _erase_rows(session: Session, tenant: str, rows: CustomerRows) -> Counter[str]:
    scrub = _Scrubber(_identifiers(tenant, rows))
    changes = _Changes(session)
    customer = rows.customer
    changes.set(
        customer,
        name=ERASED,
        **{
            name: address_pseudonym(tenant, channels[0], getattr(customer, name))
            for name, channels in _CHANNELS_OF_FIELD.items()
            if getattr(customer, name)
        },
    )
    for entry in rows.tables["contactledgerentry"]:
        recipient = address_pseudonym(tenant, entry.channel, entry.recipient)
        changes.set(entry, recipient=recipient, reason=scrub(entry.reason))
    for attempt in rows.tables["contactattempt"]:
        changes.set(attempt, detail=scrub(attempt.detail))
    for message in rows.tables["outboxmessage"]:
        changes.set(
            message,
            recipient=address_pseudonym(tenant, message.channel, message.recipient),
            idempotency_key=scrub(message.idempotency_key),
            subject=_blank(message.subject),
            body=_blank(message.body),
            html_body=_blank(message.html_body),
        )
    _erase_notes(changes, scrub, rows)
    for suppression in rows.tables["contactsuppression"]:
        changes.set(
            suppression,
            address=address_pseudonym(tenant, suppression.channel, suppression.address),
            source=scrub(suppression.source),
            reopened_by=scrub(suppression.reopened_by),
        )
    return changes.rows


def _erase_notes(changes: _Changes, scrub: _Scrubber, rows: CustomerRows) -> None:
    """Text people typed is replaced whole; text the code wrote loses the identifiers."""
    for task in rows.tables["humantask"]:
        changes.set(
            task,
            reason=scrub(task.reason),
            outcome_json=_without_notes(task.outcome_json),
        )
    for dispute in rows.tables["dispute"]:
        changes.set(
            dispute,
            note=_blank(dispute.note),
            resolution_note=_blank(dispute.resolution_note),
        )
    for fact in rows.tables["stopfactrecord"]:
        changes.set(fact, reason=_blank(fact.reason), source=scrub(fact.source))
    for action in rows.tables["operatoraction"]:
        # The log of access and erase requests is the creditor's proof: it stays readable.
        if action.kind not in _REQUEST_KINDS:
            changes.set(
                action,
                reason=_blank(action.reason),
                before_value=scrub(action.before_value),
                after_value=scrub(action.after_value),
            )
    for command in rows.tables["supervisoraction"]:
        changes.set(
            command,
            reason=_blank(command.reason),
            detail_json=scrub(command.detail_json),
        )
    for line in rows.tables["reconciledmovement"]:
        changes.set(
            line,
            remittance=_blank(line.remittance),
            candidates=scrub(line.candidates),
            reason=scrub(line.reason),
        )


_REQUEST_KINDS = {ActionKind.EXPORT_PERSONAL_DATA, ActionKind.ERASE_PERSONAL_DATA}


class _Changes:
    """Sets fields that differ and counts the rows that did: the counts make idempotence."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.rows: Counter[str] = Counter()

    def set(self, row: Any, **values: Any) -> None:
        different = {k: v for k, v in values.items() if getattr(row, k) != v}
        if not different:
            return
        for name, value in different.items():
            setattr(row, name, value)
        self._session.add(row)
        self.rows[row.__tablename__] += 1


class _Scrubber:
    """Replaces the debtor's name and addresses inside a text the code wrote."""

    def __init__(self, replacements: dict[str, str]) -> None:
        self._by_folded = {key.casefold(): value for key, value in replacements.items()}
        # Longest first: an e-mail is replaced whole, not after its local part.
        keys = sorted(self._by_folded, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(key) for key in keys), re.IGNORECASE)
            if keys
            else None
        )

    def __call__(self, text: str | None) -> str | None:
        if not text or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._by_folded[m.group(0).casefold()], text)


def _identifiers(tenant: str, rows: CustomerRows) -> dict[str, str]:
    """Each form the debtor's name and addresses may take in a text, and its replacement."""
    found: dict[str, str] = {}
    routes = list(_routes_of(rows.customer))
    routes += [(e.channel, e.recipient) for e in rows.tables["contactledgerentry"]]
    routes += [(m.channel, m.recipient) for m in rows.tables["outboxmessage"]]
    for channel, address in routes:
        pseudonym = address_pseudonym(tenant, channel, address)
        normalised = normalise_address(channel, address)
        for form in (address.strip(), normalised, normalised.lstrip("+")):
            found[form] = pseudonym
    if rows.customer.name != ERASED:
        found[rows.customer.name.strip()] = ERASED
    return {
        form: replacement
        for form, replacement in found.items()
        if len(form) >= _SHORTEST_IDENTIFIER and form != replacement
    }


def _blank(text: str | None) -> str | None:
    """A typed text replaced whole: nobody can tell which parts of it were personal."""
    return ERASED if text and text != ERASED else text


def _without_notes(outcome_json: str | None) -> str | None:
    """A task outcome with every note in it (its own, its dispute's) blanked."""
    if not outcome_json:
        return outcome_json
    outcome = json.loads(outcome_json)
    if not _blank_notes(outcome):
        return outcome_json
    return json.dumps(outcome, sort_keys=True, ensure_ascii=False)


def _blank_notes(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    changed = False
    for key, inner in value.items():
        if key == "note" and isinstance(inner, str) and _blank(inner) != inner:
            value[key] = ERASED
            changed = True
        changed = _blank_notes(inner) or changed
    return changed


# -- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionRun:
    """What one retention run erased, and the customers it had to leave."""

    erasures: list[Erasure]
    refused: list[str]  # an invoice reopened between the listing and the erase


def settled_before(engine: Engine, tenant: str, cutoff: date) -> list[str]:
    """Customers whose invoices are all closed, the last of them closed before ``cutoff``.

    A customer without invoices is not listed: nothing says when their collection ended.
    """
    with session_scope(engine) as session:
        invoices = session.exec(select(Invoice).where(Invoice.tenant == tenant)).all()
        last_moved = _last_instants(session, tenant)
    still_open: set[str] = set()
    closed_on: dict[str, date] = {}
    for invoice in invoices:
        if invoice.status not in CLOSED_STATUSES:
            still_open.add(invoice.customer_id)
            continue
        day = _closing_day(invoice, last_moved.get(invoice.invoice_number))
        closed_on[invoice.customer_id] = max(
            day, closed_on.get(invoice.customer_id, day)
        )
    return sorted(
        customer_id
        for customer_id, day in closed_on.items()
        if customer_id not in still_open and day < cutoff
    )


def _last_instants(session: Session, tenant: str) -> dict[str, datetime]:
    """The last payment or hand closing of each folio: when it was closed, at the latest."""
    last: dict[str, datetime] = {}
    payments = select(Payment.invoice_number, Payment.received_at).where(
        Payment.tenant == tenant
    )
    closings = select(OperatorAction.invoice_number, OperatorAction.recorded_at).where(
        OperatorAction.tenant == tenant,
        col(OperatorAction.kind).in_([ActionKind.CANCEL, ActionKind.WRITE_OFF]),
    )
    for statement in (payments, closings):
        for folio, instant in session.exec(statement):
            if folio is not None:
                last[folio] = max(as_utc(instant), last.get(folio, as_utc(instant)))
    return last


def _closing_day(invoice: Invoice, last_moved: datetime | None) -> date:
    # The latest of what the store knows, so a retention run never erases early. Days are
    # UTC days: a day's difference at the cut-off is far below any retention period.
    days = [as_utc(invoice.updated_at).date()]
    if invoice.settled_date is not None:
        days.append(invoice.settled_date)
    if last_moved is not None:
        days.append(last_moved.date())
    return max(days)


def erase_settled_before(
    engine: Engine,
    tenant: str,
    cutoff: date,
    *,
    by: str,
    reason: str,
    dry_run: bool = False,
) -> RetentionRun:
    """Erase every customer ``settled_before`` lists, each in its own transaction."""
    erasures: list[Erasure] = []
    refused: list[str] = []
    for customer_id in settled_before(engine, tenant, cutoff):
        try:
            erasures.append(
                erase_customer(
                    engine, tenant, customer_id, by=by, reason=reason, dry_run=dry_run
                )
            )
        except ErasureRefused as error:
            log.warning("retention left customer %s: %s", customer_id, error)
            refused.append(customer_id)
    return RetentionRun(erasures, refused)
