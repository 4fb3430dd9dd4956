"""Replay a historical portfolio through the real workflows on the time-skipping server."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time as wall_clock
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from activities.replay import ReplayActivities, ReplayDayResult, ReplayDispute
from receivables.case import DisputeCategory, TaskOutcomeKind
from receivables.channels import MessageChannel
from receivables.devserver import start_time_skipping_environment
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.importer import import_portfolio
from receivables.jurisdictions import JurisdictionError, load_profile
from receivables.kpis import (
    KpiReport,
    compute_kpis,
    deciding_rule,
    portfolio_span,
)
from receivables.policy import load_policy_book
from receivables.replay_channels import (
    ProviderReplay,
    check_provider_replay,
    replay_channels,
)
from receivables.schema import migrate
from receivables.settings import Settings
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    as_utc,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask
from worker import build_worker
from workflows.replay import PortfolioReplayWorkflow, ReplayPlan

log = logging.getLogger(__name__)
REPLAY_TENANT = "replay"
REPLAY_WALL_LIMIT = timedelta(minutes=15)
# The Java test server does not advertise a capability newer servers have, so the SDK's
# core warns at every worker start that heartbeat details may be lost when an activity
# fails. Our activities heartbeat without details: nothing is lost, nothing to act on.
TEST_SERVER_CAPABILITY_WARNING = "activity_failure_include_heartbeat capability"
_replay_runtime: Runtime | None = None


class WithoutTestServerCapabilityWarning(logging.Filter):
    """Drops the core's warning about the test server's missing capability, only that."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one warning, True for every other record."""
        return TEST_SERVER_CAPABILITY_WARNING not in record.getMessage()


def replay_runtime() -> Runtime:
    """The SDK runtime of replays: the core's log through Python logging, less one warning.

    The default runtime prints the core's log to the console itself, where no filter can
    reach it; one runtime serves every replay of the process (each has its own threads).
    """
    global _replay_runtime
    if _replay_runtime is None:
        core_log = logging.getLogger("temporalio.core")
        core_log.addFilter(WithoutTestServerCapabilityWarning())
        logs = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=core_log),
        )
        _replay_runtime = Runtime(telemetry=TelemetryConfig(logging=logs))
    return _replay_runtime


class SimulationError(RuntimeError):
    """The portfolio cannot be replayed as given; the message says why and what to do."""


@dataclass
class SimulationSummary:
    """What a replay did; ``reminders_after_payment`` must be zero."""

    invoices: int
    cases_opened: int
    payments_reported: int
    segments: dict[str, int]
    reminders_sent: int
    reminders_by_step: dict[str, int]
    reminders_by_channel: dict[str, int]
    contacts_cancelled_at_send: int
    contacts_blocked: int
    contact_deferrals: int  # decisions that moved a contact to a lawful instant
    contact_deferrals_by_rule: dict[str, int]  # the rule each deferral names first
    paid_before_due: int
    paid_after_step: dict[str, int]
    reminders_after_payment: int
    replay_shift_days: int
    disputes_opened: int = 0
    disputes_resolved: int = 0
    tasks_opened: int = 0
    tasks_escalated: int = 0
    # Tasks a person closed with a payment promise: nobody works tasks in a replay, so this
    # stays 0 until the replay learns a promise path (a debtor's word before settlement).
    promises: int = 0
    # Reminders another invoice's statement named instead of a message of their own.
    contacts_consolidated: int = 0
    # Cases a stop rule ended (lawsuit, insolvency, cession, cash or free invoice), by rule.
    cases_stopped: int = 0
    cases_stopped_by_rule: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The summary as pretty JSON, keys as documented in the README."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    def to_text(self) -> str:
        """The summary as a few lines for the terminal."""

        def top(counter: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))

        return "\n".join(
            [
                f"invoices replayed        {self.invoices} (segments: {top(self.segments)})",
                f"reminders sent           {self.reminders_sent}",
                f"  by step                {in_timeline_order(self.reminders_by_step)}",
                f"  by channel             {top(self.reminders_by_channel)}",
                f"named in a statement     {self.contacts_consolidated}",
                f"cancelled at send time   {self.contacts_cancelled_at_send}",
                f"blocked (no contact)     {self.contacts_blocked}",
                f"cases stopped by a rule  {self.cases_stopped}"
                + (
                    f" ({top(self.cases_stopped_by_rule)})"
                    if self.cases_stopped
                    else ""
                ),
                f"deferred by a rule       {self.contact_deferrals} times"
                + (
                    f" ({top(self.contact_deferrals_by_rule)})"
                    if self.contact_deferrals
                    else ""
                ),
                f"disputes opened/ended    {self.disputes_opened} / {self.disputes_resolved}",
                f"human tasks opened       {self.tasks_opened} "
                f"({self.tasks_escalated} escalated)",
                f"payment promises         {self.promises}",
                f"paid on or before due    {self.paid_before_due}",
                f"paid after step          {top(self.paid_after_step)}",
                f"reminders after payment  {self.reminders_after_payment}",
                f"wall time                {self.wall_seconds:.1f} s",
                *(f"note: {note}" for note in self.notes),
            ]
        )


