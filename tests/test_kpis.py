"""KPIs from the store and the ledger, checked against values worked out from the inputs."""

from __future__ import annotations

import calendar
import csv
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.case import (
    DisputeCategory,
    DisputeRecord,
    DisputeStatus,
    PromiseOutcome,
    PromiseRecord,
)
from receivables.cases import commit_money_movement
from receivables.commitments import record_dispute, record_promise
from receivables.governance import sync_governance
from receivables.importer import import_portfolio
from receivables.kpis import (
    AGING_BUCKETS,
    NO_PROMISES,
    NO_RECONCILIATIONS,
    UNNAMED_RULE,
    DisputeFigures,
    GroupBy,
    KpiReport,
    Movement,
    compute_kpis,
    countback_days,
    deciding_rule,
    default_period,
    month_ends,
    nearest_rank,
    payment_date,
    portfolio_span,
    reason_group,
)
from receivables.ledger import ContactKey, ContactLedger
from receivables.reconciliation import ReconciledMovement
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    Invoice,
    InvoiceStatus,
    PaymentKind,
    find_customer,
    find_invoice,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask, TaskStatus

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TENANT = "kpi"
SANTIAGO = "America/Santiago"
# Customers get a real-looking name so that the report tests can prove it never shows.
CUSTOMER_NAME = "Comercial O'Higgins & Cía. Ltda."


# --- building small portfolios ---


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty SQLite store."""
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def local_noon(day: date, clock: time = time(12)) -> datetime:
    """A Santiago wall-clock time on ``day`` as the aware UTC instant the store keeps."""
    return datetime.combine(day, clock, tzinfo=ZoneInfo(SANTIAGO)).astimezone(UTC)


def store_invoice(
    engine: Engine,
    number: str,
    *,
    issued: date,
    due: date | None,
    amount: int,
    currency: str = "CLP",
    customer: str | None = None,
    segment: str | None = None,
    policy: str | None = None,
    settled: date | None = None,
) -> None:
    """Commit one invoice (and its customer): open, or paid on ``settled`` as imports do."""
    customer_id = customer or f"C-{number}"
    status = InvoiceStatus.PAID if settled else InvoiceStatus.OPEN
    with session_scope(engine) as session:
        if find_customer(session, TENANT, customer_id) is None:
            session.add(
                Customer(tenant=TENANT, customer_id=customer_id, name=CUSTOMER_NAME)
            )
        session.add(
            Invoice(
                tenant=TENANT,
                invoice_number=number,
                customer_id=customer_id,
                issue_date=issued,
                due_date=due,
                amount_minor=amount,
                currency=currency,
                balance_minor=0 if settled else amount,
                status=status if due else InvoiceStatus.NEEDS_DUE_DATE,
                segment=segment,
                policy_name=policy,
                policy_version=1 if policy else None,
                settled_date=settled,
            )
        )


def pay(
    engine: Engine,
    number: str,
    amount: int,
    on: date,
    *,
    kind: PaymentKind = PaymentKind.PAYMENT,
    clock: time = time(12),
) -> None:
    """Record a payment (or credit) the way a live case does, at a Santiago time."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, TENANT, number)
        assert invoice is not None
        currency = invoice.currency
    commit_money_movement(
        engine,
        TENANT,
        number,
        kind=kind,
        reference=f"{number}/{on}/{clock}/{amount}",
        amount_minor=amount,
        currency=currency,
        at=local_noon(on, clock),
    )


def record_contact(
    engine: Engine,
    number: str,
    *,
    step: str,
    channel: str,
    status: ContactStatus,
    on: date,
    reason: str = "sent",
) -> None:
    """Write one ledger entry through the ledger, decided at 09:00 in Santiago on ``on``."""
    ledger = ContactLedger(engine)
    key = ContactKey(TENANT, number, step, channel, f"{channel}:{number}")
    at = local_noon(on, time(9))
    if status == ContactStatus.PENDING:
        ledger.begin_attempt(key, policy=("test-policy", 1), planned_at=at)
        return
    ledger.record_decision(
        key, status, reason=reason, policy=("test-policy", 1), planned_at=at, at=at
    )


def kpis_of(
    engine: Engine,
    as_of: date,
    period: tuple[date, date],
    group_by: GroupBy | None = None,
) -> KpiReport:
    """The tenant's KPIs in Santiago dates."""
    return compute_kpis(
        engine,
        tenant=TENANT,
        as_of=as_of,
        period=period,
        group_by=group_by,
        time_zone=SANTIAGO,
    )


# --- aging and delinquency ---


AS_OF = date(2026, 3, 31)


@dataclass(frozen=True)
class AgingCase:
    """One invoice of the aging portfolio and the bucket a person puts it in."""

    number: str
    days_late: int | None  # at AS_OF; None for no due date
    amount: int
    paid_before: int = 0  # paid on or before AS_OF
    paid_after: int = 0  # paid after AS_OF: still open at AS_OF
    bucket: str | None = None  # None: not open at AS_OF
    currency: str = "CLP"


AGING_CASES = (
    AgingCase("A01", -5, 1_000, bucket="current"),
    AgingCase("A02", 0, 2_000, bucket="current"),
    AgingCase("A03", 1, 3_000, bucket="1-30"),
    AgingCase("A04", 30, 4_000, bucket="1-30"),
    AgingCase("A05", 31, 5_000, bucket="31-60"),
    AgingCase("A06", 60, 6_000, bucket="31-60"),
    AgingCase("A07", 61, 7_000, bucket="61-90"),
    AgingCase("A08", 90, 8_000, bucket="61-90"),
    AgingCase("A09", 91, 9_000, paid_before=4_000, bucket="90+"),
    AgingCase("A10", 400, 10_000, bucket="90+"),
    AgingCase("A11", None, 11_000, bucket="no due date"),
    AgingCase("A12", 20, 12_000, paid_before=12_000, bucket=None),
    AgingCase("A13", 45, 13_000, paid_after=13_000, bucket="31-60"),
    AgingCase("U01", 10, 1_550, currency="USD", bucket="1-30"),
)


def build_aging_portfolio(engine: Engine) -> None:
    """Store AGING_CASES, plus one invoice issued after AS_OF that must not count."""
    for case in AGING_CASES:
        due = None if case.days_late is None else AS_OF - timedelta(days=case.days_late)
        issued = (due or AS_OF) - timedelta(days=30)
        store_invoice(
            engine,
            case.number,
            issued=issued,
            due=due,
            amount=case.amount,
            currency=case.currency,
        )
        if case.paid_before:
            pay(engine, case.number, case.paid_before, AS_OF - timedelta(days=2))
        if case.paid_after:
            pay(engine, case.number, case.paid_after, AS_OF + timedelta(days=3))
    store_invoice(
        engine,
        "A99",
        issued=AS_OF + timedelta(days=1),
        due=AS_OF + timedelta(30),
        amount=99,
    )


def expected_aging(currency: str) -> dict[str, tuple[int, int]]:
    """Amount and count per bucket, summed from the cases by hand-assigned bucket."""
    totals: dict[str, list[int]] = {label: [0, 0] for label in AGING_BUCKETS}
    for case in AGING_CASES:
        if case.bucket is not None and case.currency == currency:
            totals[case.bucket][0] += case.amount - case.paid_before
            totals[case.bucket][1] += 1
    return {label: (amount, count) for label, (amount, count) in totals.items()}


