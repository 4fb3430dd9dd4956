"""Collections KPIs from the committed store and the contact ledger: aging, DSO, recovery."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Literal, get_args

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from receivables.bank_matching import Outcome
from receivables.case import DisputeCategory, DisputeStatus, PromiseOutcome
from receivables.commitments import StoredDispute, StoredPromise
from receivables.governance import GovernanceError, assignee_for
from receivables.planning import local_date_of
from receivables.reconciliation import ReconciledMovement
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    as_utc,
    make_engine,
    session_scope,
    utc_now,
)
from receivables.tasks import HumanTask, TaskStatus

GroupBy = Literal["segment", "customer", "policy", "executive"]
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+", "no due date")
OVER_30_BUCKETS = ("31-60", "61-90", "90+")
RECOVERY_WINDOWS = (15, 30)
CURVE_DAYS = 90
FUNNEL_DAYS = 7
# Consolidated: named in another invoice's statement, one message for the debtor. Deferred:
# still waiting for the instant a contact rule moved it to when the period ended.
CONTACT_OUTCOMES = (
    "sent",
    "consolidated",
    "deferred",
    "cancelled",
    "blocked",
    "failed",
    "pending",
)
DEFAULT_TIME_ZONE = "America/Santiago"
NO_GROUP = "(none)"

# Contact-rule decisions as the contact gate writes them in ContactAttempt.outcome, and
# what the report calls them.
RULE_DECISIONS = {"defer": "deferred", "deny": "suppressed"}
UNNAMED_RULE = "(no rule named)"


# --- what the figures look like ---


@dataclass(frozen=True)
class AgingBucket:
    """Open balance and invoice count of one aging bucket."""

    label: str
    amount_minor: int
    count: int


@dataclass(frozen=True)
class CurrencyAging:
    """The aging of the open balance in one currency at the report date."""

    currency: str
    buckets: tuple[AgingBucket, ...]

    def bucket(self, label: str) -> AgingBucket:
        """The bucket with this label (one of AGING_BUCKETS)."""
        return next(b for b in self.buckets if b.label == label)

    @property
    def open_minor(self) -> int:
        """Total open balance, in minor units."""
        return sum(b.amount_minor for b in self.buckets)

    @property
    def open_count(self) -> int:
        """Invoices with an open balance."""
        return sum(b.count for b in self.buckets)

    @property
    def over_30_minor(self) -> int:
        """Open balance more than 30 days past due."""
        return sum(self.bucket(label).amount_minor for label in OVER_30_BUCKETS)

    @property
    def over_30_count(self) -> int:
        """Invoices more than 30 days past due."""
        return sum(self.bucket(label).count for label in OVER_30_BUCKETS)

    @property
    def over_30_share(self) -> float | None:
        """Share of the open balance more than 30 days past due; None with nothing open."""
        return self.over_30_minor / self.open_minor if self.open_minor else None


@dataclass(frozen=True)
class AgingPoint:
    """The aging of one currency's open balance as it stood at the end of one date."""

    on: date
    aging: CurrencyAging

    @property
    def currency(self) -> str:
        """The currency of the aged balance."""
        return self.aging.currency


@dataclass(frozen=True)
class DsoPoint:
    """Days sales outstanding of one currency on one day, by the countback method."""

    on: date
    currency: str
    days: float
    receivables_minor: int


@dataclass(frozen=True)
class RecoveryPoint:
    """How much of the amount overdue at the due date was paid within ``day`` days."""

    day: int
    invoices: (
        int  # overdue invoices whose ``day``-day window had closed by the report date
    )
    overdue_minor: int
    recovered_minor: int

    @property
    def share(self) -> float | None:
        """Recovered over overdue; None when no invoice was overdue long enough to tell."""
        return self.recovered_minor / self.overdue_minor if self.overdue_minor else None


@dataclass(frozen=True)
class RecoveryCurve:
    """The recovery curve of one currency, day 0 to CURVE_DAYS after the due date."""

    currency: str
    points: tuple[RecoveryPoint, ...]

    def at(self, day: int) -> RecoveryPoint:
        """The point ``day`` days after the due date."""
        return self.points[day]


@dataclass(frozen=True)
class SettlementFigures:
    """Lateness of the invoices paid within the period."""

    settled: int
    average_days_late: float | None  # early payment counts as zero days late
    paid_by_due_date: int  # paid on or before the due date

    @property
    def paid_by_due_date_share(self) -> float | None:
        """Share of the settled invoices paid on or before their due date."""
        return self.paid_by_due_date / self.settled if self.settled else None


@dataclass(frozen=True)
class ChannelFunnel:
    """Contacts of one channel in the period: outcomes, and payments that followed."""

    channel: str
    planned: int
    sent: int
    cancelled: int
    blocked: int
    failed: int
    pending: int
    paid_within_days: int  # sent contacts whose invoice was paid within FUNNEL_DAYS
    consolidated: int = 0
    deferred: int = 0


@dataclass(frozen=True)
class ReasonCount:
    """How many contacts were cancelled or blocked for one kind of reason."""

    status: str
    reason: str
    count: int


@dataclass(frozen=True)
class TaskFigures:
    """Work for people: tasks opened in the period, and deadlines met or missed."""

    opened: int
    opened_by_kind: tuple[tuple[str, int], ...]
    done: int  # of the tasks opened in the period, as they stand now
    cancelled: int
    escalated: int
    deadlines: int  # tasks whose SLA deadline fell in the period, up to the report date
    deadlines_met: int  # of those, done by the deadline

    @property
    def sla_share(self) -> float | None:
        """Share of the deadlines met; None when no deadline fell in the period."""
        return self.deadlines_met / self.deadlines if self.deadlines else None