_STEP_OFFSET = re.compile(r"([+-]\d+)(?:#(\d+))?")


def timeline_position(step_id: str) -> tuple[float, int, str]:
    """Where a step falls on the dunning timeline: ``R-10`` before ``R-1``, ``R+7#2`` last.

    Steps whose id names no offset (a task step called ``CALL``) come after the others.
    """
    found = _STEP_OFFSET.search(step_id.partition("@")[0])
    if found is None:
        return (float("inf"), 0, step_id)
    return (int(found.group(1)), int(found.group(2) or 1), step_id)


def in_timeline_order(by_step: dict[str, int]) -> str:
    """Counts by step, earliest step first: ``R-7 3, R-1 5, R+1 4``."""
    ordered = sorted(by_step.items(), key=lambda item: timeline_position(item[0]))
    return ", ".join(f"{step} {count}" for step, count in ordered)


def shift_into_future(engine: Engine, tenant: str, today: date) -> int:
    """Move every date by whole weeks so the replay starts tomorrow, and reopen the invoices.

    Whole weeks keep each date's weekday, which contact rules care about. The time-skipping
    server's clock starts at the real present and only moves forward.
    """
    with session_scope(engine) as session:
        invoices = session.exec(select(Invoice).where(Invoice.tenant == tenant)).all()
        if not invoices:
            raise SimulationError("the portfolio has no invoices to replay")
        first = min(i.issue_date for i in invoices)
        weeks = ((today - first).days // 7) + 1
        shift = timedelta(weeks=weeks)
        for invoice in invoices:
            invoice.issue_date += shift
            invoice.due_date = invoice.due_date + shift if invoice.due_date else None
            invoice.settled_date = (
                invoice.settled_date + shift if invoice.settled_date else None
            )
            if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.OPEN):
                invoice.status = InvoiceStatus.OPEN
                invoice.balance_minor = invoice.amount_minor
            session.add(invoice)
    return shift.days


@dataclass(frozen=True)
class DisputeTiming:
    """When a replayed dispute opens after issue and how long before settlement it ends."""

    opens_after_days: int = 5
    resolves_days_before: int = 3

    def __post_init__(self) -> None:
        if self.opens_after_days < 0 or self.resolves_days_before < 0:
            raise SimulationError(
                "dispute offsets are whole days, zero or more; got "
                f"{self.opens_after_days} after issue, "
                f"{self.resolves_days_before} before settlement"
            )