def test_aging_buckets_hold_open_balances_by_days_past_due(engine: Engine) -> None:
    build_aging_portfolio(engine)

    report = kpis_of(engine, AS_OF, (date(2026, 1, 1), AS_OF))

    assert [a.currency for a in report.overall.aging] == ["CLP", "USD"]
    for aging in report.overall.aging:
        got = {b.label: (b.amount_minor, b.count) for b in aging.buckets}
        assert got == expected_aging(aging.currency), aging.currency


def test_over_30_days_delinquency_counts_amount_and_share_of_open(
    engine: Engine,
) -> None:
    build_aging_portfolio(engine)

    clp = kpis_of(engine, AS_OF, (date(2026, 1, 1), AS_OF)).overall.aging[0]

    expected = expected_aging("CLP")
    over = [expected[label] for label in ("31-60", "61-90", "90+")]
    open_total = sum(amount for amount, _ in expected.values())
    assert clp.over_30_minor == sum(amount for amount, _ in over)
    assert clp.over_30_count == sum(count for _, count in over)
    assert clp.over_30_share == pytest.approx(clp.over_30_minor / open_total)
    assert clp.open_minor == open_total


def test_aging_at_an_earlier_date_reopens_what_was_paid_later(
    sqlite_engine: Engine,
) -> None:
    store_invoice(
        sqlite_engine, "P1", issued=date(2026, 1, 1), due=date(2026, 1, 31), amount=700
    )
    pay(sqlite_engine, "P1", 700, date(2026, 3, 10))

    before = kpis_of(
        sqlite_engine, date(2026, 3, 9), (date(2026, 1, 1), date(2026, 3, 9))
    )
    after = kpis_of(
        sqlite_engine, date(2026, 3, 10), (date(2026, 1, 1), date(2026, 3, 10))
    )

    # 9 March is 37 days after 31 January; the payment lands on 10 March.
    assert before.overall.aging[0].bucket("31-60").amount_minor == 700
    assert after.overall.aging == ()


def test_a_write_off_leaves_the_open_balance_on_its_date_without_counting_as_cash(
    sqlite_engine: Engine,
) -> None:
    store_invoice(
        sqlite_engine, "W1", issued=date(2026, 1, 1), due=date(2026, 1, 10), amount=900
    )
    with session_scope(sqlite_engine) as session:
        invoice = find_invoice(session, TENANT, "W1")
        assert invoice is not None
        invoice.status = InvoiceStatus.WRITTEN_OFF
        invoice.updated_at = local_noon(date(2026, 1, 20))
        session.add(invoice)
    period = (date(2026, 1, 1), date(2026, 3, 31))

    on_19th = kpis_of(sqlite_engine, date(2026, 1, 19), period)
    later = kpis_of(sqlite_engine, date(2026, 3, 31), period)

    assert on_19th.overall.aging[0].open_minor == 900
    assert later.overall.aging == ()
    assert later.overall.recovery[0].at(30).recovered_minor == 0
    assert later.overall.settlement.settled == 0


# Month ends of the first quarter of 2026, the dates of the aging and DSO series.
JANUARY_END, FEBRUARY_END, MARCH_END = date(2026, 1, 31), date(2026, 2, 28), AS_OF


def build_month_end_portfolio(engine: Engine) -> None:
    """Three CLP invoices and one USD invoice whose balances move across month ends."""
    store_invoice(
        engine, "M1", issued=date(2025, 12, 1), due=date(2025, 12, 31), amount=1_000
    )
    pay(engine, "M1", 400, FEBRUARY_END.replace(day=1))  # the day after January's end
    pay(engine, "M1", 600, MARCH_END)
    store_invoice(
        engine, "M2", issued=date(2026, 1, 10), due=date(2026, 2, 9), amount=2_000
    )
    pay(engine, "M2", 2_000, MARCH_END + timedelta(days=1))
    store_invoice(
        engine, "M3", issued=date(2026, 2, 15), due=date(2026, 3, 1), amount=4_000
    )
    pay(engine, "M3", 1_500, date(2026, 3, 15))
    store_invoice(
        engine,
        "M4",
        issued=date(2025, 11, 1),
        due=date(2025, 11, 30),
        amount=500,
        currency="USD",
    )
    # 23:30 in Santiago is already 1 March in UTC: the local date is what counts.
    pay(engine, "M4", 500, FEBRUARY_END, clock=time(23, 30))


def test_aging_series_holds_each_month_end_balance_by_bucket(engine: Engine) -> None:
    build_month_end_portfolio(engine)

    report = kpis_of(engine, AS_OF, (date(2026, 1, 1), AS_OF))

    got = {
        (point.on, point.currency): {
            b.label: (b.amount_minor, b.count)
            for b in point.aging.buckets
            if b.amount_minor
        }
        for point in report.overall.aging_series
    }
    assert got == {
        # M1 is 31 days late with nothing paid: its 400 arrives on 1 February. M2 is
        # not due yet; M3 is not issued yet.
        (JANUARY_END, "CLP"): {"current": (2_000, 1), "31-60": (1_000, 1)},
        # M4 is 62 days late.
        (JANUARY_END, "USD"): {"61-90": (500, 1)},
        # M1 59 days late with 600 left, M2 19 days late, M3 not due yet.
        (FEBRUARY_END, "CLP"): {
            "current": (4_000, 1),
            "1-30": (2_000, 1),
            "31-60": (600, 1),
        },
        # M4 was paid late on the evening of 28 February, Santiago time.
        (FEBRUARY_END, "USD"): {},
        # M1 paid off on the month end itself; M2's payment comes a day later; M3 is
        # 30 days late with 2,500 left.
        (MARCH_END, "CLP"): {"1-30": (2_500, 1), "31-60": (2_000, 1)},
        (MARCH_END, "USD"): {},
    }
    over_30 = [
        (p.on, p.aging.over_30_minor, p.aging.over_30_count)
        for p in report.overall.aging_series
        if p.currency == "CLP"
    ]
    assert over_30 == [
        (JANUARY_END, 1_000, 1),
        (FEBRUARY_END, 600, 1),
        (MARCH_END, 2_000, 1),
    ]


def test_aging_series_stops_at_the_report_date_and_splits_by_group(
    sqlite_engine: Engine,
) -> None:
    build_month_end_portfolio(sqlite_engine)

    report = kpis_of(
        sqlite_engine, FEBRUARY_END, (date(2026, 1, 1), AS_OF), group_by="customer"
    )

    assert sorted({p.on for p in report.overall.aging_series}) == [
        JANUARY_END,
        FEBRUARY_END,
    ]
    by_group = {
        (group.key, p.on): p.aging.open_minor
        for group in report.groups
        for p in group.figures.aging_series
    }
    assert by_group[("C-M1", JANUARY_END)] == 1_000
    assert by_group[("C-M1", FEBRUARY_END)] == 600
    assert by_group[("C-M3", JANUARY_END)] == 0
    assert by_group[("C-M3", FEBRUARY_END)] == 4_000


# --- DSO by countback ---