@dataclass(frozen=True)
class PromiseAmounts:
    """What the promises that ended in the period were for, in one currency."""

    currency: str
    kept_minor: int
    broken_minor: int


@dataclass(frozen=True)
class PromiseFigures:
    """Payment promises: recorded in the period, ended in it, and open at the report date."""

    recorded: int
    kept: int  # ended kept in the period
    broken: int  # ended broken in the period
    cancelled: int  # replaced by a new promise, or their case ended otherwise
    open_at_end: int  # recorded by the report date and not ended by it
    amounts: tuple[PromiseAmounts, ...] = ()

    @property
    def kept_rate(self) -> float | None:
        """Kept over kept and broken; None when no promise came due in the period."""
        due = self.kept + self.broken
        return self.kept / due if due else None


NO_PROMISES = PromiseFigures(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class DisputeFigures:
    """Disputes of one category in one currency: opened, resolved, and open at the end."""

    category: str
    currency: str
    opened: int  # opened in the period
    opened_minor: int
    upheld: int  # resolved in the period, either way
    rejected: int
    mean_days_to_resolution: float | None  # of those resolved in the period
    median_days_to_resolution: float | None
    open_at_end: int  # opened by the report date and not resolved or closed by it
    open_minor: int

    @property
    def resolved(self) -> int:
        """Resolved in the period, upheld or rejected."""
        return self.upheld + self.rejected


@dataclass(frozen=True)
class DisputeSummary:
    """Disputes of every category and currency together: counts and days only."""

    opened: int
    resolved: int
    open_at_end: int
    mean_days_to_resolution: float | None
    median_days_to_resolution: float | None


NO_DISPUTES = DisputeSummary(0, 0, 0, None, None)


@dataclass(frozen=True)
class ReconciliationFigures:
    """How long incoming bank payments took to reach their invoices, and the lines left.

    Days are whole calendar days from the bank's booking date to the local date the line
    was reconciled: 0 is the same day. The booking date has no time of day, so hours would
    be a precision the bank never gave; and a team reads "paid Friday, on the invoice
    Monday" as days, the unit its statements arrive in.
    """

    applied: int  # lines reconciled (applied to an invoice) in the period
    median_days: float | None  # of those, booking date to reconciled
    p90_days: int | None  # nine in ten of those took this many days or fewer
    unmatched_at_end: int  # booked by the report date and still waiting for a person
    oldest_unmatched_days: int | None  # the longest-waiting one, from its booking date


NO_RECONCILIATIONS = ReconciliationFigures(0, None, None, 0, None)


@dataclass(frozen=True)
class RuleDecisionCount:
    """How many contact decisions a contact rule deferred or suppressed."""

    outcome: str  # deferred or suppressed
    rule: str
    count: int


@dataclass(frozen=True)
class PortfolioFigures:
    """Every KPI of one set of invoices: the whole tenant or one group of it."""

    invoices: int  # receivables issued on or before the report date
    aging: tuple[CurrencyAging, ...]
    dso: tuple[DsoPoint, ...]  # at each month end of the period, then its last day
    dso_as_of: tuple[DsoPoint, ...]  # one per currency, at the report date
    recovery: tuple[RecoveryCurve, ...]
    settlement: SettlementFigures
    channels: tuple[ChannelFunnel, ...]
    reasons: tuple[ReasonCount, ...]
    tasks: TaskFigures
    promises: PromiseFigures = NO_PROMISES
    disputes: tuple[DisputeFigures, ...] = ()
    dispute_summary: DisputeSummary = NO_DISPUTES
    rule_decisions: tuple[RuleDecisionCount, ...] = ()
    # At the same dates as ``dso``: the aging is still there to see when everything
    # was settled by the report date, as in a replayed portfolio.
    aging_series: tuple[AgingPoint, ...] = ()
    reconciliation: ReconciliationFigures = NO_RECONCILIATIONS

    @property
    def contacts_by_rule(self) -> dict[str, int]:
        """Contact decisions deferred and suppressed by a rule, in total."""
        totals: Counter[str] = Counter()
        for item in self.rule_decisions:
            totals[item.outcome] += item.count
        return {outcome: totals[outcome] for outcome in RULE_DECISIONS.values()}

    @property
    def contacts_sent(self) -> int:
        """Contacts sent in the period, every channel."""
        return sum(funnel.sent for funnel in self.channels)


@dataclass(frozen=True)
class GroupFigures:
    """The KPIs of one segment, customer code or policy."""

    key: str
    figures: PortfolioFigures


@dataclass(frozen=True)
class KpiReport:
    """The KPIs of one tenant at one date, over one period, optionally by group."""

    tenant: str
    as_of: date
    period: tuple[date, date]
    time_zone: str
    group_by: GroupBy | None
    overall: PortfolioFigures
    groups: tuple[GroupFigures, ...]
    generated_at: datetime


# --- what the store says, read once ---


@dataclass(frozen=True)
class Movement:
    """A change of an invoice's balance on a local date; positive reduces it."""

    on: date
    amount_minor: int
    cash: bool  # a payment, as opposed to a credit note, adjustment or write-off


@dataclass(frozen=True)
class InvoiceFacts:
    """One receivable with its balance history, as the KPIs need it."""

    number: str
    customer_id: str
    segment: str | None
    policy: str | None
    currency: str
    issue_date: date
    due_date: date | None
    amount_minor: int
    movements: tuple[Movement, ...]  # oldest first
    paid_on: date | None  # set only for invoices the store holds as paid
    executive: str | None = None  # who works it, read only when grouping by executive

    def balance_on(self, day: date) -> int:
        """The balance at the end of a local date."""
        return self.amount_minor - sum(
            m.amount_minor for m in self.movements if m.on <= day
        )

    def cash_between(self, after: date, until: date) -> int:
        """Payments received after one date, up to and including another."""
        return sum(
            m.amount_minor for m in self.movements if m.cash and after < m.on <= until
        )


@dataclass(frozen=True)
class ContactFacts:
    """One ledger entry, dated by its decision (or its plan while undecided)."""

    invoice_number: str
    channel: str
    status: str
    reason: str | None
    on: date


@dataclass(frozen=True)
class TaskFacts:
    """One task for a person, with its SLA deadline and how it ended, if it did."""

    invoice_number: str
    kind: str
    status: str
    opened_on: date
    due_at: datetime  # aware UTC
    completed_at: datetime | None  # aware UTC; also set when the task was cancelled
    escalated: bool


@dataclass(frozen=True)
class PromiseFacts:
    """One payment promise, dated by local dates."""

    invoice_number: str
    currency: str
    amount_minor: int
    recorded_on: date
    outcome: str
    outcome_on: date | None


@dataclass(frozen=True)
class DisputeFacts:
    """One dispute, with its instants (aware UTC) for the time to resolution."""

    invoice_number: str
    category: str
    currency: str
    amount_minor: int
    opened_at: datetime
    opened_on: date
    status: str
    resolved_at: datetime | None  # also when it closed with its case
    resolved_on: date | None


@dataclass(frozen=True)
class RuleDecisionFacts:
    """One contact decision that a contact rule deferred or suppressed."""

    invoice_number: str
    outcome: str  # deferred or suppressed
    rule: str
    on: date


@dataclass(frozen=True)
class ReconciliationFacts:
    """One incoming bank line as reconciliation left it, dated by local dates."""

    invoice_numbers: tuple[
        str, ...
    ]  # the folios it was applied to; none while unmatched
    outcome: str
    booked_on: date  # the bank's calendar date
    reconciled_on: date


@dataclass(frozen=True)
class StoreFacts:
    """What the KPIs read from the store for one tenant, or for one group of it."""

    invoices: list[InvoiceFacts]
    contacts: list[ContactFacts]
    tasks: list[TaskFacts]
    promises: list[PromiseFacts] = field(default_factory=list)
    disputes: list[DisputeFacts] = field(default_factory=list)
    rule_decisions: list[RuleDecisionFacts] = field(default_factory=list)
    reconciliations: list[ReconciliationFacts] = field(default_factory=list)

    def about(self, invoices: list[InvoiceFacts]) -> StoreFacts:
        """These invoices with the contacts, tasks, promises, disputes and lines about them."""
        numbers = {invoice.number for invoice in invoices}
        return StoreFacts(
            invoices,
            [c for c in self.contacts if c.invoice_number in numbers],
            [t for t in self.tasks if t.invoice_number in numbers],
            [p for p in self.promises if p.invoice_number in numbers],
            [d for d in self.disputes if d.invoice_number in numbers],
            [r for r in self.rule_decisions if r.invoice_number in numbers],
            # An unmatched line names no invoice yet: only the whole tenant counts it.
            [
                r
                for r in self.reconciliations
                if numbers.intersection(r.invoice_numbers)
            ],
        )


def payment_date(amount_minor: int, movements: Sequence[Movement]) -> date | None:
    """The last date on which the balance went from above zero to zero or below."""
    balance, paid_on = amount_minor, None
    for movement in movements:
        before, balance = balance, balance - movement.amount_minor
        if before > 0 >= balance:
            paid_on = movement.on
    return paid_on if balance <= 0 else None


def _closing(invoice: Invoice, remaining: int, time_zone: str) -> Movement | None:
    # Closed invoices whose Payment rows do not account for the closure: historical
    # imports (settled_date only) and write-offs. Limit: a write-off is dated by the
    # invoice's last update, as the store keeps no write-off date.
    if remaining <= 0 or invoice.status in (
        InvoiceStatus.OPEN,
        InvoiceStatus.NEEDS_DUE_DATE,
    ):
        return None
    updated = local_date_of(as_utc(invoice.updated_at), time_zone)
    if invoice.status == InvoiceStatus.PAID:
        return Movement(invoice.settled_date or updated, remaining, cash=True)
    return Movement(updated, remaining, cash=False)


def invoice_facts(
    invoice: Invoice, payments: Iterable[Payment], time_zone: str
) -> InvoiceFacts:
    """Read one stored invoice and its payments into a dated balance history."""
    movements = [
        Movement(
            local_date_of(as_utc(p.received_at), time_zone),
            p.amount_minor,
            cash=p.kind == PaymentKind.PAYMENT,
        )
        for p in sorted(payments, key=lambda p: as_utc(p.received_at))
    ]
    closing = _closing(
        invoice,
        invoice.amount_minor - sum(m.amount_minor for m in movements),
        time_zone,
    )
    if closing is not None:
        movements.append(closing)
    movements.sort(key=lambda m: m.on)
    paid = invoice.status == InvoiceStatus.PAID
    return InvoiceFacts(
        number=invoice.invoice_number,
        customer_id=invoice.customer_id,
        segment=invoice.segment,
        policy=invoice.policy_name,
        currency=invoice.currency,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        amount_minor=invoice.amount_minor,
        movements=tuple(movements),
        paid_on=payment_date(invoice.amount_minor, movements) if paid else None,
    )


def read_store(engine: Engine, tenant: str, time_zone: str) -> StoreFacts:
    """Every receivable of a tenant with its payments, every ledger entry and task."""
    # Limit: the whole tenant is read into memory, fine for tens of thousands of
    # invoices. Aggregating in SQL per report date would lift it.
    with session_scope(engine) as session:
        invoices = session.exec(select(Invoice).where(Invoice.tenant == tenant)).all()
        payments = session.exec(select(Payment).where(Payment.tenant == tenant)).all()
        entries = session.exec(
            select(ContactLedgerEntry).where(ContactLedgerEntry.tenant == tenant)
        ).all()
        tasks = session.exec(select(HumanTask).where(HumanTask.tenant == tenant)).all()
        promises = session.exec(
            select(StoredPromise).where(StoredPromise.tenant == tenant)
        ).all()
        disputes = session.exec(
            select(StoredDispute).where(StoredDispute.tenant == tenant)
        ).all()
        decisions = _rule_decisions(session, tenant, time_zone)
        lines = session.exec(
            select(ReconciledMovement).where(ReconciledMovement.tenant == tenant)
        ).all()
    by_invoice: dict[str, list[Payment]] = defaultdict(list)
    for payment in payments:
        by_invoice[payment.invoice_number].append(payment)
    facts = [
        invoice_facts(invoice, by_invoice[invoice.invoice_number], time_zone)
        for invoice in invoices
        # A cancelled invoice was issued in error: it never was a receivable.
        if invoice.status != InvoiceStatus.CANCELLED
    ]
    contacts = [
        ContactFacts(
            invoice_number=entry.invoice_number,
            channel=entry.channel,
            status=str(entry.status),
            reason=entry.reason,
            on=local_date_of(as_utc(entry.decided_at or entry.planned_at), time_zone),
        )
        for entry in entries
    ]
    return StoreFacts(
        facts,
        contacts,
        [task_facts(task, time_zone) for task in tasks],
        [promise_facts(promise, time_zone) for promise in promises],
        [dispute_facts(dispute, time_zone) for dispute in disputes],
        decisions,
        [reconciliation_facts(line, time_zone) for line in lines],
    )


def reconciliation_facts(
    line: ReconciledMovement, time_zone: str
) -> ReconciliationFacts:
    """Read one reconciled bank line; its reconciling instant becomes a local date."""
    # The booking date is a date of the creditor's bank, so the instant is read in the
    # report's zone (the creditor's) too, never in the zone of the debtor who paid.
    return ReconciliationFacts(
        invoice_numbers=tuple(line.invoice_numbers.split()),
        outcome=line.outcome,
        booked_on=line.booking_date,
        reconciled_on=local_date_of(as_utc(line.reconciled_at), time_zone),
    )


def promise_facts(promise: StoredPromise, time_zone: str) -> PromiseFacts:
    """Read one stored promise into local dates."""
    ended = as_utc(promise.outcome_at) if promise.outcome_at else None
    return PromiseFacts(
        invoice_number=promise.invoice_number,
        currency=promise.currency,
        amount_minor=promise.amount_minor,
        recorded_on=local_date_of(as_utc(promise.recorded_at), time_zone),
        outcome=str(promise.outcome),
        outcome_on=local_date_of(ended, time_zone) if ended else None,
    )


def dispute_facts(dispute: StoredDispute, time_zone: str) -> DisputeFacts:
    """Read one stored dispute, its instants as aware UTC."""
    opened = as_utc(dispute.opened_at)
    resolved = as_utc(dispute.resolved_at) if dispute.resolved_at else None
    return DisputeFacts(
        invoice_number=dispute.invoice_number,
        category=dispute.category,
        currency=dispute.currency,
        amount_minor=dispute.amount_minor,
        opened_at=opened,
        opened_on=local_date_of(opened, time_zone),
        status=str(dispute.status),
        resolved_at=resolved,
        resolved_on=local_date_of(resolved, time_zone) if resolved else None,
    )


def _rule_decisions(
    session: Session, tenant: str, time_zone: str
) -> list[RuleDecisionFacts]:
    """Every contact decision of the tenant that a rule deferred or suppressed."""
    rows = session.exec(
        select(ContactLedgerEntry.invoice_number, ContactAttempt)
        .join(ContactAttempt)
        .where(
            ContactLedgerEntry.tenant == tenant,
            ContactAttempt.outcome.in_(list(RULE_DECISIONS)),  # type: ignore[attr-defined]
        )
    ).all()
    return [
        RuleDecisionFacts(
            invoice_number=number,
            outcome=RULE_DECISIONS[attempt.outcome],
            rule=deciding_rule(attempt.detail or ""),
            on=local_date_of(as_utc(attempt.at), time_zone),
        )
        for number, attempt in rows
    ]


def deciding_rule(trace: str) -> str:
    """The rule a deferral's or denial's reason names first, e.g. CL-C-01.

    The contact gate's trace reads "<verdict>[ until <instant>]: <reason> [rules: <ids
    evaluated>]; flags: ...", and the reason may name several rules: the decision
    counts under the first one named.
    """
    _, _, rest = trace.partition(": ")
    reason, marker, evaluated = rest.partition(" [rules: ")
    if not marker:
        return UNNAMED_RULE
    ids = [rule.strip() for rule in evaluated.split("]", 1)[0].split(",")]
    named = [
        (found.start(), rule)
        for rule in ids
        if rule
        and (found := re.search(rf"(?<![\w-]){re.escape(rule)}(?![\w-])", reason))
    ]
    return min(named)[1] if named else UNNAMED_RULE


def task_facts(task: HumanTask, time_zone: str) -> TaskFacts:
    """Read one stored task, its instants as aware UTC."""
    return TaskFacts(
        invoice_number=task.invoice_number,
        kind=task.kind,
        status=str(task.status),
        opened_on=local_date_of(as_utc(task.opened_at), time_zone),
        due_at=as_utc(task.due_at),
        completed_at=as_utc(task.completed_at) if task.completed_at else None,
        escalated=task.escalated_at is not None,
    )


# --- aging and delinquency ---


def aging_bucket(due_date: date | None, as_of: date) -> str:
    """The aging bucket of an open invoice: days past due at the end of ``as_of``."""
    if due_date is None:
        return "no due date"
    late = (as_of - due_date).days
    if late <= 0:
        return "current"
    if late <= 30:
        return "1-30"
    if late <= 60:
        return "31-60"
    if late <= 90:
        return "61-90"
    return "90+"


def aging_at(
    invoices: Iterable[InvoiceFacts], as_of: date
) -> tuple[CurrencyAging, ...]:
    """Open balances at the end of ``as_of`` by bucket, one aging per currency."""
    amounts: dict[str, Counter[str]] = defaultdict(Counter)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for invoice in invoices:
        if invoice.issue_date > as_of:
            continue
        balance = invoice.balance_on(as_of)
        if balance <= 0:
            continue
        label = aging_bucket(invoice.due_date, as_of)
        amounts[invoice.currency][label] += balance
        counts[invoice.currency][label] += 1
    return tuple(
        CurrencyAging(
            currency,
            tuple(
                AgingBucket(label, amounts[currency][label], counts[currency][label])
                for label in AGING_BUCKETS
            ),
        )
        for currency in sorted(amounts)
    )


def aging_series(
    invoices: Sequence[InvoiceFacts], days: Sequence[date]
) -> tuple[AgingPoint, ...]:
    """The aging at the end of each of ``days``, one point per day and currency.

    A currency open on any of the days gets a point on every one of them, all zero
    where nothing of it was open, so that a chart of the series has no gaps.
    """
    by_day = {day: {a.currency: a for a in aging_at(invoices, day)} for day in days}
    currencies = sorted({currency for agings in by_day.values() for currency in agings})
    return tuple(
        AgingPoint(day, by_day[day].get(currency) or _nothing_open(currency))
        for day in days
        for currency in currencies
    )


def _nothing_open(currency: str) -> CurrencyAging:
    return CurrencyAging(
        currency, tuple(AgingBucket(label, 0, 0) for label in AGING_BUCKETS)
    )


# --- days sales outstanding ---


def countback_days(
    receivables_minor: int,
    sales_between: Callable[[date, date], int],
    on: date,
    earliest: date,
) -> float:
    """Days sales outstanding on ``on`` by the countback method.

    The open receivables are matched against the sales (invoiced amounts) of the most
    recent months, newest first. A month whose sales the remaining receivables still
    cover adds all its days and its sales are taken off; the month where they no longer
    cover the sales adds the fraction of its days that the remainder is of its sales,
    and the count stops. The first month runs from its first day to ``on``. Unlike the
    average method, a surge of recent sales does not make old debt look younger.
    """
    remaining, days, end = receivables_minor, 0.0, on
    while remaining > 0 and end >= earliest:
        start = end.replace(day=1)
        length = (end - start).days + 1
        sales = sales_between(start, end)
        if sales >= remaining:
            return days + length * remaining / sales
        remaining -= sales
        days += length
        end = start - timedelta(days=1)
    # Limit: receivables above every sale on record (adjustments that raised balances)
    # stop the count at the first sale; the days counted so far are returned.
    return days


def dso_on(invoices: Sequence[InvoiceFacts], on: date) -> tuple[DsoPoint, ...]:
    """Countback DSO of each currency at the end of ``on``."""
    sales: dict[str, Counter[date]] = defaultdict(Counter)
    receivables: Counter[str] = Counter()
    for invoice in invoices:
        if invoice.issue_date > on:
            continue
        sales[invoice.currency][invoice.issue_date] += invoice.amount_minor
        receivables[invoice.currency] += max(0, invoice.balance_on(on))
    points = []
    for currency, by_day in sorted(sales.items()):
        between = partial(_sales_between, by_day)
        days = countback_days(receivables[currency], between, on, min(by_day))
        points.append(DsoPoint(on, currency, days, receivables[currency]))
    return tuple(points)


def _sales_between(by_day: Counter[date], start: date, end: date) -> int:
    return sum(amount for day, amount in by_day.items() if start <= day <= end)


def month_ends(start: date, end: date) -> list[date]:
    """Every month's last day from ``start`` up to ``end``, then ``end`` itself."""
    points: list[date] = []
    day = start
    while True:
        following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        last = following - timedelta(days=1)
        if last >= end:
            break
        points.append(last)
        day = following
    return [*points, end]


# --- recovery after the due date ---


def _recovery_rows(
    invoice: InvoiceFacts, as_of: date
) -> tuple[int, list[int], int] | None:
    # The amount overdue at the end of the due date, what was paid of it by each day
    # after, and how many days after the due date have passed by as_of.
    due = invoice.due_date
    if due is None or due > as_of:
        return None
    overdue = invoice.balance_on(due)
    if overdue <= 0:
        return None
    recovered = [
        min(overdue, invoice.cash_between(due, due + timedelta(days=day)))
        for day in range(CURVE_DAYS + 1)
    ]
    return overdue, recovered, (as_of - due).days


def recovery_curves(
    invoices: Iterable[InvoiceFacts], period: tuple[date, date], as_of: date
) -> tuple[RecoveryCurve, ...]:
    """Share of the overdue amount paid by each day after due, for dues in the period.

    The cohort is the invoices due in the period and unpaid at the end of their due date.
    Day N counts only invoices due at least N days before ``as_of``, so a window that
    has not closed yet never reads as money not recovered.
    """
    size = CURVE_DAYS + 1
    overdue: dict[str, list[int]] = defaultdict(lambda: [0] * size)
    recovered: dict[str, list[int]] = defaultdict(lambda: [0] * size)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * size)
    for invoice in invoices:
        if invoice.due_date is None or not period[0] <= invoice.due_date <= period[1]:
            continue
        rows = _recovery_rows(invoice, as_of)
        if rows is None:
            continue
        amount, paid, elapsed = rows
        for day in range(min(elapsed, CURVE_DAYS) + 1):
            overdue[invoice.currency][day] += amount
            recovered[invoice.currency][day] += paid[day]
            counts[invoice.currency][day] += 1
    return tuple(
        RecoveryCurve(
            currency,
            tuple(
                RecoveryPoint(
                    day, counts[currency][day], amounts[day], recovered[currency][day]
                )
                for day in range(size)
            ),
        )
        for currency, amounts in sorted(overdue.items())
    )


