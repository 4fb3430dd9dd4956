"""Collections KPIs from the committed store and the contact ledger: aging, DSO, recovery."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from functools import partial
from typing import Literal, get_args

from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.planning import local_date_of
from receivables.store import (
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

GroupBy = Literal["segment", "customer", "policy"]
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

# What the report cannot show yet, and why. Another issue that starts recording one of
# these fills in the matching KpiReport field; its explanation then drops out by itself.
NOT_RECORDED: dict[str, str] = {
    "promises_kept_broken": "payment promises live in the cases and in task "
    "outcomes, not yet in a store table the KPIs read, so none can be counted as "
    "kept or broken",
    "disputes_by_category": "dispute categories live in the cases and in task "
    "outcomes, not yet in a store table the KPIs read; invoices carry only a "
    "disputed flag",
    "deferred_by_rule": "the ledger records sent, cancelled, blocked and failed "
    "contacts, not contacts deferred by a contact rule",
}


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
    # Not recorded yet (see NOT_RECORDED): None until the store keeps what they need.
    promises_kept_broken: None = None
    disputes_by_category: None = None
    deferred_by_rule: None = None

    def not_recorded(self) -> dict[str, str]:
        """Each KPI the store cannot give yet, with the reason, in a stable order."""
        names = {f.name for f in fields(self)}
        return {
            name: why
            for name, why in NOT_RECORDED.items()
            if name in names and getattr(self, name) is None
        }


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
class StoreFacts:
    """What the KPIs read from the store for one tenant, or for one group of it."""

    invoices: list[InvoiceFacts]
    contacts: list[ContactFacts]
    tasks: list[TaskFacts]

    def about(self, invoices: list[InvoiceFacts]) -> StoreFacts:
        """These invoices with the contacts and tasks about them."""
        numbers = {invoice.number for invoice in invoices}
        return StoreFacts(
            invoices,
            [c for c in self.contacts if c.invoice_number in numbers],
            [t for t in self.tasks if t.invoice_number in numbers],
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
    return StoreFacts(facts, contacts, [task_facts(task, time_zone) for task in tasks])


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


# --- putting it together ---


def portfolio_figures(
    facts: StoreFacts, *, as_of: date, period: tuple[date, date], time_zone: str
) -> PortfolioFigures:
    """Every KPI of a set of invoices and the contacts and tasks about them."""
    # Flows (payments, contacts, tasks) count up to the report date, never after it.
    invoices, contacts = facts.invoices, facts.contacts
    flows = (period[0], min(period[1], as_of))
    dso_days = [day for day in month_ends(period[0], period[1]) if day <= as_of]
    return PortfolioFigures(
        invoices=sum(1 for invoice in invoices if invoice.issue_date <= as_of),
        aging=aging_at(invoices, as_of),
        dso=tuple(point for day in dso_days for point in dso_on(invoices, day)),
        dso_as_of=dso_on(invoices, as_of),
        recovery=recovery_curves(invoices, period, as_of),
        settlement=settlement_figures(invoices, flows),
        channels=channel_funnels(
            contacts, {i.number: i.paid_on for i in invoices}, flows
        ),
        reasons=reason_counts(contacts, flows),
        tasks=task_figures(facts.tasks, flows, time_zone),
    )


def group_key(invoice: InvoiceFacts, group_by: GroupBy) -> str:
    """The group an invoice belongs to: its segment, customer code or policy."""
    if group_by == "segment":
        return invoice.segment or NO_GROUP
    if group_by == "customer":
        return invoice.customer_id
    return invoice.policy or NO_GROUP


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