def test_countback_takes_whole_months_then_a_fraction_of_the_last() -> None:
    sales = {date(2026, 3, 1): 200, date(2026, 2, 10): 400, date(2026, 1, 5): 900}

    def between(start: date, end: date) -> int:
        return sum(amount for day, amount in sales.items() if start <= day <= end)

    # 450 open on 31 March: March's 200 takes its 31 days, 250 of February's 400 take
    # 250/400 of its 28 days.
    assert countback_days(450, between, date(2026, 3, 31), date(2026, 1, 5)) == (
        pytest.approx(31 + 28 * 250 / 400)
    )
    # On 15 March only the first 15 days of March are behind us.
    assert countback_days(150, between, date(2026, 3, 15), date(2026, 1, 5)) == (
        pytest.approx(15 * 150 / 200)
    )
    assert countback_days(0, between, date(2026, 3, 31), date(2026, 1, 5)) == 0


def test_dso_series_runs_month_end_by_month_end_over_the_period(engine: Engine) -> None:
    store_invoice(
        engine, "D1", issued=date(2026, 1, 10), due=date(2026, 2, 9), amount=300
    )
    store_invoice(
        engine, "D2", issued=date(2026, 2, 10), due=date(2026, 3, 12), amount=400
    )
    store_invoice(
        engine, "D3", issued=date(2026, 3, 5), due=date(2026, 4, 4), amount=100
    )
    store_invoice(
        engine, "D4", issued=date(2026, 3, 20), due=date(2026, 4, 19), amount=100
    )
    pay(engine, "D1", 300, date(2026, 2, 15))
    pay(engine, "D2", 150, date(2026, 3, 10))

    report = kpis_of(engine, AS_OF, (date(2026, 1, 1), AS_OF))

    series = {p.on: (p.days, p.receivables_minor) for p in report.overall.dso}
    # 31 Jan: D1's 300 open against January's 300 of sales, the whole of January.
    assert series[date(2026, 1, 31)] == (pytest.approx(31.0), 300)
    # 28 Feb: D1 paid, D2's 400 open against February's 400 of sales.
    assert series[date(2026, 2, 28)] == (pytest.approx(28.0), 400)
    # 31 Mar: 250 of D2 and 200 of March: all of March, then 250/400 of February.
    assert series[AS_OF] == (pytest.approx(31 + 28 * 250 / 400), 450)
    assert [p.days for p in report.overall.dso_as_of] == [series[AS_OF][0]]


def test_month_ends_close_with_the_period_end() -> None:
    assert month_ends(date(2026, 1, 15), date(2026, 3, 10)) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 10),
    ]
    assert month_ends(date(2026, 2, 1), date(2026, 2, 28)) == [date(2026, 2, 28)]
    assert default_period(date(2026, 3, 31)) == (date(2025, 4, 1), date(2026, 3, 31))
    assert default_period(date(2026, 12, 5)) == (date(2026, 1, 1), date(2026, 12, 5))


# --- recovery after the due date ---


@dataclass(frozen=True)
class RecoveryCase:
    """An invoice with its payments, as (days after due, amount, kind)."""

    number: str
    due: date
    amount: int
    payments: tuple[tuple[int, int, PaymentKind], ...] = ()


CASH, CREDIT = PaymentKind.PAYMENT, PaymentKind.CREDIT_NOTE
RECOVERY_CASES = (
    RecoveryCase("R1", date(2026, 1, 10), 1_000, ((10, 1_000, CASH),)),
    RecoveryCase("R2", date(2026, 1, 10), 2_000, ((22, 2_000, CASH),)),
    RecoveryCase(
        "R3", date(2026, 1, 10), 4_000, ((5, 1_000, CASH), (6, 3_000, CREDIT))
    ),
    RecoveryCase("R4", date(2026, 1, 10), 8_000),
    RecoveryCase("R5", date(2026, 1, 10), 500, ((-2, 500, CASH),)),
    RecoveryCase("R6", date(2026, 3, 10), 16_000, ((18, 16_000, CASH),)),
    RecoveryCase("R7", date(2025, 12, 20), 32_000),
    RecoveryCase("R8", date(2026, 1, 10), 3_000, ((0, 1_000, CASH), (2, 2_000, CASH))),
)


def expected_recovery(
    window: int, period: tuple[date, date], as_of: date
) -> tuple[int, int]:
    """Overdue and recovered amounts worked out from RECOVERY_CASES by the definition."""
    overdue_total = recovered_total = 0
    for case in RECOVERY_CASES:
        if not period[0] <= case.due <= period[1] or (as_of - case.due).days < window:
            continue
        overdue = case.amount - sum(
            amount for day, amount, _ in case.payments if day <= 0
        )
        if overdue <= 0:
            continue
        cash = sum(
            amount
            for day, amount, kind in case.payments
            if kind == CASH and 0 < day <= window
        )
        overdue_total += overdue
        recovered_total += min(overdue, cash)
    return overdue_total, recovered_total


def test_recovery_within_15_and_30_days_counts_cash_paid_after_due(
    engine: Engine,
) -> None:
    for case in RECOVERY_CASES:
        store_invoice(
            engine,
            case.number,
            issued=case.due - timedelta(days=30),
            due=case.due,
            amount=case.amount,
        )
        for day, amount, kind in case.payments:
            pay(engine, case.number, amount, case.due + timedelta(days=day), kind=kind)
    period = (date(2026, 1, 1), AS_OF)

    curve = kpis_of(engine, AS_OF, period).overall.recovery[0]

    for window in (15, 30):
        overdue, recovered = expected_recovery(window, period, AS_OF)
        point = curve.at(window)
        assert (point.overdue_minor, point.recovered_minor) == (overdue, recovered)
        assert point.share == pytest.approx(recovered / overdue)
    assert curve.at(0).recovered_minor == 0
    # No invoice of the cohort is due more than this many days before AS_OF: later days
    # of the curve have nobody to tell about, and say so instead of showing 0 %.
    oldest = max((AS_OF - c.due).days for c in RECOVERY_CASES if c.due >= period[0])
    assert all(p.share is None for p in curve.points[oldest + 1 :])
    assert all(p.share is not None for p in curve.points[: oldest + 1])


# --- settlement ---


def test_payment_date_is_the_last_movement_that_cleared_the_balance() -> None:
    movements = [
        Movement(date(2026, 2, 1), 600, cash=True),
        Movement(date(2026, 2, 3), 400, cash=True),  # cleared here
        Movement(date(2026, 2, 5), -100, cash=False),  # an adjustment reopens it
        Movement(date(2026, 2, 9), 100, cash=True),  # cleared again, for good
    ]

    assert payment_date(1_000, movements) == date(2026, 2, 9)
    assert payment_date(1_000, movements[:2]) == date(2026, 2, 3)
    assert payment_date(1_000, movements[:1]) is None
    # A payment on an already cleared balance did not clear it: the date stays put.
    overpaid = [*movements[:2], Movement(date(2026, 2, 4), 50, cash=True)]
    assert payment_date(1_000, overpaid) == date(2026, 2, 3)