# --- settlement ---


def settlement_figures(
    invoices: Iterable[InvoiceFacts], period: tuple[date, date]
) -> SettlementFigures:
    """Days late and on-time payment of the invoices paid within the period."""
    late: list[int] = []
    for invoice in invoices:
        paid, due = invoice.paid_on, invoice.due_date
        if paid is None or due is None or not period[0] <= paid <= period[1]:
            continue
        late.append((paid - due).days)
    return SettlementFigures(
        settled=len(late),
        # Early payment counts as zero, as in the source systems' DaysLate.
        average_days_late=sum(max(0, d) for d in late) / len(late) if late else None,
        paid_by_due_date=sum(1 for d in late if d <= 0),
    )


# --- contacts ---


_ADDRESS = re.compile(r"\S+@\S+")
_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_NUMBER = re.compile(r"(?<![\w-])[+-]?\d[\d.,]*(?![\w-])")


def reason_group(reason: str | None) -> str:
    """A ledger reason with its addresses, dates and amounts blanked out, for grouping."""
    if not reason:
        return "(no reason given)"
    text = _ADDRESS.sub("<address>", reason)
    text = _DATE.sub("<date>", text)
    text = _NUMBER.sub("#", text)
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:119] + "…"


def channel_funnels(
    contacts: Iterable[ContactFacts],
    paid_on: dict[str, date | None],
    period: tuple[date, date],
) -> tuple[ChannelFunnel, ...]:
    """Per channel: planned contacts, their outcomes, and payments within FUNNEL_DAYS."""
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for contact in contacts:
        if not period[0] <= contact.on <= period[1]:
            continue
        tally = outcomes[contact.channel]
        tally["planned"] += 1
        tally[contact.status] += 1
        paid = paid_on.get(contact.invoice_number)
        if (
            contact.status == ContactStatus.SENT
            and paid is not None
            and contact.on <= paid <= contact.on + timedelta(days=FUNNEL_DAYS)
        ):
            tally["paid"] += 1
    return tuple(
        ChannelFunnel(
            channel,
            planned=tally["planned"],
            sent=tally[ContactStatus.SENT],
            cancelled=tally[ContactStatus.CANCELLED],
            blocked=tally[ContactStatus.BLOCKED],
            failed=tally[ContactStatus.FAILED],
            pending=tally[ContactStatus.PENDING],
            paid_within_days=tally["paid"],
            consolidated=tally[ContactStatus.CONSOLIDATED],
            deferred=tally[ContactStatus.DEFERRED],
        )
        for channel, tally in sorted(outcomes.items())
    )


