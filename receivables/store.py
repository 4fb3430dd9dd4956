"""The committed store: customers, invoices, payments, the contact ledger and the outbox."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import BigInteger, Index, UniqueConstraint, bindparam, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select


def utc_now() -> datetime:
    """The current instant as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(instant: datetime) -> datetime:
    """An instant read back from the store, aware: SQLite hands back naive UTC datetimes."""
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


class InvoiceStatus(enum.StrEnum):
    """Where an invoice stands in the committed store."""

    NEEDS_DUE_DATE = "needs_due_date"
    OPEN = "open"
    PAID = "paid"
    CLOSED_BY_CREDIT = "closed_by_credit"
    WRITTEN_OFF = "written_off"
    CANCELLED = "cancelled"


class PaymentKind(enum.StrEnum):
    """What reduced (or raised) an invoice's balance."""

    PAYMENT = "payment"
    CREDIT_NOTE = "credit_note"
    ADJUSTMENT = "adjustment"


class ContactStatus(enum.StrEnum):
    """Outcome of one planned contact, keyed by invoice, step, channel and recipient."""

    PENDING = "pending"  # written before the channel is called; outcome not yet known
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # decided not to send, with a reason
    DEFERRED = (
        "deferred"  # a contact rule moved it; the case tries again at that instant
    )
    BLOCKED = (
        "blocked"  # could not be rendered or addressed; a person must fix the data
    )
    # Another invoice's statement listed this one: one message, one contact for the caps.
    CONSOLIDATED = "consolidated"
    # An attempt's outcome was lost and the channel cannot be asked whether it went: a
    # person checks with the provider before anything is sent again (on_unknown_outcome).
    HELD = "held"