def test_days_late_and_paid_by_due_date_cover_invoices_paid_in_the_period(
    engine: Engine,
) -> None:
    # (number, due, paid on, days late as a person counts them); S5 paid before the period.
    settled = [
        ("S1", date(2026, 2, 10), date(2026, 2, 10) - timedelta(days=3), -3),
        ("S2", date(2026, 2, 10), date(2026, 2, 10), 0),
        ("S3", date(2026, 2, 10), date(2026, 2, 14), 4),
        ("S4", date(2026, 2, 1), date(2026, 2, 11), 10),
    ]
    for number, due, paid, _ in settled:
        store_invoice(
            engine,
            number,
            issued=due - timedelta(days=30),
            due=due,
            amount=1_000,
            settled=paid if number in ("S1", "S4") else None,
        )
    # 23:30 in Santiago on the due date is already the next day in UTC: still on time.
    pay(engine, "S2", 1_000, date(2026, 2, 10), clock=time(23, 30))
    pay(engine, "S3", 500, date(2026, 2, 12))
    pay(engine, "S3", 500, date(2026, 2, 14))
    store_invoice(
        engine,
        "S5",
        issued=date(2025, 12, 1),
        due=date(2026, 1, 1),
        amount=10,
        settled=date(2026, 1, 20),
    )
    store_invoice(
        engine, "S6", issued=date(2026, 2, 1), due=date(2026, 3, 1), amount=10
    )

    figures = kpis_of(engine, AS_OF, (date(2026, 2, 1), AS_OF)).overall.settlement

    lateness = [late for *_, late in settled]
    assert figures.settled == len(settled)
    assert figures.average_days_late == pytest.approx(
        sum(max(0, late) for late in lateness) / len(lateness)
    )
    assert figures.paid_by_due_date == sum(1 for late in lateness if late <= 0)


# --- contacts ---


FUNNEL_PAID = {
    "F1": date(2026, 3, 9),
    "F2": date(2026, 3, 20),
    "F3": date(2026, 3, 7),
    "F7": date(2026, 3, 13),
}
FUNNEL_CONTACTS = (
    ("F1", "R+1", "email", ContactStatus.SENT, date(2026, 3, 6), "sent"),
    ("F2", "R+1", "email", ContactStatus.SENT, date(2026, 3, 6), "sent"),
    ("F2", "R+3", "sms", ContactStatus.SENT, date(2026, 3, 8), "sent"),
    (
        "F3",
        "R+1",
        "sms",
        ContactStatus.BLOCKED,
        date(2026, 3, 6),
        "no reachable contact on sms",
    ),
    (
        "F3",
        "R+3",
        "email",
        ContactStatus.CANCELLED,
        date(2026, 3, 8),
        "invoice is paid in the store at send time",
    ),
    ("F4", "R+1", "whatsapp", ContactStatus.FAILED, date(2026, 3, 10), "error 21211"),
    ("F5", "R+1", "email", ContactStatus.PENDING, date(2026, 3, 12), ""),
    ("F6", "R-3", "email", ContactStatus.SENT, date(2026, 2, 20), "sent"),
    ("F7", "R+1", "email", ContactStatus.SENT, date(2026, 3, 6), "sent"),
)


def build_contact_portfolio(engine: Engine) -> None:
    """Invoices F1-F7 due on 5 March, their payments and the ledger of FUNNEL_CONTACTS."""
    for number in sorted({row[0] for row in FUNNEL_CONTACTS}):
        store_invoice(
            engine, number, issued=date(2026, 2, 3), due=date(2026, 3, 5), amount=5_000
        )
    for number, paid in FUNNEL_PAID.items():
        pay(engine, number, 5_000, paid)
    for number, step, channel, status, on, reason in FUNNEL_CONTACTS:
        record_contact(
            engine,
            number,
            step=step,
            channel=channel,
            status=status,
            on=on,
            reason=reason,
        )


def test_contacts_per_channel_count_outcomes_and_payments_within_7_days(
    sqlite_engine: Engine,
) -> None:
    build_contact_portfolio(sqlite_engine)
    period = (date(2026, 3, 1), AS_OF)

    funnels = {
        f.channel: f for f in kpis_of(sqlite_engine, AS_OF, period).overall.channels
    }

    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for number, _, channel, status, on, _ in FUNNEL_CONTACTS:
        if not period[0] <= on <= period[1]:
            continue
        expected[channel]["planned"] += 1
        expected[channel][str(status)] += 1
        paid = FUNNEL_PAID.get(number)
        if status == ContactStatus.SENT and paid and 0 <= (paid - on).days <= 7:
            expected[channel]["paid"] += 1
    assert set(funnels) == set(expected)
    for channel, tally in expected.items():
        funnel = funnels[channel]
        assert (funnel.planned, funnel.sent, funnel.paid_within_days) == (
            tally["planned"],
            tally["sent"],
            tally["paid"],
        ), channel
        assert (funnel.cancelled, funnel.blocked, funnel.failed, funnel.pending) == (
            tally["cancelled"],
            tally["blocked"],
            tally["failed"],
            tally["pending"],
        ), channel


def test_cancelled_and_blocked_contacts_are_grouped_by_reason(
    sqlite_engine: Engine,
) -> None:
    for number in ("G1", "G2", "G3"):
        store_invoice(
            sqlite_engine,
            number,
            issued=date(2026, 2, 1),
            due=date(2026, 3, 3),
            amount=10,
        )
    decisions = [
        (
            "G1",
            ContactStatus.CANCELLED,
            "balance is 0 at send time: nothing to collect",
        ),
        (
            "G2",
            ContactStatus.CANCELLED,
            "balance is -500 at send time: nothing to collect",
        ),
        ("G3", ContactStatus.BLOCKED, "no reachable contact on email, sms"),
    ]
    for number, status, reason in decisions:
        record_contact(
            sqlite_engine,
            number,
            step="R+1",
            channel="email",
            status=status,
            on=date(2026, 3, 4),
            reason=reason,
        )

    reasons = kpis_of(sqlite_engine, AS_OF, (date(2026, 3, 1), AS_OF)).overall.reasons

    assert [(r.status, r.reason, r.count) for r in reasons] == [
        ("cancelled", "balance is # at send time: nothing to collect", 2),
        ("blocked", "no reachable contact on email, sms", 1),
    ]


def test_reason_groups_blank_addresses_dates_and_numbers_but_keep_rule_ids() -> None:
    assert reason_group("no e-mail accepted by ana.perez@example.cl") == (
        "no e-mail accepted by <address>"
    )
    assert reason_group("deferred R2 to 2026-04-06T08:00-04:00: CL-C-01 Sunday") == (
        "deferred R2 to <date>: CL-C-01 Sunday"
    )
    assert (
        reason_group("folio 0000611365 has 2 open notes") == "folio # has # open notes"
    )
    assert reason_group(None) == "(no reason given)"


# --- tasks for people ---


@dataclass(frozen=True)
class TaskCase:
    """A task: when it opened, its SLA deadline, and how and when it ended, if it did."""

    number: str
    kind: str
    opened: date
    due: date
    status: TaskStatus
    finished: date | None = None
    escalated: date | None = None