def reason_counts(
    contacts: Iterable[ContactFacts], period: tuple[date, date]
) -> tuple[ReasonCount, ...]:
    """Cancelled and blocked contacts of the period by grouped reason, most first."""
    tally: Counter[tuple[str, str]] = Counter(
        (contact.status, reason_group(contact.reason))
        for contact in contacts
        if contact.status in (ContactStatus.CANCELLED, ContactStatus.BLOCKED)
        and period[0] <= contact.on <= period[1]
    )
    ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ReasonCount(status, reason, n) for (status, reason), n in ordered)


# --- tasks for people ---


def _deadline_met(task: TaskFacts) -> bool | None:
    # None: the task left no deadline to meet (cancelled in time, the case moved on).
    done_in_time = task.completed_at is not None and task.completed_at <= task.due_at
    if task.status == TaskStatus.CANCELLED and done_in_time:
        return None
    return task.status == TaskStatus.DONE and done_in_time


def task_figures(
    tasks: Iterable[TaskFacts], period: tuple[date, date], time_zone: str
) -> TaskFigures:
    """Tasks opened in the period by kind and outcome, and SLA deadlines met."""
    # Limit: a task's status is as it stands now, not as it stood on the report date;
    # the store keeps no status history. A task's timeline would lift it.
    opened = [t for t in tasks if period[0] <= t.opened_on <= period[1]]
    due = [
        met
        for t in tasks
        if period[0] <= local_date_of(t.due_at, time_zone) <= period[1]
        and (met := _deadline_met(t)) is not None
    ]
    kinds = Counter(t.kind for t in opened)
    return TaskFigures(
        opened=len(opened),
        opened_by_kind=tuple(sorted(kinds.items())),
        done=sum(t.status == TaskStatus.DONE for t in opened),
        cancelled=sum(t.status == TaskStatus.CANCELLED for t in opened),
        escalated=sum(t.escalated for t in opened),
        deadlines=len(due),
        deadlines_met=sum(due),
    )


