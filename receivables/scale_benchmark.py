"""The scale benchmark: the IBM portfolio replicated to N invoices, imported, opened, reminded."""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.client import Client

from receivables.benchmark import (
    TASK_QUEUE,
    _Bench,
    _free_loopback_port,
    _fresh_store,
    _load_average,
    _rss_kib,
    _server_version,
    _whole_second_after,
)
from receivables.cases import connect, open_cases_without_one
from receivables.devserver import DB_FILE_NAME, DevServerConfig, start_dev_server
from receivables.importer import import_portfolio
from receivables.mapping import load_mapping
from receivables.planning import spread_offset
from receivables.policy import Policy, PolicyBook, load_policy_book
from receivables.settings import PROJECT_ROOT, Settings, TemporalSettings
from receivables.store import OutboxMessage, make_engine, session_scope

logger = logging.getLogger(__name__)

IBM_PORTFOLIO = (
    PROJECT_ROOT.parent / "shared" / "data" / "ar" / "ibm_accounts_receivable.csv"
)
MAPPING = "ibm-ar"
# Each size took about N / 7 s on a 2-core machine; see docs/scaling.md before going larger.
DEFAULT_SIZES = (2_466, 5_000)
DEFAULT_SPREAD_MINUTES = 5
TRIVIAL_RUNS = 300
# One tenant per burst: the same portfolio reminded at one instant, then over a window.
UNSPREAD_TENANT, SPREAD_TENANT = "scale", "scale-spread"
BURST_POLICY, BURST_STEP = "scale-burst", "BURST"
# Every replicated invoice falls due this many days ahead, so each one is open.
DAYS_TO_DUE = 30
# The burst instant must come after the last case opened. Cases open as the operator's
# open-cases command opens them (a bounded number at once); the first burst is placed
# assuming that is this much slower than the trivial starts, the second from the measured
# rate. Each case's first workflow task runs on the same worker while cases open, hence
# slower; an instant placed too far ahead only costs idle wall time.
ASSUMED_START_SLOWDOWN = 2.0
START_SAFETY = 1.5
BURST_MARGIN = timedelta(seconds=3)
# How slowly the sends may trickle in before the wait gives up and reports a partial burst.
# Limit: a step the workflow finds more than 30 minutes late outside usual contact
# hours waits for the next day's send time, so a burst that drains longer than that in
# the debtors' evening shows as a partial burst; run large sizes in their daytime.
SLOWEST_SENDS_PER_SECOND = 2.0
POLL_SECONDS = 0.5
PROGRESS_SECONDS = 60.0


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """One segment's reminders, all due in the same minute or spread over a window."""

    spread_minutes: int
    cases: int
    sends: int
    # Seconds from the burst instant until the last case was open; below zero, some
    # cases opened after their step was due and the burst figures mix in start time.
    slack_seconds: float
    span_seconds: float  # first outbox row to the last
    drain_seconds: float  # burst instant to the last outbox row
    median_lateness_seconds: float  # each send after its own (spread) instant
    max_lateness_seconds: float

    @property
    def sends_per_second(self) -> float | None:
        """Sends over the time from the first outbox row to the last."""
        return self.sends / self.span_seconds if self.span_seconds > 0 else None


@dataclass(frozen=True)
class SizeFigures:
    """Everything measured for one portfolio size, on its own fresh dev server."""

    invoices: int  # per tenant; each size imports and opens the portfolio twice
    rows_imported: int
    import_seconds: float
    cases_opened: int
    start_seconds: float
    trivial_starts_per_second: float
    trivial_completions_per_second: float
    unspread: Burst
    spread: Burst | None  # None when the size was run with the unspread burst only
    cached_cases: int
    rss_before_kib: int | None
    rss_after_kib: int | None
    store_bytes: int
    server_db_bytes: int
    load_before: float | None
    load_after: float | None
    seconds: float

    @property
    def import_rows_per_second(self) -> float:
        """Rows written per second by ``import_portfolio``."""
        return self.rows_imported / self.import_seconds

    @property
    def case_starts_per_second(self) -> float:
        """Cases opened per second by ``open_cases_without_one``."""
        return self.cases_opened / self.start_seconds

    @property
    def kib_per_cached_case(self) -> float | None:
        """Growth of the worker's resident memory per cached case, in KiB."""
        if self.rss_before_kib is None or self.rss_after_kib is None:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.cached_cases

    @property
    def store_bytes_per_case(self) -> float:
        """Store file size per opened case (invoice, customer share, ledger, outbox)."""
        return self.store_bytes / self.cases_opened

    @property
    def server_bytes_per_case(self) -> float:
        """Dev server SQLite size per opened case (history and visibility)."""
        return self.server_db_bytes / self.cases_opened