TASK_CASES = (
    TaskCase(
        "T1",
        "call_debtor",
        date(2026, 3, 2),
        date(2026, 3, 4),
        TaskStatus.DONE,
        date(2026, 3, 3),
    ),
    TaskCase(
        "T2",
        "call_debtor",
        date(2026, 3, 5),
        date(2026, 3, 9),
        TaskStatus.DONE,
        date(2026, 3, 12),
        escalated=date(2026, 3, 10),
    ),
    TaskCase(
        "T3",
        "data_fix",
        date(2026, 3, 10),
        date(2026, 3, 12),
        TaskStatus.CANCELLED,
        date(2026, 3, 11),
    ),
    TaskCase("T4", "data_fix", date(2026, 3, 20), date(2026, 3, 24), TaskStatus.OPEN),
    TaskCase(
        "T5", "call_debtor", date(2026, 3, 28), date(2026, 4, 2), TaskStatus.CLAIMED
    ),
    TaskCase(
        "T6",
        "call_debtor",
        date(2026, 2, 20),
        date(2026, 3, 2),
        TaskStatus.DONE,
        date(2026, 3, 1),
    ),
    TaskCase(
        "T7",
        "call_debtor",
        date(2026, 3, 25),
        date(2026, 3, 27),
        TaskStatus.CANCELLED,
        date(2026, 3, 29),
    ),
)


def store_task(engine: Engine, case: TaskCase) -> None:
    """Commit one task as the task activities leave it, instants at Santiago noon."""
    with session_scope(engine) as session:
        session.add(
            HumanTask(
                tenant=TENANT,
                invoice_number=case.number,
                workflow_id=f"invoice/{TENANT}/{case.number}",
                step_id="T+1",
                kind=case.kind,
                role=0,
                assignee_id="ejecutivo-1",
                reason="scenario task",
                time_zone=SANTIAGO,
                opened_at=local_noon(case.opened),
                due_at=local_noon(case.due),
                status=case.status,
                escalation_level=1 if case.escalated else 0,
                escalated_at=local_noon(case.escalated) if case.escalated else None,
                completed_at=local_noon(case.finished) if case.finished else None,
            )
        )


def test_tasks_created_in_the_period_and_their_deadlines_met(
    sqlite_engine: Engine,
) -> None:
    for case in TASK_CASES:
        store_invoice(
            sqlite_engine,
            case.number,
            issued=date(2026, 1, 1),
            due=date(2026, 2, 1),
            amount=100,
        )
        store_task(sqlite_engine, case)
    period = (date(2026, 3, 1), AS_OF)

    tasks = kpis_of(sqlite_engine, AS_OF, period).overall.tasks

    opened = [c for c in TASK_CASES if period[0] <= c.opened <= period[1]]
    # A deadline counts when it fell in the period, unless the task was cancelled before
    # it; it is met when the task was done by then.
    deadlines = [
        c.status == TaskStatus.DONE and c.finished is not None and c.finished <= c.due
        for c in TASK_CASES
        if period[0] <= c.due <= period[1]
        and not (
            c.status == TaskStatus.CANCELLED and c.finished and c.finished <= c.due
        )
    ]
    assert tasks.opened == len(opened)
    assert dict(tasks.opened_by_kind) == dict(Counter(c.kind for c in opened))
    assert tasks.done == sum(c.status == TaskStatus.DONE for c in opened)
    assert tasks.cancelled == sum(c.status == TaskStatus.CANCELLED for c in opened)
    assert tasks.escalated == sum(c.escalated is not None for c in opened)
    assert (tasks.deadlines, tasks.deadlines_met) == (len(deadlines), sum(deadlines))
    assert tasks.sla_share == pytest.approx(sum(deadlines) / len(deadlines))


# --- groups, placeholders and arguments ---


def test_group_by_segment_splits_every_figure_and_adds_up(
    sqlite_engine: Engine,
) -> None:
    store_invoice(
        sqlite_engine,
        "B1",
        issued=date(2026, 1, 1),
        due=date(2026, 1, 31),
        amount=100,
        segment="alpha",
        policy="p-alpha",
        customer="C-1",
    )
    store_invoice(
        sqlite_engine,
        "B2",
        issued=date(2026, 2, 1),
        due=date(2026, 3, 3),
        amount=200,
        segment="beta",
        policy="p-beta",
        customer="C-1",
    )
    store_invoice(
        sqlite_engine,
        "B3",
        issued=date(2026, 3, 1),
        due=date(2026, 3, 31),
        amount=400,
        customer="C-2",
    )
    period = (date(2026, 1, 1), AS_OF)

    by_segment = kpis_of(sqlite_engine, AS_OF, period, group_by="segment")
    by_customer = kpis_of(sqlite_engine, AS_OF, period, group_by="customer")
    by_policy = kpis_of(sqlite_engine, AS_OF, period, group_by="policy")

    assert [g.key for g in by_segment.groups] == ["(none)", "alpha", "beta"]
    assert [g.key for g in by_customer.groups] == ["C-1", "C-2"]
    assert [g.key for g in by_policy.groups] == ["(none)", "p-alpha", "p-beta"]
    for report in (by_segment, by_customer, by_policy):
        total = sum(g.figures.aging[0].open_minor for g in report.groups)
        assert total == report.overall.aging[0].open_minor == 700


def test_an_empty_store_has_no_promise_dispute_or_rule_decision(
    sqlite_engine: Engine,
) -> None:
    report = kpis_of(sqlite_engine, AS_OF, (date(2026, 1, 1), AS_OF))

    assert report.overall.promises == NO_PROMISES
    assert report.overall.promises.kept_rate is None
    assert report.overall.disputes == () and report.overall.rule_decisions == ()
    assert report.overall.dispute_summary.median_days_to_resolution is None
    assert report.overall.contacts_by_rule == {"deferred": 0, "suppressed": 0}
    assert report.overall.aging == () and report.overall.settlement.settled == 0
    assert report.overall.tasks.opened == 0 and report.overall.tasks.sla_share is None
    assert report.overall.reconciliation == NO_RECONCILIATIONS


# --- promises, disputes and contacts deferred or suppressed by a rule ---


@dataclass(frozen=True)
class PromiseCase:
    """One promise as a case writes it: recorded on a day, ended (or not) on another."""

    number: str
    sequence: int
    amount: int
    recorded: date
    outcome: PromiseOutcome = PromiseOutcome.OPEN
    ended: date | None = None
    currency: str = "CLP"


PROMISE_CASES = (
    PromiseCase(
        "P1", 1, 100_000, date(2026, 3, 2), PromiseOutcome.KEPT, date(2026, 3, 10)
    ),
    PromiseCase(
        "P2", 1, 200_000, date(2026, 3, 3), PromiseOutcome.BROKEN, date(2026, 3, 12)
    ),
    PromiseCase(
        "P2", 2, 50_000, date(2026, 3, 13), PromiseOutcome.KEPT, date(2026, 3, 20)
    ),
    # Recorded before the period, broken in it.
    PromiseCase(
        "P3", 1, 300_000, date(2026, 2, 20), PromiseOutcome.BROKEN, date(2026, 3, 1)
    ),
    PromiseCase("P4", 1, 400_000, date(2026, 3, 25)),
    # Broken after the report date: open at it.
    PromiseCase(
        "P5", 1, 500_000, date(2026, 3, 28), PromiseOutcome.BROKEN, date(2026, 4, 2)
    ),
    # Replaced by a newer promise the next day.
    PromiseCase(
        "P6", 1, 60_000, date(2026, 3, 5), PromiseOutcome.CANCELLED, date(2026, 3, 6)
    ),
    PromiseCase(
        "P6", 2, 70_000, date(2026, 3, 6), PromiseOutcome.KEPT, date(2026, 3, 15)
    ),
    PromiseCase(
        "P7", 1, 1_000, date(2026, 3, 1), PromiseOutcome.BROKEN, date(2026, 3, 9), "USD"
    ),
    # Before the period altogether.
    PromiseCase(
        "P8", 1, 80_000, date(2026, 2, 1), PromiseOutcome.KEPT, date(2026, 2, 15)
    ),
)