# --- promises, disputes, contact rules ---


def _within(day: date | None, period: tuple[date, date]) -> bool:
    return day is not None and period[0] <= day <= period[1]


def promise_figures(
    promises: Iterable[PromiseFacts], period: tuple[date, date], as_of: date
) -> PromiseFigures:
    """Promises recorded in the period, those that ended in it, and those open at as_of."""
    items = list(promises)
    ended = Counter(p.outcome for p in items if _within(p.outcome_on, period))
    kept: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    for promise in items:
        if not _within(promise.outcome_on, period):
            continue
        if promise.outcome == PromiseOutcome.KEPT:
            kept[promise.currency] += promise.amount_minor
        elif promise.outcome == PromiseOutcome.BROKEN:
            broken[promise.currency] += promise.amount_minor
    return PromiseFigures(
        recorded=sum(_within(p.recorded_on, period) for p in items),
        kept=ended[PromiseOutcome.KEPT],
        broken=ended[PromiseOutcome.BROKEN],
        cancelled=ended[PromiseOutcome.CANCELLED],
        open_at_end=sum(
            p.recorded_on <= as_of and (p.outcome_on is None or p.outcome_on > as_of)
            for p in items
        ),
        amounts=tuple(
            PromiseAmounts(currency, kept[currency], broken[currency])
            for currency in sorted(set(kept) | set(broken))
        ),
    )