def withhold_disputes(
    engine: Engine, tenant: str, timing: DisputeTiming
) -> list[ReplayDispute]:
    """Clear the imported dispute marks and plan each as a dispute raised during the replay."""
    # A case opened in dispute would be silent from its first day, while the portfolio only
    # says the invoice was contested at some point: the replay raises it after issue instead.
    with session_scope(engine) as session:
        marked = session.exec(
            select(Invoice).where(
                Invoice.tenant == tenant,
                Invoice.status == InvoiceStatus.OPEN,
                col(Invoice.disputed).is_(True),
            )
        ).all()
        disputes = []
        for invoice in marked:
            if (
                invoice.settled_date is not None
                and invoice.settled_date <= invoice.issue_date
            ):
                # Paid on its issue day: no evening before the money to raise it in, so the
                # case opens in dispute, as it does with --no-replay-disputes.
                log.info(
                    "%s settled on issue: opened in dispute", invoice.invoice_number
                )
                continue
            invoice.disputed = False
            session.add(invoice)
            disputes.append(
                plan_dispute(
                    invoice.invoice_number,
                    invoice.amount_minor,
                    issued=invoice.issue_date,
                    settled=invoice.settled_date,
                    timing=timing,
                )
            )
    return sorted(disputes, key=lambda d: (d.opens_on, d.invoice_number))


def plan_dispute(
    invoice_number: str,
    amount_minor: int,
    *,
    issued: date,
    settled: date | None,
    timing: DisputeTiming,
) -> ReplayDispute:
    """The days one replayed dispute opens and ends, always before its invoice is paid."""
    # The replay raises disputes in the evening and ends them in the morning, before the day's
    # payments: a dispute raised on day D can end from the morning of D + 1.
    opens_on = issued + timedelta(days=timing.opens_after_days)
    resolves_on = None
    if settled is not None:
        # Raised by the evening before settlement at the latest (the issue day if that is it).
        opens_on = max(issued, min(opens_on, settled - timedelta(days=1)))
        resolves_on = settled - timedelta(days=timing.resolves_days_before)
        if resolves_on <= opens_on:
            # Too close to settle apart: rejected on the settlement morning, before the
            # money arrives.
            resolves_on = settled
    return ReplayDispute(
        invoice_number,
        amount_minor,
        dispute_category(invoice_number),
        opens_on,
        resolves_on,
    )


def dispute_category(invoice_number: str) -> DisputeCategory:
    """A category chosen by the invoice number alone, the same on every replay."""
    # crc32, not hash(): Python salts str hashes per process.
    categories = list(DisputeCategory)
    return categories[zlib.crc32(invoice_number.encode()) % len(categories)]