@dataclass(frozen=True)
class DisputeCase:
    """One dispute as a case writes it, its instants as Santiago wall-clock times."""

    number: str
    category: DisputeCategory
    amount: int
    opened: datetime
    status: DisputeStatus = DisputeStatus.OPEN
    resolved: datetime | None = None
    currency: str = "CLP"


PO, GOODS, ADMIN, OTHER = (
    DisputeCategory.PURCHASE_ORDER_PENDING,
    DisputeCategory.GOODS_RECEIPT_NOT_REGISTERED,
    DisputeCategory.ADMINISTRATIVE_DIFFERENCE,
    DisputeCategory.OTHER,
)
DISPUTE_CASES = (
    # Three days from noon to noon.
    DisputeCase(
        "Q1",
        PO,
        100_000,
        local_noon(date(2026, 3, 2)),
        DisputeStatus.REJECTED,
        local_noon(date(2026, 3, 5)),
    ),
    # Half a day: noon to midnight.
    DisputeCase(
        "Q2",
        PO,
        200_000,
        local_noon(date(2026, 3, 3)),
        DisputeStatus.UPHELD,
        local_noon(date(2026, 3, 4), time(0)),
    ),
    # Opened before the period, resolved in it after 18 days.
    DisputeCase(
        "Q3",
        PO,
        300_000,
        local_noon(date(2026, 2, 20)),
        DisputeStatus.REJECTED,
        local_noon(date(2026, 3, 10)),
    ),
    DisputeCase("Q4", GOODS, 400_000, local_noon(date(2026, 3, 20))),
    # Closed with its case (paid while in dispute): never resolved.
    DisputeCase(
        "Q5",
        ADMIN,
        500_000,
        local_noon(date(2026, 3, 25)),
        DisputeStatus.CLOSED,
        local_noon(date(2026, 3, 27)),
    ),
    # Upheld after the report date: open at it.
    DisputeCase(
        "Q6",
        OTHER,
        600_000,
        local_noon(date(2026, 3, 30)),
        DisputeStatus.UPHELD,
        local_noon(date(2026, 4, 3)),
    ),
    DisputeCase(
        "Q7",
        PO,
        2_000,
        local_noon(date(2026, 3, 10)),
        DisputeStatus.REJECTED,
        local_noon(date(2026, 3, 12)),
        "USD",
    ),
)

# (invoice, ContactAttempt outcome, decided on, the gate's trace)
RULE_DECISION_CASES = (
    (
        "P1",
        "defer",
        date(2026, 3, 2),
        "defer until 2026-03-02T12:00Z: CL-B-01 before "
        "09:00 on Monday 2026-03-02 [rules: CL-B-01, CL-B-02]",
    ),
    (
        "P1",
        "defer",
        date(2026, 3, 3),
        "defer until 2026-03-09T12:00Z: CL-B-02 cap of 2 "
        "contacts a week reached; CL-B-01 before 09:00 [rules: CL-B-01, CL-B-02]",
    ),
    (
        "P2",
        "defer",
        date(2026, 3, 4),
        "defer until 2026-03-04T12:00Z: CL-B-01 before "
        "09:00 on Wednesday 2026-03-04 [rules: CL-B-01, CL-B-02]",
    ),
    (
        "P2",
        "deny",
        date(2026, 3, 5),
        "deny: CL-B-05 lawsuit served: no more contact [rules: CL-B-05]",
    ),
    (
        "P3",
        "defer",
        date(2026, 2, 27),
        "defer until 2026-03-02T12:00Z: CL-B-01 before 09:00 [rules: CL-B-01]",
    ),
    ("P3", "defer", date(2026, 3, 6), "defer until 2026-03-09T12:00Z: busy [rules: ]"),
    # Neither deferred nor suppressed: never counted.
    (
        "P3",
        "allow",
        date(2026, 3, 9),
        "allow: lawful at the wanted instant [rules: CL-B-01]",
    ),
    ("P3", "started", date(2026, 3, 9), None),
)
# Invoices of the large segment: with the shipped governance, exec-02 works them.
LARGE = ("P1", "P2")


def build_commitment_portfolio(engine: Engine) -> None:
    """Invoices with PROMISE_CASES, DISPUTE_CASES and RULE_DECISION_CASES, as cases write them."""
    numbers = {c.number: c.currency for c in (*PROMISE_CASES, *DISPUTE_CASES)}
    for number, currency in sorted(numbers.items()):
        store_invoice(
            engine,
            number,
            issued=date(2026, 1, 5),
            due=date(2026, 2, 4),
            amount=1_000_000,
            currency=currency,
            segment="b2b-large" if number in LARGE else None,
        )
    for promise in PROMISE_CASES:
        record = PromiseRecord(
            tenant=TENANT,
            invoice_number=promise.number,
            customer_id=f"C-{promise.number}",
            sequence=promise.sequence,
            amount_minor=promise.amount,
            currency=promise.currency,
            promised_date=promise.recorded + timedelta(days=5),
            deadline=local_noon(promise.recorded + timedelta(days=6), time(18)),
            recorded_by="exec-01",
            recorded_at=local_noon(promise.recorded),
        )
        record_promise(engine, record)  # open first, as the case writes it
        if promise.ended is not None:
            ended = local_noon(promise.ended, time(18))
            record_promise(
                engine, replace(record, outcome=promise.outcome, outcome_at=ended)
            )
    for dispute in DISPUTE_CASES:
        opened = DisputeRecord(
            tenant=TENANT,
            invoice_number=dispute.number,
            customer_id=f"C-{dispute.number}",
            dispute_id="D1",
            amount_minor=dispute.amount,
            currency=dispute.currency,
            category=dispute.category,
            opened_at=dispute.opened.astimezone(UTC),
            opened_by="exec-01",
            owner_id="exec-01",
        )
        record_dispute(engine, opened)
        if dispute.resolved is not None:
            record_dispute(
                engine,
                replace(
                    opened,
                    status=dispute.status,
                    resolved_at=dispute.resolved.astimezone(UTC),
                    resolved_by="sup-01",
                ),
            )
    with session_scope(engine) as session:
        for index, (number, outcome, on, detail) in enumerate(RULE_DECISION_CASES):
            entry = ContactLedgerEntry(
                tenant=TENANT,
                invoice_number=number,
                step_id=f"R+{index}",
                channel="email",
                recipient=f"email:{number}",
                status=ContactStatus.DEFERRED,
                policy_name="test-policy",
                policy_version=1,
                planned_at=local_noon(on, time(8)),
            )
            session.add(entry)
            session.flush()
            assert entry.id is not None
            session.add(
                ContactAttempt(
                    ledger_entry_id=entry.id,
                    attempt=1,
                    outcome=outcome,
                    detail=detail,
                    at=local_noon(on, time(8)),
                )
            )


MARCH = (date(2026, 3, 1), AS_OF)