def _category_order(category: str) -> tuple[int, str]:
    known = [c.value for c in DisputeCategory]
    return (known.index(category) if category in known else len(known), category)


def dispute_figures(
    disputes: Iterable[DisputeFacts], period: tuple[date, date], as_of: date
) -> tuple[DisputeFigures, ...]:
    """By category and currency: opened, resolved with days taken, and open at as_of.

    Days to resolution run from the instant a dispute was opened to the instant it was
    upheld or rejected, in days and fractions of a day; a dispute that closed with its
    case (paid or cancelled while in dispute) was never resolved and is not counted.
    """
    groups: dict[tuple[str, str], list[DisputeFacts]] = defaultdict(list)
    for dispute in disputes:
        groups[(dispute.category, dispute.currency)].append(dispute)
    figures = [
        _dispute_row(category, currency, items, period, as_of)
        for (category, currency), items in groups.items()
    ]
    return tuple(
        sorted(
            (f for f in figures if f.opened or f.resolved or f.open_at_end),
            key=lambda f: (_category_order(f.category), f.currency),
        )
    )


def dispute_summary(
    disputes: Iterable[DisputeFacts], period: tuple[date, date], as_of: date
) -> DisputeSummary:
    """Every dispute together: opened, resolved and open, and the days resolution took."""
    row = _dispute_row("", "", list(disputes), period, as_of)
    return DisputeSummary(
        row.opened,
        row.resolved,
        row.open_at_end,
        row.mean_days_to_resolution,
        row.median_days_to_resolution,
    )