@dataclass(frozen=True)
class ScaleReport:
    """The figures of every size, and the machine and server they were measured on."""

    sizes: tuple[SizeFigures, ...]
    spread_minutes: int
    server_version: str
    python_version: str
    cpu_count: int
    total_seconds: float

    def rows(self) -> list[tuple[str, list[str]]]:
        """One row per figure, one value per size."""
        rows = [(label, [cell(s) for s in self.sizes]) for label, cell in _CELLS]
        for label, pick in (
            ("no spread", _unspread),
            (f"spread {self.spread_minutes} min", _spread),
        ):
            rows += [
                (f"Burst, {label}: {name}", [_cell(pick(s), cell) for s in self.sizes])
                for name, cell in _BURST_CELLS
            ]
        return rows

    def to_markdown(self) -> str:
        """The figures as a Markdown table, sizes as columns, then the machine."""
        sizes = " | ".join(f"N = {s.invoices:,}" for s in self.sizes)
        lines = [f"| Figure | {sizes} |", "|---" * (len(self.sizes) + 1) + "|"]
        lines += [f"| {label} | {' | '.join(cells)} |" for label, cells in self.rows()]
        lines += [
            "",
            f"Temporal server {self.server_version}; Python {self.python_version}; "
            f"{self.cpu_count} CPUs; total {self.total_seconds:.0f} s.",
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Every measured and derived figure, ready for ``json.dumps``."""
        return {
            **asdict(self),
            "derived": [_derived(size) for size in self.sizes],
        }


def _derived(size: SizeFigures) -> dict[str, float | None]:
    return {
        "invoices": size.invoices,
        "import_rows_per_second": size.import_rows_per_second,
        "case_starts_per_second": size.case_starts_per_second,
        "kib_per_cached_case": size.kib_per_cached_case,
        "store_bytes_per_case": size.store_bytes_per_case,
        "server_bytes_per_case": size.server_bytes_per_case,
        "unspread_sends_per_second": size.unspread.sends_per_second,
        "spread_sends_per_second": size.spread.sends_per_second
        if size.spread
        else None,
    }


def _unspread(size: SizeFigures) -> Burst:
    return size.unspread


def _spread(size: SizeFigures) -> Burst | None:
    return size.spread


def _cell(burst: Burst | None, cell: Callable[[Burst], str]) -> str:
    return "not run" if burst is None else cell(burst)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _load(size: SizeFigures) -> str:
    if size.load_before is None or size.load_after is None:
        return "n/a"
    return f"{size.load_before:.2f} → {size.load_after:.2f}"


def _rss(size: SizeFigures) -> str:
    return f"{size.rss_before_kib} → {size.rss_after_kib} ({size.cached_cases} cached)"


def _lateness(burst: Burst) -> str:
    return f"{burst.median_lateness_seconds:.1f} / {burst.max_lateness_seconds:.1f} s"


_CELLS = (
    ("Import rows/s", lambda s: _rate(s.import_rows_per_second)),
    (
        "Case starts/s (open-cases)",
        lambda s: _rate(s.case_starts_per_second),
    ),
    ("Trivial workflow starts/s", lambda s: _rate(s.trivial_starts_per_second)),
    (
        "Trivial workflow + activity/s",
        lambda s: _rate(s.trivial_completions_per_second),
    ),
    ("Worker RSS, KiB, before → after", _rss),
    ("Worker KiB per cached case", lambda s: _rate(s.kib_per_cached_case)),
    ("Store SQLite file", lambda s: _mib(s.store_bytes)),
    ("Store bytes per case", lambda s: f"{s.store_bytes_per_case:,.0f}"),
    ("Dev server SQLite file", lambda s: _mib(s.server_db_bytes)),
    ("Dev server bytes per case", lambda s: f"{s.server_bytes_per_case:,.0f}"),
    ("Cases opened (every tenant)", lambda s: f"{s.cases_opened:,}"),
    ("Load average (1 min), start → end", _load),
    ("Wall time", lambda s: f"{s.seconds:.0f} s"),
)
_BURST_CELLS = (
    ("sends", lambda b: f"{b.sends:,} of {b.cases:,}"),
    ("sends/s first → last row", lambda b: _rate(b.sends_per_second)),
    ("last send after the instant", lambda b: f"{b.drain_seconds:.1f} s"),
    ("median / max lateness", _lateness),
    ("slack before the instant", lambda b: f"{b.slack_seconds:.1f} s"),
)


# -- the portfolio ---------------------------------------------------------------------


def _us_date(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


def _replicated_row(row: dict[str, str], copy: int, due: date) -> dict[str, str]:
    """One IBM row as copy ``copy``: new numbers, open, due on ``due``, not disputed."""
    issued = datetime.strptime(row["InvoiceDate"], "%m/%d/%Y").date()
    terms = datetime.strptime(row["DueDate"], "%m/%d/%Y").date() - issued
    return {
        **row,
        "invoiceNumber": f"{row['invoiceNumber']}-{copy}",
        "customerID": f"{row['customerID']}-{copy}",
        "InvoiceDate": _us_date(due - terms),
        "DueDate": _us_date(due),
        # Unsettled so that the invoice is open; undisputed, since a disputed case is
        # silent and would leave its step unsent.
        "SettledDate": "",
        "Disputed": "No",
        "DaysToSettle": "",
        "DaysLate": "",
    }


def write_replica(source: Path, invoices: int, target: Path, *, due: date) -> Path:
    """Write ``invoices`` rows of the IBM file, repeated with new numbers, in its format."""
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = list(reader.fieldnames or ()), list(reader)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for index in range(invoices):
            copy, position = divmod(index, len(rows))
            writer.writerow(_replicated_row(rows[position], copy, due))
    return target


def burst_policy(at: datetime, *, due: date, zone: str, spread_minutes: int) -> Policy:
    """A policy whose one e-mail step falls at ``at`` for an invoice due on ``due``."""
    local = at.astimezone(ZoneInfo(zone))
    return Policy.model_validate(
        {
            "name": BURST_POLICY,
            "version": 1,
            "description": "One reminder for a whole segment at once, for the benchmark",
            "time_zone": zone,
            "send_spread_minutes": spread_minutes,
            "steps": [
                {
                    "id": BURST_STEP,
                    "offset_days": (local.date() - due).days,
                    "send_time": local.time(),
                    "channel": "email",
                    "template": "courtesy-before-due",
                }
            ],
        }
    )


def _policies_folder(folder: Path, policies_dir: Path, placeholder: Policy) -> Path:
    """A policies folder with the IBM mapping and one segment on the burst policy."""
    (folder / "mappings").mkdir(parents=True, exist_ok=True)
    mapping = f"{MAPPING}.yaml"
    shutil.copyfile(policies_dir / "mappings" / mapping, folder / "mappings" / mapping)
    segments = {
        "version": 1,
        "rules": [],
        "default_segment": "scale",
        "default_policy": BURST_POLICY,
    }
    (folder / "segments.yaml").write_text(yaml.safe_dump(segments), encoding="utf-8")
    # Invoices pin the policy by name and version; the step's instant is chosen later,
    # once it is known how long opening the cases takes.
    policy = yaml.safe_dump(placeholder.model_dump(mode="json", exclude_defaults=True))
    (folder / f"{BURST_POLICY}.yaml").write_text(policy, encoding="utf-8")
    return folder


def _file_bytes(path: Path) -> int:
    """A SQLite file's size with its write-ahead log."""
    return sum(
        candidate.stat().st_size
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


# -- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    spread_minutes: int
    spread_burst: bool
    trivial_runs: int
    source: Path
    policies_dir: Path


async def run_scale_benchmark(
    *,
    sizes: Sequence[int],
    work_dir: Path,
    spread_minutes: int = DEFAULT_SPREAD_MINUTES,
    trivial_runs: int = TRIVIAL_RUNS,
    source: Path = IBM_PORTFOLIO,
    policies_dir: Path | None = None,
    spread_burst: bool = True,
) -> ScaleReport:
    """Measure every size in turn, each on a fresh dev server and store in ``work_dir``.

    Without ``spread_burst`` only the first tenant is imported, opened and reminded: the
    spread figures are not measured, and a size takes about half as long.
    """
    if not sizes or min(sizes) < 1:
        raise ValueError(
            f"sizes must be whole numbers of invoices above 0, not {sizes}"
        )
    began = time.perf_counter()
    options = _Options(
        spread_minutes=spread_minutes,
        spread_burst=spread_burst,
        trivial_runs=trivial_runs,
        source=source,
        policies_dir=policies_dir or Settings().policies_dir,
    )
    figures = []
    for invoices in sizes:
        figures.append(await _run_size(invoices, work_dir / f"n{invoices}", options))
        # Every figure of the size, so a run stopped before the last size loses none.
        logger.info(
            "scale benchmark: %s invoices measured: %s",
            invoices,
            json.dumps({**asdict(figures[-1]), **_derived(figures[-1])}),
        )
    return ScaleReport(
        sizes=tuple(figures),
        spread_minutes=spread_minutes,
        server_version=_server_version(),
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
        total_seconds=time.perf_counter() - began,
    )


async def _run_size(invoices: int, folder: Path, options: _Options) -> SizeFigures:
    began, load_before = time.perf_counter(), _load_average()
    url = _fresh_store(folder)
    portfolio = _Portfolio.imported(invoices, folder, url, options)
    engine = make_engine(url)
    server = await asyncio.to_thread(
        start_dev_server,
        DevServerConfig(data_dir=folder, port=_free_loopback_port(), ui=False),
    )
    try:
        client = await connect(TemporalSettings(address=server.address))
        measured = await _Bursts(client, engine, portfolio).measure(options)
    finally:
        await asyncio.to_thread(server.stop)
        engine.dispose()
    return SizeFigures(
        invoices=invoices,
        rows_imported=portfolio.rows,
        import_seconds=portfolio.import_seconds,
        **measured,
        store_bytes=_file_bytes(Path(url.removeprefix("sqlite:///"))),
        server_db_bytes=_file_bytes(folder / DB_FILE_NAME),
        load_before=load_before,
        load_after=_load_average(),
        seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class _Portfolio:
    """The replicated portfolio, imported once per tenant, and where its debtors live."""

    book: PolicyBook
    numbers: list[str]  # every tenant holds the same invoice numbers
    rows: int
    import_seconds: float
    zone: str
    due: date

    @classmethod
    def imported(
        cls, invoices: int, folder: Path, url: str, options: _Options
    ) -> _Portfolio:
        """Write the replica and its policies, then import it under both tenants."""
        # The replicated mapping names a default zone; without one, plan in Santiago's.
        zone = (
            load_mapping(options.policies_dir, MAPPING).defaults.time_zone
            or "America/Santiago"
        )
        due = datetime.now(ZoneInfo(zone)).date() + timedelta(days=DAYS_TO_DUE)
        placeholder = burst_policy(
            datetime.now(UTC), due=due, zone=zone, spread_minutes=0
        )
        policies = _policies_folder(
            folder / "policies", options.policies_dir, placeholder
        )
        replica = write_replica(
            options.source, invoices, folder / "portfolio.csv", due=due
        )
        tenants = (UNSPREAD_TENANT, SPREAD_TENANT)[: 2 if options.spread_burst else 1]
        began, numbers = time.perf_counter(), []
        for tenant in tenants:
            report = import_portfolio(
                replica, MAPPING, database_url=url, tenant=tenant, policies_dir=policies
            )
            if len(report.accepted) != invoices:
                raise RuntimeError(
                    f"the replica did not import whole: {report.summary()}"
                )
            numbers = report.accepted
        return cls(
            book=load_policy_book(policies),
            numbers=numbers,
            rows=len(tenants) * invoices,
            import_seconds=time.perf_counter() - began,
            zone=zone,
            due=due,
        )


@dataclass(frozen=True)
class _Opened:
    cases: int
    seconds: float
    slack_seconds: float


class _Bursts:
    """One worker on a fresh dev server, opening each tenant's cases and timing its burst."""

    def __init__(self, client: Client, engine: Engine, portfolio: _Portfolio) -> None:
        self.engine, self.portfolio = engine, portfolio
        # The plain benchmark's worker (every channel to the outbox) and trivial ceiling.
        self.bench = _Bench(client, engine)

    async def measure(self, options: _Options) -> dict[str, Any]:
        """The trivial ceiling, then both bursts, with the worker's memory around the first."""
        async with self.bench.worker:
            starts, completions = await self.bench.trivial(options.trivial_runs)
            before = _settled_rss()
            # A first guess; the second burst is placed from the rate the first measured.
            unspread, first = await self.burst(
                UNSPREAD_TENANT, 0, starts / ASSUMED_START_SLOWDOWN
            )
            # Every case just ran its step, so the cache holds as many as it can.
            after = _settled_rss()
            spread, second = None, _Opened(0, 0.0, 0.0)
            if options.spread_burst:
                spread, second = await self.burst(
                    SPREAD_TENANT, options.spread_minutes, first.cases / first.seconds
                )
        capacity = int(self.bench.worker.config().get("max_cached_workflows", 0))
        return {
            "cases_opened": first.cases + second.cases,
            "start_seconds": first.seconds + second.seconds,
            "trivial_starts_per_second": starts,
            "trivial_completions_per_second": completions,
            "unspread": unspread,
            "spread": spread,
            "cached_cases": min(first.cases, capacity),
            "rss_before_kib": before,
            "rss_after_kib": after,
        }

    async def burst(
        self, tenant: str, spread_minutes: int, start_rate: float
    ) -> tuple[Burst, _Opened]:
        """Open a tenant's cases with their step one instant ahead; wait for every send."""
        cases = len(self.portfolio.numbers)
        opening = timedelta(seconds=START_SAFETY * cases / start_rate) + BURST_MARGIN
        at = _whole_second_after(datetime.now(UTC) + opening)
        policy = burst_policy(
            at,
            due=self.portfolio.due,
            zone=self.portfolio.zone,
            spread_minutes=spread_minutes,
        )
        book = PolicyBook({BURST_POLICY: policy}, self.portfolio.book.segmentation)
        began = time.time()
        outcome = await open_cases_without_one(
            self.bench.client, self.engine, book, tenant, task_queue=TASK_QUEUE
        )
        opened = _Opened(
            outcome["opened"], time.time() - began, at.timestamp() - time.time()
        )
        logger.info(
            "%s: %s cases opened at %.1f/s, %.1f s before the burst instant",
            tenant,
            opened.cases,
            opened.cases / opened.seconds,
            opened.slack_seconds,
        )
        allowance = (
            (at - datetime.now(UTC)).total_seconds()
            + 60 * spread_minutes
            + cases / SLOWEST_SENDS_PER_SECOND
        )
        await self._until_sent(tenant, cases, allowance)
        return self._burst(tenant, at, spread_minutes, opened), opened

    async def _until_sent(self, tenant: str, cases: int, allowance: float) -> None:
        deadline = time.monotonic() + allowance
        next_progress = time.monotonic() + PROGRESS_SECONDS
        while (sent := self._sent_count(tenant)) < cases:
            if time.monotonic() >= deadline:
                logger.warning(
                    "burst of %s gave up: %s of %s sent", tenant, sent, cases
                )
                return
            if time.monotonic() >= next_progress:
                logger.info("burst of %s: %s of %s sent", tenant, sent, cases)
                next_progress += PROGRESS_SECONDS
            await asyncio.sleep(POLL_SECONDS)

    def _sent_count(self, tenant: str) -> int:
        # Counted in SQL: the worker shares this event loop, and reading every row twice a
        # second would slow the sends being measured as the outbox grows.
        with session_scope(self.engine) as session:
            return session.exec(
                select(func.count()).where(
                    OutboxMessage.tenant == tenant, OutboxMessage.step_id == BURST_STEP
                )
            ).one()

    def _sent(self, tenant: str) -> list[tuple[str, datetime]]:
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(OutboxMessage.invoice_number, OutboxMessage.created_at).where(
                    OutboxMessage.tenant == tenant, OutboxMessage.step_id == BURST_STEP
                )
            ).all()
        # SQLite hands back naive datetimes; the store writes them in UTC.
        return [(number, at.replace(tzinfo=at.tzinfo or UTC)) for number, at in rows]

    def _burst(
        self, tenant: str, at: datetime, spread_minutes: int, opened: _Opened
    ) -> Burst:
        sent = self._sent(tenant)
        times = sorted(when for _, when in sent) or [at]
        # The workflow spreads by invoice number; each send is measured from its own slot.
        lateness = [
            (when - at - spread_offset(number, spread_minutes)).total_seconds()
            for number, when in sent
        ] or [0.0]
        return Burst(
            spread_minutes=spread_minutes,
            cases=opened.cases,
            sends=len(sent),
            slack_seconds=opened.slack_seconds,
            span_seconds=(times[-1] - times[0]).total_seconds(),
            drain_seconds=(times[-1] - at).total_seconds(),
            median_lateness_seconds=statistics.median(lateness),
            max_lateness_seconds=max(lateness),
        )


def _settled_rss() -> int | None:
    gc.collect()
    return _rss_kib()