def test_promises_kept_broken_and_open_are_counted_with_their_amounts(
    engine: Engine,
) -> None:
    build_commitment_portfolio(engine)

    promises = kpis_of(engine, AS_OF, MARCH).overall.promises

    # Recorded in March: P1, P2 (both), P4, P5, P6 (both), P7. Ended in March: kept P1,
    # P2#2, P6#2; broken P2#1, P3, P7; P6#1 replaced. Open on 31 March: P4, and P5
    # (broken only on 2 April).
    assert (promises.recorded, promises.kept, promises.broken) == (8, 3, 3)
    assert (promises.cancelled, promises.open_at_end) == (1, 2)
    assert promises.kept_rate == pytest.approx(0.5)
    assert [(a.currency, a.kept_minor, a.broken_minor) for a in promises.amounts] == [
        ("CLP", 100_000 + 50_000 + 70_000, 200_000 + 300_000),
        ("USD", 0, 1_000),
    ]


def test_disputes_by_category_with_days_to_resolution_and_open_ones(
    engine: Engine,
) -> None:
    build_commitment_portfolio(engine)

    figures = kpis_of(engine, AS_OF, MARCH).overall

    assert figures.disputes == (
        # Opened in March: Q1, Q2. Resolved in March: Q1 (3 days), Q2 (half a day) and
        # Q3 (18 days, opened in February): mean 21.5 / 3, median 3.
        DisputeFigures(
            "purchase_order_pending", "CLP", 2, 300_000, 1, 2, 21.5 / 3, 3.0, 0, 0
        ),
        DisputeFigures("purchase_order_pending", "USD", 1, 2_000, 0, 1, 2.0, 2.0, 0, 0),
        DisputeFigures(
            "goods_receipt_not_registered",
            "CLP",
            1,
            400_000,
            0,
            0,
            None,
            None,
            1,
            400_000,
        ),
        # Closed with its case: opened in March, never resolved, not open at the end.
        DisputeFigures(
            "administrative_difference", "CLP", 1, 500_000, 0, 0, None, None, 0, 0
        ),
        # Upheld on 3 April: open on 31 March.
        DisputeFigures("other", "CLP", 1, 600_000, 0, 0, None, None, 1, 600_000),
    )
    summary = figures.dispute_summary
    assert (summary.opened, summary.resolved, summary.open_at_end) == (6, 4, 2)
    # 3, 0.5, 18 and 2 days.
    assert summary.mean_days_to_resolution == pytest.approx(23.5 / 4)
    assert summary.median_days_to_resolution == pytest.approx(2.5)


def test_contacts_deferred_or_suppressed_are_counted_by_the_deciding_rule(
    engine: Engine,
) -> None:
    build_commitment_portfolio(engine)

    figures = kpis_of(engine, AS_OF, MARCH).overall

    # The deferral of 27 February is outside the period; allowed and started attempts
    # are no rule decision.
    assert [(d.outcome, d.rule, d.count) for d in figures.rule_decisions] == [
        ("deferred", "CL-B-01", 2),
        ("deferred", UNNAMED_RULE, 1),
        ("deferred", "CL-B-02", 1),
        ("suppressed", "CL-B-05", 1),
    ]
    assert figures.contacts_by_rule == {"deferred": 4, "suppressed": 1}


def test_promises_disputes_and_rule_decisions_split_by_segment_and_executive(
    engine: Engine,
) -> None:
    build_commitment_portfolio(engine)
    sync_governance(engine, TENANT, PROJECT_ROOT / "policies" / "governance.yaml")

    by_segment = kpis_of(engine, AS_OF, MARCH, group_by="segment")
    by_executive = kpis_of(engine, AS_OF, MARCH, group_by="executive")

    # P1 and P2 are large B2B invoices, which the shipped governance gives to exec-02;
    # everything else falls to the default executive, exec-01.
    large = {g.key: g.figures for g in by_segment.groups}["b2b-large"]
    assert [g.key for g in by_executive.groups] == ["exec-01", "exec-02"]
    assert {g.key: g.figures for g in by_executive.groups}["exec-02"] == large
    assert (large.promises.kept, large.promises.broken) == (2, 1)
    assert large.promises.recorded == 3 and large.disputes == ()
    assert large.contacts_by_rule == {"deferred": 2 + 1, "suppressed": 1}
    for report in (by_segment, by_executive):
        assert sum(g.figures.promises.kept for g in report.groups) == 3
        assert sum(g.figures.dispute_summary.opened for g in report.groups) == 6


def test_a_decision_counts_under_the_first_rule_its_reason_names() -> None:
    trace = (
        "defer until 2027-01-04T11:00Z: CL-C-05 at most 1 a day; CL-C-01 before 08:00 "
        "[rules: CL-C-01, CL-C-05]"
    )

    assert deciding_rule(trace) == "CL-C-05"
    assert deciding_rule(
        "deny: CL-B-07 the debtor opted out of sms [rules: CL-B-07]"
    ) == ("CL-B-07")
    assert deciding_rule("something else entirely") == UNNAMED_RULE


def test_unknown_grouping_and_reversed_period_are_refused(
    sqlite_engine: Engine,
) -> None:
    with pytest.raises(ValueError, match="cannot group by 'region'"):
        compute_kpis(
            sqlite_engine,
            tenant=TENANT,
            as_of=AS_OF,
            group_by="region",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="after its end"):
        kpis_of(sqlite_engine, AS_OF, (AS_OF, date(2026, 1, 1)))


# --- the real IBM portfolio ---


IBM_FILE = ("data", "ar", "ibm_accounts_receivable.csv")


def import_ibm(database_url: str, shared_dir: Path) -> list[dict[str, str]]:
    """Import the IBM file into the store and return its rows as read from the CSV."""
    source = shared_dir.joinpath(*IBM_FILE)
    report = import_portfolio(
        source,
        "ibm-ar",
        database_url=database_url,
        tenant=TENANT,
        policies_dir=PROJECT_ROOT / "policies",
    )
    assert not report.rejected, report.summary()
    with source.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def us_date(text: str) -> date:
    """A M/D/YYYY date of the IBM file."""
    return datetime.strptime(text, "%m/%d/%Y").date()


def file_countback(rows: list[dict[str, str]], on: date) -> Decimal:
    """DSO on ``on`` from the file alone: open amounts against monthly sales, backwards."""
    issued = [(us_date(r["InvoiceDate"]), Decimal(r["InvoiceAmount"])) for r in rows]
    open_amount = sum(
        (
            Decimal(r["InvoiceAmount"])
            for r in rows
            if us_date(r["InvoiceDate"]) <= on < us_date(r["SettledDate"])
        ),
        Decimal(0),
    )
    days, year, month, last_day = Decimal(0), on.year, on.month, on.day
    while open_amount > 0:
        sales = sum(
            (
                a
                for d, a in issued
                if (d.year, d.month) == (year, month) and d.day <= last_day
            ),
            Decimal(0),
        )
        if sales >= open_amount:
            return days + last_day * open_amount / sales
        open_amount -= sales
        days += last_day
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        last_day = calendar.monthrange(year, month)[1]
    return days