def _dispute_row(
    category: str,
    currency: str,
    items: list[DisputeFacts],
    period: tuple[date, date],
    as_of: date,
) -> DisputeFigures:
    opened = [d for d in items if _within(d.opened_on, period)]
    resolved = [
        d
        for d in items
        if DisputeStatus(d.status).is_resolution and _within(d.resolved_on, period)
    ]
    days = [
        (d.resolved_at - d.opened_at).total_seconds() / 86_400
        for d in resolved
        if d.resolved_at is not None
    ]
    still_open = [
        d
        for d in items
        if d.opened_on <= as_of and (d.resolved_on is None or d.resolved_on > as_of)
    ]
    return DisputeFigures(
        category=category,
        currency=currency,
        opened=len(opened),
        opened_minor=sum(d.amount_minor for d in opened),
        upheld=sum(d.status == DisputeStatus.UPHELD for d in resolved),
        rejected=sum(d.status == DisputeStatus.REJECTED for d in resolved),
        mean_days_to_resolution=statistics.fmean(days) if days else None,
        median_days_to_resolution=statistics.median(days) if days else None,
        open_at_end=len(still_open),
        open_minor=sum(d.amount_minor for d in still_open),
    )


def rule_decision_counts(
    decisions: Iterable[RuleDecisionFacts], period: tuple[date, date]
) -> tuple[RuleDecisionCount, ...]:
    """Contact decisions deferred or suppressed in the period, by rule, most first."""
    tally = Counter(
        (d.outcome, d.rule) for d in decisions if period[0] <= d.on <= period[1]
    )
    ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return tuple(RuleDecisionCount(outcome, rule, n) for (outcome, rule), n in ordered)


# --- bank reconciliation ---


def nearest_rank(values: Sequence[int], share: float) -> int:
    """The smallest value that ``share`` of the values are at most: one of the values."""
    # Nearest rank, not interpolation: "nine in ten within 3 days" stays a whole day
    # that some line actually took.
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


def reconciliation_figures(
    lines: Iterable[ReconciliationFacts], period: tuple[date, date], as_of: date
) -> ReconciliationFigures:
    """Lines applied in the period with the days they took, and those unmatched at as_of."""
    # Limit: a line's outcome is as it stands now, so one unmatched at the report date but
    # applied since counts as applied, not as waiting; the table keeps no history of its
    # outcomes. A row per outcome change would lift it.
    items = list(lines)
    days = [
        (line.reconciled_on - line.booked_on).days
        for line in items
        if line.outcome == Outcome.APPLIED and _within(line.reconciled_on, period)
    ]
    waiting = [
        (as_of - line.booked_on).days
        for line in items
        if line.outcome == Outcome.UNMATCHED and line.booked_on <= as_of
    ]
    return ReconciliationFigures(
        applied=len(days),
        median_days=statistics.median(days) if days else None,
        p90_days=nearest_rank(days, 0.9) if days else None,
        unmatched_at_end=len(waiting),
        oldest_unmatched_days=max(waiting) if waiting else None,
    )


# --- putting it together ---