class Customer(SQLModel, table=True):
    """A debtor of one tenant. Holds the personal data that never goes into Temporal."""

    __table_args__ = (UniqueConstraint("tenant", "customer_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    customer_id: str
    name: str
    customer_type: str = "company"  # company, consumer, health, education
    email: str | None = None
    phone: str | None = None
    whatsapp: str | None = None
    language: str = "es-CL"
    # The zone plans are made in. When the import could not tell where the debtor is,
    # time_zone_candidates lists every zone they may be in ("America/Santiago,Pacific/Easter")
    # and time_zone holds the first of them for planning only: the contact rules then use
    # the hours lawful in all of the candidates.
    time_zone: str = "America/Santiago"
    time_zone_candidates: str | None = None
    region: str | None = None
    payment_terms_days: int | None = None
    # Stop facts: from these dates on, no extrajudicial collection reaches the debtor.
    lawsuit_served_on: date | None = None  # served (emplazado) in a collection lawsuit
    insolvency_opened_on: date | None = None  # a Ley 20.720 procedure opened

    @property
    def zone_unknown(self) -> bool:
        """True when the import could not tell the debtor's time zone."""
        return bool(self.time_zone_candidates)


class Invoice(SQLModel, table=True):
    """One receivable as imported, with its committed balance and status."""

    __table_args__ = (UniqueConstraint("tenant", "invoice_number"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str  # text: folios keep their leading zeros
    customer_id: str = Field(index=True)
    issue_date: date
    due_date: date | None = None
    due_date_rule: str | None = None  # how a missing due date was derived, if it was
    # 64-bit: a large CLP invoice (no decimals) can pass 2^31 minor units.
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    balance_minor: int = Field(sa_type=BigInteger)
    status: str = Field(default=InvoiceStatus.OPEN, index=True)
    segment: str | None = None
    policy_name: str | None = None
    policy_version: int | None = None
    disputed: bool = False
    settled_date: date | None = None  # historical portfolios only
    # Chilean electronic invoices (DTE): the SII payment form (FmaPago 1 cash, 2 credit,
    # 3 free), when the buyer received it at the SII, and its cession to a factor.
    payment_form: int | None = None
    sii_received_on: date | None = None
    ceded_on: date | None = None
    ceded_to: str | None = None  # the assignee (cesionario), when known
    import_batch_id: int | None = Field(default=None, foreign_key="importbatch.id")
    updated_at: datetime = Field(default_factory=utc_now)


class Payment(SQLModel, table=True):
    """A payment, credit note or adjustment applied to one invoice, idempotent on reference."""

    __table_args__ = (UniqueConstraint("tenant", "reference"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str
    invoice_number: str = Field(index=True)
    reference: str
    kind: str = PaymentKind.PAYMENT
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str
    received_at: datetime


class ContactLedgerEntry(SQLModel, table=True):
    """One planned contact and its outcome; the key makes sending idempotent."""

    __table_args__ = (
        UniqueConstraint("tenant", "invoice_number", "step_id", "channel", "recipient"),
        # Delivery callbacks find their entry by the provider's message id.
        Index(
            "ix_contactledgerentry_tenant_provider_message_id",
            "tenant",
            "provider_message_id",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str
    invoice_number: str = Field(index=True)
    step_id: str
    channel: str
    recipient: str
    status: str = ContactStatus.PENDING
    reason: str | None = None
    attempts: int = 0
    policy_name: str
    policy_version: int
    planned_at: datetime
    decided_at: datetime | None = None
    provider_message_id: str | None = None
    # What an SMS or WhatsApp text costs, counted before it is sent (GSM-7 or UCS-2).
    sms_encoding: str | None = None
    sms_segments: int | None = None
    # A CONSOLIDATED entry points at the ledger entry of the statement that covered it.
    # No foreign key: on SQLite adding one would copy the ledger table under its attempts.
    consolidated_into_id: int | None = None
    # SHA-256 of the text handed to the channel, written before the call: a retry after a
    # lost outcome finds that text among the provider's messages without keeping it here.
    message_sha256: str | None = None


class ContactAttempt(SQLModel, table=True):
    """Every try of a ledger entry, kept for the audit trail."""

    id: int | None = Field(default=None, primary_key=True)
    ledger_entry_id: int = Field(foreign_key="contactledgerentry.id", index=True)
    attempt: int
    outcome: str
    detail: str | None = None
    at: datetime = Field(default_factory=utc_now)


class StopFactRecord(SQLModel, table=True):
    """Who recorded a stop fact (lawsuit, insolvency, cession, payment form), when and why."""

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    customer_id: str
    invoice_number: str | None = None  # None for a fact about the debtor
    fact: str  # lawsuit_served, insolvency_opened, ceded, payment_form, sii_received
    value: str  # the date or form recorded, as text
    source: str  # "import <file> row <n>" or "operator"
    recorded_by: str
    reason: str
    at: datetime = Field(default_factory=utc_now)


class ContactSuppression(SQLModel, table=True):
    """An address closed on one channel: a hard bounce or an opt-out; nothing more goes to it."""

    __table_args__ = (UniqueConstraint("tenant", "channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str
    channel: str
    address: str  # normalised: e-mail in lower case, phone as + and digits
    reason: str  # bounced, opted_out
    source: str  # what told us: "sendgrid bounced <message id>", "twilio error 21610"
    at: datetime
    # An opt-out the debtor took back (START): the row stays, open again, for the audit.
    reopened_at: datetime | None = None
    reopened_by: str | None = None  # "twilio inbound opt-in <message id>"


class OutboxMessage(SQLModel, table=True):
    """A message the credential-free outbox channel accepted, readable with a command."""

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    tenant: str
    invoice_number: str = Field(index=True)
    step_id: str
    channel: str
    recipient: str
    subject: str | None = None
    body: str
    html_body: str | None = None
    policy_name: str
    policy_version: int
    created_at: datetime = Field(default_factory=utc_now)


class ImportBatch(SQLModel, table=True):
    """One imported file; the same content imported again is recognised by its hash."""

    __table_args__ = (UniqueConstraint("tenant", "content_sha256", "mapping"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str
    file_name: str
    content_sha256: str
    mapping: str
    accepted_rows: int
    rejected_rows: int
    created_at: datetime = Field(default_factory=utc_now)


def _tune_sqlite(dbapi_connection: object, _record: object) -> None:
    # WAL lets the worker's activities and the starter's commands read while one writes;
    # busy_timeout makes concurrent writers wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """Create an engine for SQLite (the embedded default) or PostgreSQL."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
        engine = create_engine(database_url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        database_url = "postgresql+psycopg://" + database_url.removeprefix(
            "postgresql://"
        )
    return create_engine(database_url, pool_pre_ping=True)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def why_not_payable(invoice: Invoice) -> str | None:
    """Why the committed invoice must not be asked for money now, or None when it may be."""
    if invoice.status != InvoiceStatus.OPEN:
        return f"invoice is {invoice.status} in the store at send time"
    if invoice.balance_minor <= 0:
        return f"balance is {invoice.balance_minor} at send time: nothing to collect"
    return None


def find_invoice(session: Session, tenant: str, invoice_number: str) -> Invoice | None:
    """Look an invoice up by its natural key."""
    params = {"tenant": tenant, "invoice_number": invoice_number}
    return session.exec(_INVOICE_BY_KEY, params=params).first()


def find_customer(session: Session, tenant: str, customer_id: str) -> Customer | None:
    """Look a customer up by its natural key."""
    params = {"tenant": tenant, "customer_id": customer_id}
    return session.exec(_CUSTOMER_BY_KEY, params=params).first()


# Built once: a statement built per call costs more CPU than running it on SQLite.
_INVOICE_BY_KEY = select(Invoice).where(
    Invoice.tenant == bindparam("tenant"),
    Invoice.invoice_number == bindparam("invoice_number"),
)
_CUSTOMER_BY_KEY = select(Customer).where(
    Customer.tenant == bindparam("tenant"),
    Customer.customer_id == bindparam("customer_id"),
)

METADATA = SQLModel.metadata