def test_ibm_dso_and_days_late_match_the_file(
    sqlite_url: str, shared_dir: Path
) -> None:
    rows = import_ibm(sqlite_url, shared_dir)
    period = (date(2012, 7, 1), date(2013, 6, 30))
    engine = make_engine(sqlite_url)
    try:
        report = kpis_of(engine, period[1], period)
    finally:
        engine.dispose()

    in_period = [r for r in rows if period[0] <= us_date(r["SettledDate"]) <= period[1]]
    late = [int(r["DaysLate"]) for r in in_period]
    settlement = report.overall.settlement
    assert settlement.settled == len(in_period)
    assert settlement.average_days_late == pytest.approx(sum(late) / len(late))
    assert settlement.paid_by_due_date == late.count(0)
    assert len(report.overall.dso) == 12
    for point in report.overall.dso:
        assert point.currency == "USD"
        assert point.days == pytest.approx(float(file_countback(rows, point.on))), (
            point.on
        )


def test_ibm_aging_on_a_date_matches_the_file(
    sqlite_url: str, shared_dir: Path
) -> None:
    rows = import_ibm(sqlite_url, shared_dir)
    as_of = date(2013, 3, 15)
    engine = make_engine(sqlite_url)
    try:
        report = kpis_of(engine, as_of, (date(2013, 1, 1), as_of))
        span = portfolio_span(engine, TENANT)
        with session_scope(engine) as session:
            customers = len(session.exec(select(Customer)).all())
    finally:
        engine.dispose()

    expected: Counter[str] = Counter()
    for row in rows:
        if us_date(row["InvoiceDate"]) <= as_of < us_date(row["SettledDate"]):
            late = (as_of - us_date(row["DueDate"])).days
            limits = ((0, "current"), (30, "1-30"), (60, "31-60"), (90, "61-90"))
            label = next((name for top, name in limits if late <= top), "90+")
            expected[label] += round(Decimal(row["InvoiceAmount"]) * 100)
    aging = report.overall.aging[0]
    assert {b.label: b.amount_minor for b in aging.buckets if b.amount_minor} == dict(
        expected
    )
    first_issue = min(us_date(r["InvoiceDate"]) for r in rows)
    assert span is not None and span[0] == first_issue
    assert customers == len({r["customerID"] for r in rows})


# --- bank reconciliation time ---


def store_bank_line(
    engine: Engine,
    line: str,
    *,
    booked: date,
    outcome: str,
    reconciled_at: datetime,
    folios: str = "",
) -> None:
    """Commit one reconciled statement line as starter.py reconcile leaves it."""
    with session_scope(engine) as session:
        session.add(
            ReconciledMovement(
                tenant=TENANT,
                bank_transaction_id=f"TX-{line}",
                account="CL-001",
                booking_date=booked,
                value_date=booked,
                amount_minor=10_000,
                currency="CLP",
                direction="credit",
                outcome=outcome,
                invoice_numbers=folios,
                source_file="cartola.csv",
                place=f"row {line}",
                reconciled_by="exec-01",
                reconciled_at=reconciled_at,
            )
        )


def build_bank_lines(engine: Engine) -> None:
    """Lines of March 2026 and around it; each comment gives its days, worked out by hand."""
    for number, segment in (("K1", "alpha"), ("K2", "beta")):
        store_invoice(
            engine,
            number,
            issued=date(2026, 2, 1),
            due=date(2026, 3, 3),
            amount=50_000,
            segment=segment,
        )
    applied = partial(store_bank_line, engine, outcome="applied")
    same_day = local_noon(date(2026, 3, 2))
    applied("1", booked=date(2026, 3, 2), reconciled_at=same_day, folios="K1")  # 0
    # Booked on a Friday, reconciled on Monday: 3.
    monday = local_noon(date(2026, 3, 9))
    applied("2", booked=date(2026, 3, 6), reconciled_at=monday, folios="K1")
    # 01:30 UTC on the 11th is 22:30 of the 10th in Santiago: 1 day, not 2.
    late_evening = datetime(2026, 3, 11, 1, 30, tzinfo=UTC)
    applied("3", booked=date(2026, 3, 9), reconciled_at=late_evening, folios="K2")
    thursday = local_noon(date(2026, 3, 12))
    applied("4", booked=date(2026, 3, 10), reconciled_at=thursday, folios="K2")  # 2
    applied(
        "5",
        booked=date(2026, 3, 13),
        reconciled_at=local_noon(date(2026, 3, 20)),
        folios="K1 K2",  # a split credit: counts once, in each invoice's group
    )
    # Reconciled before the period and after the report date: neither counts.
    applied("6", booked=date(2026, 2, 25), reconciled_at=local_noon(date(2026, 2, 27)))
    applied("7", booked=date(2026, 3, 30), reconciled_at=local_noon(date(2026, 4, 1)))
    waiting = partial(store_bank_line, engine, reconciled_at=local_noon(AS_OF))
    waiting("8", booked=date(2026, 3, 2), outcome="unmatched")  # 29 days at AS_OF
    waiting("9", booked=date(2026, 3, 25), outcome="unmatched")  # 6 days
    waiting("10", booked=date(2026, 4, 2), outcome="unmatched")  # after AS_OF
    waiting("11", booked=date(2026, 1, 15), outcome="returned")  # not waiting
    waiting("12", booked=date(2026, 1, 15), outcome="skipped")


def test_reconciliation_time_runs_from_booking_date_to_the_local_reconciled_date(
    engine: Engine,
) -> None:
    build_bank_lines(engine)

    lines = kpis_of(engine, AS_OF, MARCH).overall.reconciliation

    # Days 0, 3, 1, 2 and 7: median 2; nine in ten within 7 (the 5th of 5 by rank).
    assert lines.applied == 5
    assert lines.median_days == 2
    assert lines.p90_days == 7
    assert (lines.unmatched_at_end, lines.oldest_unmatched_days) == (2, 29)


def test_reconciliation_figures_of_an_earlier_report_date_stop_at_it(
    engine: Engine,
) -> None:
    build_bank_lines(engine)

    lines = kpis_of(engine, date(2026, 3, 10), MARCH).overall.reconciliation

    # Lines 1 and 2 were reconciled by the 10th (0 and 3 days), line 3 on the 10th local.
    assert (lines.applied, lines.median_days, lines.p90_days) == (3, 1, 3)
    assert (lines.unmatched_at_end, lines.oldest_unmatched_days) == (1, 8)


def test_reconciled_lines_count_in_the_group_of_their_invoice_unmatched_ones_in_none(
    engine: Engine,
) -> None:
    build_bank_lines(engine)

    report = kpis_of(engine, AS_OF, MARCH, group_by="segment")

    groups = {g.key: g.figures.reconciliation for g in report.groups}
    # alpha (K1): 0, 3 and 7 days; beta (K2): 1, 2 and 7. The split line is in both.
    assert (groups["alpha"].applied, groups["alpha"].median_days) == (3, 3)
    assert (groups["beta"].applied, groups["beta"].median_days) == (3, 2)
    assert report.overall.reconciliation.applied == 5
    assert groups["beta"].unmatched_at_end == 0
    assert groups["alpha"].oldest_unmatched_days is None


def test_nine_in_ten_is_the_nearest_rank_a_line_actually_took() -> None:
    assert nearest_rank([5], 0.9) == 5
    assert nearest_rank(list(range(10, 0, -1)), 0.9) == 9
    assert nearest_rank([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12], 0.9) == 0