def event_days(
    engine: Engine, tenant: str, disputes: Sequence[ReplayDispute] = ()
) -> list[date]:
    """Every day on which an invoice is issued or settled or a dispute opens or ends."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(col(Invoice.issue_date), col(Invoice.settled_date)).where(
                Invoice.tenant == tenant, Invoice.status == InvoiceStatus.OPEN
            )
        ).all()
    days = {issued for issued, _ in rows} | {settled for _, settled in rows if settled}
    days |= {d.opens_on for d in disputes}
    days |= {d.resolves_on for d in disputes if d.resolves_on is not None}
    return sorted(days)


async def simulate(
    portfolio: Path,
    mapping: str,
    *,
    settings: Settings,
    work_dir: Path,
    jurisdiction: str | None = None,
    disputes: DisputeTiming | None = None,
    providers: ProviderReplay | None = None,
) -> SimulationSummary:
    """Replay a portfolio through real cases, under ``jurisdiction``'s rules if one is given.

    Reminders go to the replay's outbox unless ``providers`` names the providers to send
    through; those must be on this machine unless the caller allowed otherwise.
    """
    started = wall_clock.perf_counter()
    _check_jurisdiction(jurisdiction)
    endpoints = check_provider_replay(providers) if providers else []
    engine = _import_into_scratch(portfolio, mapping, settings, work_dir)
    env = await start_time_skipping_environment(runtime=replay_runtime())
    try:
        today = (await env.get_current_time()).date()
        shift = shift_into_future(engine, REPLAY_TENANT, today)
        planned = withhold_disputes(engine, REPLAY_TENANT, disputes) if disputes else []
        channels = replay_channels(engine, providers)
        totals = await _drive(
            env.client, engine, settings, planned, jurisdiction, channels
        )
    finally:
        await env.shutdown()
    summary = summarize(engine, REPLAY_TENANT, totals, shift)
    summary.wall_seconds = round(wall_clock.perf_counter() - started, 1)
    if jurisdiction is not None:
        summary.notes.append(f"every policy replayed under the {jurisdiction} rules")
    for endpoint in endpoints:
        summary.notes.append(f"sent through {endpoint.provider} at {endpoint.url}")
    engine.dispose()
    return summary


def _check_jurisdiction(jurisdiction: str | None) -> None:
    # Fail before the import and the server start, not on the first contact of the replay.
    if jurisdiction is None:
        return
    try:
        load_profile(jurisdiction)
    except JurisdictionError as error:
        raise SimulationError(
            f"cannot replay under jurisdiction {jurisdiction!r}: {error}"
        ) from None


def _import_into_scratch(
    portfolio: Path, mapping: str, settings: Settings, work_dir: Path
) -> Engine:
    url = f"sqlite:///{work_dir / 'replay.sqlite'}"
    migrate(url)
    report = import_portfolio(
        portfolio,
        mapping,
        database_url=url,
        tenant=REPLAY_TENANT,
        policies_dir=settings.policies_dir,
    )
    if report.rejected_rows:
        raise SimulationError(
            f"{portfolio} has {len(report.rejected_rows)} rejected rows; "
            f"fix them or import with --accept-valid first:\n{report.summary()}"
        )
    engine = make_engine(url)
    sync_governance(engine, REPLAY_TENANT, settings.policies_dir / GOVERNANCE_FILE)
    return engine


def replay_kpis(work_dir: Path) -> KpiReport:
    """The KPIs of the replay left in ``work_dir``, over the whole replayed span."""
    engine = make_engine(f"sqlite:///{work_dir / 'replay.sqlite'}")
    try:
        span = portfolio_span(engine, REPLAY_TENANT)
        if span is None:
            raise SimulationError("the replay store is empty: run the replay first")
        return compute_kpis(engine, tenant=REPLAY_TENANT, as_of=span[1], period=span)
    finally:
        engine.dispose()


async def _drive(
    client: Client,
    engine: Engine,
    settings: Settings,
    disputes: list[ReplayDispute],
    jurisdiction: str | None,
    channels: dict[str, MessageChannel],
) -> ReplayDayResult:
    queue = f"replay-{uuid.uuid4().hex[:8]}"
    book = load_policy_book(settings.policies_dir)
    replay = ReplayActivities(client, engine, book)
    worker = build_worker(
        client,
        engine,
        settings,
        task_queue=queue,
        channels=channels,
        extra_workflows=(PortfolioReplayWorkflow,),
        extra_activities=(replay.replay_day, replay.raise_disputes),
    )
    plan = ReplayPlan(
        tenant=REPLAY_TENANT,
        days=event_days(engine, REPLAY_TENANT, disputes),
        time_zone=settings_time_zone(book),
        case_task_queue=queue,
        disputes=disputes,
        jurisdiction=jurisdiction,
    )
    print(
        f"replaying {len(plan.days)} event days from {plan.days[0]} to {plan.days[-1]} "
        f"with {len(disputes)} disputes (dates moved forward by whole weeks); "
        "this takes a few minutes",
        flush=True,
    )
    async with worker:
        running = client.execute_workflow(
            PortfolioReplayWorkflow.run, plan, id=f"replay/{queue}", task_queue=queue
        )
        try:
            return await asyncio.wait_for(
                running, timeout=REPLAY_WALL_LIMIT.total_seconds()
            )
        except TimeoutError:
            # Limit: the Java time-skipping server stops its clock for good when it refuses
            # a workflow task's completion (a cancelled timer that fired during the task is
            # the known case; the replay's timing avoids it). Fail loudly instead of hanging.
            raise SimulationError(
                f"the replay made no progress within {REPLAY_WALL_LIMIT}; the time-skipping "
                "test server stopped advancing (look for 'invalid history builder state' "
                "above). Run the command again, or replay a smaller slice of the portfolio"
            ) from None


def settings_time_zone(book: object) -> str:
    """The replay's events land at 07:30 in the creditor's zone (the policies' default)."""
    policies = getattr(book, "policies", {})
    zones = {policy.time_zone for policy in policies.values()}
    return sorted(zones)[0] if zones else "America/Santiago"


def summarize(
    engine: Engine, tenant: str, totals: ReplayDayResult, shift_days: int
) -> SimulationSummary:
    """Count what the replay did from the store, the contact ledger and the task list."""
    with session_scope(engine) as session:
        invoices = session.exec(select(Invoice).where(Invoice.tenant == tenant)).all()
        entries = session.exec(
            select(ContactLedgerEntry).where(ContactLedgerEntry.tenant == tenant)
        ).all()
        payments = session.exec(select(Payment).where(Payment.tenant == tenant)).all()
        deferrals = _deferral_traces(session, tenant)
        tasks = session.exec(select(HumanTask).where(HumanTask.tenant == tenant)).all()

    paid_at = {p.invoice_number: as_utc(p.received_at) for p in payments}
    stops = _stops_by_invoice(entries)
    sent = [e for e in entries if e.status == ContactStatus.SENT]
    after_payment = [
        e
        for e in sent
        if e.invoice_number in paid_at
        and e.decided_at is not None
        and as_utc(e.decided_at) > paid_at[e.invoice_number]
    ]
    return SimulationSummary(
        invoices=len(invoices),
        cases_opened=totals.cases_opened,
        payments_reported=totals.payments_reported,
        segments=dict(Counter(i.segment or "(none)" for i in invoices)),
        reminders_sent=len(sent),
        reminders_by_step=dict(Counter(e.step_id for e in sent)),
        reminders_by_channel=dict(Counter(e.channel for e in sent)),
        contacts_cancelled_at_send=sum(
            e.status == ContactStatus.CANCELLED and not _denied(e) for e in entries
        ),
        contacts_blocked=sum(e.status == ContactStatus.BLOCKED for e in entries),
        contact_deferrals=len(deferrals),
        contact_deferrals_by_rule=dict(Counter(map(deciding_rule, deferrals))),
        paid_before_due=sum(
            1
            for i in invoices
            if i.settled_date and i.due_date and i.settled_date <= i.due_date
        ),
        paid_after_step=_last_step_before_payment(sent, paid_at),
        reminders_after_payment=len(after_payment),
        replay_shift_days=shift_days,
        disputes_opened=totals.disputes_opened,
        disputes_resolved=totals.disputes_resolved,
        tasks_opened=len(tasks),
        tasks_escalated=sum(t.escalated_at is not None for t in tasks),
        promises=sum(t.outcome_kind == TaskOutcomeKind.PAYMENT_PROMISE for t in tasks),
        contacts_consolidated=sum(
            e.status == ContactStatus.CONSOLIDATED for e in entries
        ),
        cases_stopped=len(stops),
        cases_stopped_by_rule=dict(Counter(stops.values())),
    )


def _denied(entry: ContactLedgerEntry) -> bool:
    """A contact a stop rule denied: the gate writes its trace, which starts with the verdict."""
    return entry.status == ContactStatus.CANCELLED and (entry.reason or "").startswith(
        "deny"
    )


def _stops_by_invoice(entries: Sequence[ContactLedgerEntry]) -> dict[str, str]:
    """The rule that stopped each stopped case: the first denial its ledger records."""
    stops: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e.id or 0):
        if _denied(entry):
            stops.setdefault(entry.invoice_number, deciding_rule(entry.reason or ""))
    return stops


def _deferral_traces(session: Session, tenant: str) -> list[str]:
    """The audit trace of every decision that deferred one of the tenant's contacts."""
    details = session.exec(
        select(ContactAttempt.detail)
        .join(ContactLedgerEntry)
        .where(ContactLedgerEntry.tenant == tenant, ContactAttempt.outcome == "defer")
    ).all()
    return [detail or "" for detail in details]


def _last_step_before_payment(
    sent: list[ContactLedgerEntry], paid_at: dict[str, datetime]
) -> dict[str, int]:
    last: dict[str, tuple[datetime, str]] = {}
    for entry in sent:
        if entry.decided_at is None:
            continue
        at = as_utc(entry.decided_at)
        if entry.invoice_number in last and last[entry.invoice_number][0] > at:
            continue
        last[entry.invoice_number] = (at, entry.step_id)
    counts = Counter(last[n][1] if n in last else "no reminder" for n in paid_at)
    return dict(counts)