def portfolio_figures(
    facts: StoreFacts, *, as_of: date, period: tuple[date, date], time_zone: str
) -> PortfolioFigures:
    """Every KPI of a set of invoices and the contacts and tasks about them."""
    # Flows (payments, contacts, tasks) count up to the report date, never after it.
    invoices, contacts = facts.invoices, facts.contacts
    flows = (period[0], min(period[1], as_of))
    series_days = [day for day in month_ends(period[0], period[1]) if day <= as_of]
    return PortfolioFigures(
        invoices=sum(1 for invoice in invoices if invoice.issue_date <= as_of),
        aging=aging_at(invoices, as_of),
        dso=tuple(point for day in series_days for point in dso_on(invoices, day)),
        dso_as_of=dso_on(invoices, as_of),
        recovery=recovery_curves(invoices, period, as_of),
        settlement=settlement_figures(invoices, flows),
        channels=channel_funnels(
            contacts, {i.number: i.paid_on for i in invoices}, flows
        ),
        reasons=reason_counts(contacts, flows),
        tasks=task_figures(facts.tasks, flows, time_zone),
        promises=promise_figures(facts.promises, flows, as_of),
        disputes=dispute_figures(facts.disputes, flows, as_of),
        dispute_summary=dispute_summary(facts.disputes, flows, as_of),
        rule_decisions=rule_decision_counts(facts.rule_decisions, flows),
        aging_series=aging_series(invoices, series_days),
        reconciliation=reconciliation_figures(facts.reconciliations, flows, as_of),
    )


def group_key(invoice: InvoiceFacts, group_by: GroupBy) -> str:
    """The group an invoice belongs to: its segment, customer code, policy or executive."""
    if group_by == "segment":
        return invoice.segment or NO_GROUP
    if group_by == "customer":
        return invoice.customer_id
    if group_by == "executive":
        return invoice.executive or NO_GROUP
    return invoice.policy or NO_GROUP


def with_executives(engine: Engine, tenant: str, facts: StoreFacts) -> StoreFacts:
    """The invoices with the executive who works each: the customer's, segment's or default."""
    # Limit: the executive is the one assigned now, not the one who worked the invoice
    # at the time; the store keeps no assignment history.
    found: dict[tuple[str, str | None], str | None] = {}
    with session_scope(engine) as session:
        for key in sorted(
            {(i.customer_id, i.segment) for i in facts.invoices}, key=str
        ):
            try:
                found[key] = assignee_for(session, tenant, *key)
            except GovernanceError:
                found[key] = None
    invoices = [
        replace(i, executive=found[(i.customer_id, i.segment)]) for i in facts.invoices
    ]
    return replace(facts, invoices=invoices)


def _grouped(
    facts: StoreFacts,
    group_by: GroupBy,
    *,
    as_of: date,
    period: tuple[date, date],
    time_zone: str,
) -> tuple[GroupFigures, ...]:
    members: dict[str, list[InvoiceFacts]] = defaultdict(list)
    for invoice in facts.invoices:
        members[group_key(invoice, group_by)].append(invoice)
    return tuple(
        GroupFigures(
            key,
            portfolio_figures(
                facts.about(group), as_of=as_of, period=period, time_zone=time_zone
            ),
        )
        for key, group in sorted(members.items())
    )


def default_period(as_of: date) -> tuple[date, date]:
    """The twelve calendar months ending with the month of ``as_of``, up to ``as_of``."""
    months = as_of.year * 12 + as_of.month - 1 - 11
    return date(months // 12, months % 12 + 1, 1), as_of


def compute_kpis(
    engine: Engine,
    *,
    tenant: str,
    as_of: date,
    period: tuple[date, date] | None = None,
    group_by: GroupBy | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> KpiReport:
    """Compute the KPIs of a tenant at the end of ``as_of`` over ``period``.

    Balances (aging, DSO) are as they stood at the end of each date; flows (payments,
    contacts, tasks) count within the period and never after ``as_of``. Instants become local
    dates in ``time_zone``, the creditor's. ``period`` defaults to the twelve months up
    to ``as_of``.
    """
    if group_by is not None and group_by not in get_args(GroupBy):
        choices = ", ".join(get_args(GroupBy))
        raise ValueError(f"cannot group by {group_by!r}; use one of {choices} or none")
    span = period or default_period(as_of)
    if span[0] > span[1]:
        raise ValueError(f"the period starts on {span[0]}, after its end {span[1]}")
    facts = read_store(engine, tenant, time_zone)
    if group_by == "executive":
        facts = with_executives(engine, tenant, facts)
    overall = portfolio_figures(facts, as_of=as_of, period=span, time_zone=time_zone)
    groups = (
        _grouped(facts, group_by, as_of=as_of, period=span, time_zone=time_zone)
        if group_by
        else ()
    )
    return KpiReport(
        tenant=tenant,
        as_of=as_of,
        period=span,
        time_zone=time_zone,
        group_by=group_by,
        overall=overall,
        groups=groups,
        generated_at=utc_now(),
    )


def compute_kpis_from_url(
    database_url: str,
    *,
    tenant: str,
    as_of: date,
    period: tuple[date, date] | None = None,
    group_by: GroupBy | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> KpiReport:
    """Like ``compute_kpis``, opening and closing an engine on ``database_url``."""
    engine = make_engine(database_url)
    try:
        return compute_kpis(
            engine,
            tenant=tenant,
            as_of=as_of,
            period=period,
            group_by=group_by,
            time_zone=time_zone,
        )
    finally:
        engine.dispose()


def portfolio_span(engine: Engine, tenant: str) -> tuple[date, date] | None:
    """The first issue date and the last due or settled date of a tenant; None if empty.

    Historical portfolios end long ago: this gives a report date and period that cover
    them, instead of today's.
    """
    with session_scope(engine) as session:
        invoices = session.exec(select(Invoice).where(Invoice.tenant == tenant)).all()
    if not invoices:
        return None
    days = [i.issue_date for i in invoices]
    days += [d for i in invoices for d in (i.due_date, i.settled_date) if d is not None]
    return min(days), max(days)
