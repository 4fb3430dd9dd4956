"""The benchmark: case starts, lifecycles, billable actions and memory on a fresh dev server."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import math
import os
import platform
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory

from receivables.case import InvoiceCase, PaymentReceived
from receivables.cases import (
    case_from_store,
    case_handle,
    connect,
    report_payment,
    start_case,
)
from receivables.channels import OutboxChannel, OutgoingMessage
from receivables.devserver import (
    DB_FILE_NAME,
    LOG_FILE_NAME,
    LOOPBACK,
    DevServerConfig,
    dev_server_path,
    start_dev_server,
)
from receivables.policy import Policy
from receivables.schema import migrate
from receivables.settings import Settings, TemporalSettings, load_settings
from receivables.store import (
    Customer,
    Invoice,
    OutboxMessage,
    make_engine,
    session_scope,
)
from worker import build_worker, default_channels
from workflows.invoice import InvoiceWorkflow

logger = logging.getLogger(__name__)

Interval = tuple[float, float]  # seconds since the epoch, on this host's clock
Row = tuple[str, str, str, str]  # metric, value, target, met?
Sizes = tuple[int | None, int | None]  # resident KiB before and after, where readable

TENANT = "bench"
TASK_QUEUE = "bench"
STORE_FILE_NAME = "store.sqlite"
FIRST_STEP, SECOND_STEP = "R1", "R2"
AMOUNT_MINOR = 100_000
CURRENCY = "CLP"
# Client calls in flight at once: enough to keep the server busy, as a bulk import would.
CONCURRENT_CALLS = 50
# Invoice cases opened and cached before memory is read, so imports and the sandbox's
# first load of InvoiceWorkflow are not charged to the measured cases.
WARM_UP_CASES = 5
# Cases and waiting workflows are cached side by side, within the SDK's 1000-run cache:
# 450 of each is about as many as fit. Fewer left the figure to the heap's own growth
# steps: 300 cases read from 51 to 64 KiB per case within one hour on the same build.
DEFAULT_CACHED_CASES = 450

START_RATIO_TARGET = 0.9
LIFECYCLE_RATIO_TARGET = 0.8
BILLABLE_ACTIONS_TARGET = 10
KIB_PER_CACHED_CASE_TARGET = 50.0

# Temporal Cloud bills one action for each of these history events.
BILLABLE_EVENT_TYPES = frozenset(
    {
        "WorkflowExecutionStarted",
        "ActivityTaskScheduled",
        "TimerStarted",
        "WorkflowExecutionSignaled",
        "UpsertWorkflowSearchAttributes",
        "WorkflowExecutionUpdateAccepted",
        "MarkerRecorded",
        "StartChildWorkflowExecutionInitiated",
        "SignalExternalWorkflowExecutionInitiated",
    }
)


# -- the trivial ceiling ---------------------------------------------------------------


@activity.defn(name="bench_echo")
def echo(value: int) -> int:
    """The trivial activity: hand the number back."""
    return value


@workflow.defn(name="BenchTrivialWorkflow")
class TrivialWorkflow:
    """The trivial workflow: one trivial activity, then done."""

    @workflow.run
    async def run(self, value: int) -> int:
        """Run the trivial activity once and return its answer."""
        return await workflow.execute_activity(
            echo, value, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="BenchWaitingWorkflow")
class WaitingWorkflow:
    """A workflow that only waits on one timer: what the SDK itself holds per cached run."""

    @workflow.run
    async def run(self, value: int) -> int:
        """Sleep a month, as a case does between its steps; the benchmark ends it first."""
        await workflow.sleep(timedelta(days=30), summary="the SDK's floor: one timer")
        return value

    @workflow.query
    def ready(self) -> bool:
        """Answered once the run sits in the worker's cache."""
        return True


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkReport:
    """What one run measured, and the machine and server it ran on."""

    cases: int
    trivial_starts_per_second: float
    trivial_completions_per_second: float
    case_starts_per_second: float
    lifecycles_completed: int
    reminders_sent: int
    activities_per_lifecycle: float
    lifecycle_busy_seconds: float
    lifecycle_wall_seconds: float
    typical_case_events: dict[str, int]
    typical_case_share: float
    cached_cases: int
    rss_before_kib: int | None
    rss_after_kib: int | None
    waiting_rss_before_kib: int | None
    waiting_rss_after_kib: int | None
    total_seconds: float
    server_version: str
    python_version: str
    cpu_count: int
    load_before: float | None
    load_after: float | None
    workflow_sandbox: bool = False
    # Every trivial round as (starts/s, completions/s); the ceiling is the best of them.
    trivial_rounds: tuple[tuple[float, float], ...] = ()
    # Every round of case starts (the cached cases', the lifecycle cases'), per second;
    # the case rate is the best of them, as the trivial one is.
    case_start_rounds: tuple[float, ...] = ()
    # Lifecycle activities per busy second of each lifecycle round; the better one counts.
    lifecycle_rounds: tuple[float, ...] = ()

    @property
    def start_ratio(self) -> float:
        """Invoice case starts per second over trivial workflow starts per second."""
        return self.case_starts_per_second / self.trivial_starts_per_second

    @property
    def lifecycles_per_second(self) -> float:
        """Complete lifecycles per second of the time the cases had work outstanding."""
        return self.lifecycles_completed / self.lifecycle_busy_seconds

    @property
    def lifecycle_activities_per_second(self) -> float:
        """Lifecycles per second times the activities each one ran."""
        return self.lifecycles_per_second * self.activities_per_lifecycle

    @property
    def lifecycle_ratio(self) -> float:
        """Lifecycle activities per second over trivial workflow-plus-activity runs per second."""
        return (
            self.lifecycle_activities_per_second / self.trivial_completions_per_second
        )

    @property
    def history_events(self) -> int:
        """Events in the typical case's history."""
        return sum(self.typical_case_events.values())

    @property
    def billable_actions(self) -> int:
        """Temporal Cloud actions the typical case cost."""
        return billable_actions(self.typical_case_events)

    @property
    def kib_per_cached_case(self) -> float | None:
        """Growth of this process's resident memory per cached open case, in KiB."""
        if self.rss_before_kib is None or self.rss_after_kib is None:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.cached_cases

    @property
    def kib_per_cached_waiting_workflow(self) -> float | None:
        """The same growth for a workflow that does nothing but wait: the SDK's own share."""
        if self.waiting_rss_before_kib is None or self.waiting_rss_after_kib is None:
            return None
        growth = self.waiting_rss_after_kib - self.waiting_rss_before_kib
        return growth / self.cached_cases

    def rows(self) -> list[Row]:
        """The table's rows: metric, value, target, and whether the target was met."""
        return [
            *self._throughput_rows(),
            *self._lifecycle_rows(),
            *self._footprint_rows(),
            ("Total wall time", f"{self.total_seconds:.1f} s", "", ""),
            ("Temporal server", self.server_version, "", ""),
            ("Python", self.python_version, "", ""),
            ("Workflow sandbox", "on" if self.workflow_sandbox else "off", "", ""),
            ("CPUs", str(self.cpu_count), "", ""),
            ("Load average (1 min), start → end", self._load(), "", ""),
        ]

    def _throughput_rows(self) -> list[Row]:
        return [
            (
                "Trivial workflow starts/s" + self._rounds(0),
                f"{self.trivial_starts_per_second:.1f}",
                "",
                "",
            ),
            (
                "Trivial workflow + activity completed/s" + self._rounds(1),
                f"{self.trivial_completions_per_second:.1f}",
                "",
                "",
            ),
            (
                "Invoice case starts/s" + _best_of(self.case_start_rounds),
                f"{self.case_starts_per_second:.1f}",
                "",
                "",
            ),
            _judged(
                "Case starts / trivial starts", self.start_ratio, START_RATIO_TARGET
            ),
            (
                f"Complete lifecycles/s ({self.lifecycles_completed} cases, busy time)",
                f"{self.lifecycles_per_second:.1f}",
                "",
                "",
            ),
            (
                f"Lifecycle activities/s (× {self.activities_per_lifecycle:g} per case)"
                + _best_of(self.lifecycle_rounds),
                f"{self.lifecycle_activities_per_second:.1f}",
                "",
                "",
            ),
            _judged(
                "Lifecycle activities/s / trivial completed/s",
                self.lifecycle_ratio,
                LIFECYCLE_RATIO_TARGET,
            ),
        ]

    def _footprint_rows(self) -> list[Row]:
        kib, floor = self.kib_per_cached_case, self.kib_per_cached_waiting_workflow
        return [
            _capped("History events, typical case", self.history_events, None),
            _capped(
                "Billable actions, typical case",
                self.billable_actions,
                BILLABLE_ACTIONS_TARGET,
            ),
            (
                f"Worker memory per cached case ({self.cached_cases} cases)",
                "n/a" if kib is None else f"{kib:.1f} KiB",
                f"< {KIB_PER_CACHED_CASE_TARGET:g} KiB",
                "" if kib is None else _yes(kib < KIB_PER_CACHED_CASE_TARGET),
            ),
            (
                "Same for a workflow that only waits on a timer (SDK floor)",
                "n/a" if floor is None else f"{floor:.1f} KiB",
                "",
                "",
            ),
        ]

    def _rounds(self, which: int) -> str:
        return _best_of([r[which] for r in self.trivial_rounds])

    def _load(self) -> str:
        if self.load_before is None or self.load_after is None:
            return "n/a"
        return f"{self.load_before:.2f} → {self.load_after:.2f}"

    def _lifecycle_rows(self) -> list[Row]:
        return [
            ("Lifecycle busy time", f"{self.lifecycle_busy_seconds:.2f} s", "", ""),
            (
                "Lifecycle wall time (with the policy's waits)",
                f"{self.lifecycle_wall_seconds:.2f} s",
                "",
                "",
            ),
            (
                "Reminders sent",
                str(self.reminders_sent),
                str(2 * self.cases),
                _yes(self.reminders_sent == 2 * self.cases),
            ),
            (
                "Completed cases with the typical history",
                f"{self.typical_case_share:.0%}",
                "",
                "",
            ),
        ]

    def to_markdown(self) -> str:
        """The figures as a Markdown table, then the typical case's events by type."""
        lines = ["| Metric | Value | Target | Met? |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in self.rows()]
        lines += [
            "",
            "Typical case (two reminders, then paid), history events by type:",
            "",
            "| Event type | Count | Billable actions |",
            "|---|---|---|",
        ]
        for name, count in sorted(self.typical_case_events.items()):
            billed = count if name in BILLABLE_EVENT_TYPES else 0
            lines.append(f"| {name} | {count} | {billed} |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Every measured and derived figure, ready for ``json.dumps``."""
        return {
            **asdict(self),
            "start_ratio": self.start_ratio,
            "lifecycles_per_second": self.lifecycles_per_second,
            "lifecycle_activities_per_second": self.lifecycle_activities_per_second,
            "lifecycle_ratio": self.lifecycle_ratio,
            "history_events": self.history_events,
            "billable_actions": self.billable_actions,
            "kib_per_cached_case": self.kib_per_cached_case,
            "targets": {
                "start_ratio_min": START_RATIO_TARGET,
                "lifecycle_ratio_min": LIFECYCLE_RATIO_TARGET,
                "billable_actions_max": BILLABLE_ACTIONS_TARGET,
                "kib_per_cached_case_below": KIB_PER_CACHED_CASE_TARGET,
            },
        }


def _best_of(rounds: Sequence[float]) -> str:
    if len(rounds) < 2:
        return ""
    return f" (best of {', '.join(f'{rate:.1f}' for rate in rounds)})"


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def _judged(metric: str, value: float, minimum: float) -> Row:
    return metric, f"{value:.2f}", f"≥ {minimum:g}", _yes(value >= minimum)


def _capped(metric: str, value: int, maximum: int | None) -> Row:
    if maximum is None:
        return metric, str(value), "", ""
    return metric, str(value), f"≤ {maximum}", _yes(value <= maximum)


# -- reading histories -----------------------------------------------------------------


def event_type_name(event: HistoryEvent) -> str:
    """The event type as the Temporal UI spells it, e.g. ``WorkflowExecutionStarted``."""
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    return "".join(part.capitalize() for part in name.split("_"))


def event_counts(events: Iterable[HistoryEvent]) -> dict[str, int]:
    """How many events of each type a history holds."""
    return dict(Counter(event_type_name(event) for event in events))


def billable_actions(counts: dict[str, int]) -> int:
    """Temporal Cloud actions for a history, from its counts of events by type."""
    return sum(n for name, n in counts.items() if name in BILLABLE_EVENT_TYPES)


_TASK_ENDS = frozenset(
    {"WorkflowTaskCompleted", "WorkflowTaskFailed", "WorkflowTaskTimedOut"}
)
_ACTIVITY_ENDS = frozenset(
    {
        "ActivityTaskCompleted",
        "ActivityTaskFailed",
        "ActivityTaskTimedOut",
        "ActivityTaskCanceled",
    }
)


def _seconds(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def work_intervals(events: Iterable[HistoryEvent]) -> list[Interval]:
    """When a workflow had a task or an activity outstanding, from schedule to its end."""
    intervals: list[Interval] = []
    task_since: float | None = None
    activity_since: dict[int, float] = {}
    for event in events:
        kind, at = event_type_name(event), _seconds(event)
        if kind == "WorkflowTaskScheduled":
            task_since = at
        elif kind in _TASK_ENDS and task_since is not None:
            intervals.append((task_since, at))
            task_since = None
        elif kind == "ActivityTaskScheduled":
            activity_since[event.event_id] = at
        elif kind in _ACTIVITY_ENDS:
            attributes = getattr(event, event.WhichOneof("attributes") or "")
            began = activity_since.pop(attributes.scheduled_event_id, None)
            if began is not None:
                intervals.append((began, at))
    return intervals


def busy_seconds(intervals: Iterable[Interval]) -> float:
    """The length of the union of intervals: overlapping work is counted once."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _per_second(count: int, calls: Sequence[Interval]) -> float:
    return count / (max(end for _, end in calls) - min(start for start, _ in calls))


# -- the run ---------------------------------------------------------------------------


async def run_benchmark(
    *, cases: int = 300, work_dir: Path, cached_cases: int | None = None
) -> BenchmarkReport:
    """Run every measurement on one fresh dev server kept in ``work_dir``."""
    if cases < 1:
        raise ValueError(f"cases must be at least 1, not {cases}")
    began, load_before = time.perf_counter(), _load_average()
    cached_cases = cached_cases or DEFAULT_CACHED_CASES
    engine = make_engine(_fresh_store(work_dir))
    server = await asyncio.to_thread(
        start_dev_server,
        DevServerConfig(data_dir=work_dir, port=_free_loopback_port(), ui=False),
    )
    try:
        bench = _Bench(await connect(TemporalSettings(address=server.address)), engine)
        async with bench.worker:
            waiting_rss, rss, cached_starts = await bench.cached_memory(cached_cases)
            # Trivial and lifecycle rounds alternate, two of each, and each side counts its
            # better round: a pause elsewhere on the machine that slows one round then
            # decides neither side of a ratio, and neither side gets a second chance the
            # other does not.
            first = await bench.trivial(cases, "first")
            first_lifecycles = await bench.lifecycles(cases, *first, prefix="B")
            second = await bench.trivial(cases, "second")
            second_lifecycles = await bench.lifecycles(cases, *second, prefix="C")
            rounds = (first, second)
            lifecycle_rounds = (first_lifecycles, second_lifecycles)
            lifecycle = max(lifecycle_rounds, key=_activities_per_busy_second)
            # Opening the cached cases was a round of case starts too.
            case_start_rounds = (
                cached_starts,
                *(r["case_starts_per_second"] for r in lifecycle_rounds),
            )
            lifecycle = {
                k: v for k, v in lifecycle.items() if k != "case_starts_per_second"
            }
    finally:
        await asyncio.to_thread(server.stop)
        engine.dispose()
    return BenchmarkReport(
        cases=cases,
        trivial_starts_per_second=max(starts for starts, _ in rounds),
        trivial_completions_per_second=max(done for _, done in rounds),
        **lifecycle,
        case_starts_per_second=max(case_start_rounds),
        case_start_rounds=case_start_rounds,
        cached_cases=cached_cases,
        rss_before_kib=rss[0],
        rss_after_kib=rss[1],
        waiting_rss_before_kib=waiting_rss[0],
        waiting_rss_after_kib=waiting_rss[1],
        total_seconds=time.perf_counter() - began,
        server_version=_server_version(),
        python_version=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
        load_before=load_before,
        load_after=_load_average(),
        workflow_sandbox=bench.settings.workflow_sandbox,
        trivial_rounds=rounds,
        lifecycle_rounds=tuple(
            _activities_per_busy_second(r) for r in lifecycle_rounds
        ),
    )


def _activities_per_busy_second(lifecycle: dict[str, Any]) -> float:
    completed = (
        lifecycle["lifecycles_completed"] * lifecycle["activities_per_lifecycle"]
    )
    return float(completed / lifecycle["lifecycle_busy_seconds"])


def _fresh_store(work_dir: Path) -> str:
    # Only the files a previous run left: the dev server's state and log, and the store.
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / LOG_FILE_NAME).unlink(missing_ok=True)
    for name in (DB_FILE_NAME, STORE_FILE_NAME):
        for suffix in ("", "-wal", "-shm"):
            (work_dir / f"{name}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{work_dir / STORE_FILE_NAME}"
    migrate(url)
    return url


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _server_version() -> str:
    done = subprocess.run(
        [str(dev_server_path()), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def _load_average() -> float | None:
    # Other work on the machine slows every figure; the report shows how busy it was.
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _settled_rss() -> int | None:
    gc.collect()
    _return_free_heap()
    return _rss_kib()


def _return_free_heap() -> None:
    # glibc keeps freed heap mapped after a burst of work; handing it back first makes the
    # figure what the cached runs hold, not what the previous phase happened to leave free.
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _rss_kib() -> int | None:
    # Linux only; elsewhere the memory figure is reported as not available.
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def _whole_second_after(instant: datetime) -> datetime:
    return instant.replace(microsecond=0) + timedelta(seconds=1)


def two_step_policy(first_at: datetime, second_at: datetime) -> tuple[Policy, date]:
    """A UTC policy whose two email reminders fall at these instants, and its due date."""
    due = first_at.date()
    steps = [
        (FIRST_STEP, first_at, "courtesy-before-due"),
        (SECOND_STEP, second_at, "due-soon"),
    ]
    policy = Policy.model_validate(
        {
            "name": "bench-two-reminders",
            "version": 1,
            "description": "Two reminders seconds apart, for the benchmark",
            "time_zone": "UTC",
            "steps": [
                {
                    "id": step_id,
                    "offset_days": (at.date() - due).days,
                    "send_time": at.time(),
                    "channel": "email",
                    "template": template,
                }
                for step_id, at, template in steps
            ],
        }
    )
    return policy, due


async def _timed_calls(
    calls: Sequence[Callable[[], Awaitable[object]]],
) -> list[Interval]:
    """Make every call, a bounded number at a time, and time each one."""
    gate = asyncio.Semaphore(CONCURRENT_CALLS)

    async def timed(call: Callable[[], Awaitable[object]]) -> Interval:
        async with gate:
            began = time.time()
            await call()
            return began, time.time()

    return list(await asyncio.gather(*(timed(call) for call in calls)))


async def _histories(
    handles: Sequence[WorkflowHandle[Any, Any]],
) -> list[WorkflowHistory]:
    gate = asyncio.Semaphore(CONCURRENT_CALLS)

    async def fetch(handle: WorkflowHandle[Any, Any]) -> WorkflowHistory:
        async with gate:
            return await handle.fetch_history()

    return list(await asyncio.gather(*(fetch(handle) for handle in handles)))


class _WatchedOutbox(OutboxChannel):
    """The outbox, telling the benchmark's event loop of every message it stored."""

    def __init__(
        self, engine: Engine, on_sent: Callable[[OutgoingMessage], object]
    ) -> None:
        super().__init__(engine)
        self._on_sent = on_sent

    def send(self, message: OutgoingMessage) -> str:
        """Store the message, then report it."""
        message_id = super().send(message)
        self._on_sent(message)
        return message_id


class _Bench:
    """One worker on the benchmark's task queue, and the phases that drive it."""

    def __init__(self, client: Client, engine: Engine) -> None:
        self.client, self.engine = client, engine
        # The workflow runner a worker started here would use (DUNNING_WORKFLOW_SANDBOX);
        # the rest of the environment (store, queue, rate caps) is the benchmark's own.
        self.settings = Settings(workflow_sandbox=load_settings().workflow_sandbox)
        self.reminded: dict[str, asyncio.Event] = {}
        loop = asyncio.get_running_loop()
        outbox = _WatchedOutbox(
            engine, lambda message: loop.call_soon_threadsafe(self._sent, message)
        )
        self.worker = build_worker(
            client,
            engine,
            self.settings,
            task_queue=TASK_QUEUE,
            channels=dict.fromkeys(default_channels(engine), outbox),
            extra_workflows=(TrivialWorkflow, WaitingWorkflow),
            extra_activities=(echo,),
        )

    def _sent(self, message: OutgoingMessage) -> None:
        if message.step_id == SECOND_STEP and message.invoice_number in self.reminded:
            self.reminded[message.invoice_number].set()

    def _add_cases(
        self, prefix: str, count: int, policy: Policy, due: date
    ) -> list[InvoiceCase]:
        """Commit ``count`` open invoices and their customers; return their cases."""
        cases = []
        with session_scope(self.engine) as session:
            for index in range(count):
                number = f"{prefix}{index:06d}"
                customer = Customer(
                    tenant=TENANT,
                    customer_id=f"C-{number}",
                    name=f"Cliente {number}",
                    email=f"pagos-{number}@customers.invalid",
                    time_zone="UTC",
                )
                invoice = Invoice(
                    tenant=TENANT,
                    invoice_number=number,
                    customer_id=customer.customer_id,
                    issue_date=due - timedelta(days=30),
                    due_date=due,
                    amount_minor=AMOUNT_MINOR,
                    currency=CURRENCY,
                    balance_minor=AMOUNT_MINOR,
                )
                session.add_all([customer, invoice])
                cases.append(case_from_store(invoice, customer, policy, "bench"))
        return cases

    async def _start_cases(self, cases: Sequence[InvoiceCase]) -> list[Interval]:
        now = datetime.now(UTC)
        return await _timed_calls(
            [
                partial(start_case, self.client, c, task_queue=TASK_QUEUE, now=now)
                for c in cases
            ]
        )

    def _handles(self, cases: Iterable[InvoiceCase]) -> list[WorkflowHandle[Any, Any]]:
        return [case_handle(self.client, TENANT, c.invoice_number) for c in cases]

    async def cached_memory(self, count: int) -> tuple[Sizes, Sizes, float]:
        """Resident memory as ``count`` waiting workflows, then ``count`` cases, get cached.

        Returns (before, after) for the waiting workflows and for the cases, and the rate
        at which the measured cases were started (a round of case starts). Both stay
        cached until the end: memory freed by one phase would otherwise be reused by the
        next and make it look cheaper than it is.
        """
        # Limit: build_worker takes no max_cached_workflows, so the SDK's default cache
        # (1000 runs) bounds the cases measured here; a keyword there would lift it.
        capacity = self.worker.config().get("max_cached_workflows", 0)
        if 2 * (count + WARM_UP_CASES) > capacity:
            raise ValueError(
                f"the worker caches at most {capacity} workflows: ask for at most "
                f"{capacity // 2 - WARM_UP_CASES} cached cases"
            )
        waiting = await self._start_waiting("bench-waiting-warm", WARM_UP_CASES)
        waiting_before = _settled_rss()
        waiting += await self._start_waiting("bench-waiting", count)
        waiting_after = _settled_rss()
        far = datetime.now(UTC) + timedelta(days=30)
        policy, due = two_step_policy(far, far + timedelta(days=1))
        warm_up = self._add_cases("W", WARM_UP_CASES, policy, due)
        measured = self._add_cases("M", count, policy, due)
        await self._open_and_cache(warm_up)
        cases_before = _settled_rss()
        starts = await self._open_and_cache(measured)
        cases_after = _settled_rss()
        logger.info(
            "%s cached: waiting RSS %s -> %s KiB, cases RSS %s -> %s KiB",
            count,
            waiting_before,
            waiting_after,
            cases_before,
            cases_after,
        )
        # Ended so that they hold no cache slot during the throughput phases.
        handles = [*waiting, *self._handles([*warm_up, *measured])]
        await _timed_calls(
            [partial(h.terminate, reason="benchmark over") for h in handles]
        )
        return (
            (waiting_before, waiting_after),
            (cases_before, cases_after),
            _per_second(count, starts),
        )

    async def _start_waiting(
        self, prefix: str, count: int
    ) -> list[WorkflowHandle[Any, Any]]:
        handles = [
            self.client.get_workflow_handle(f"{prefix}-{i}") for i in range(count)
        ]
        await _timed_calls(
            [
                partial(
                    self.client.start_workflow,
                    WaitingWorkflow.run,
                    index,
                    id=handle.id,
                    task_queue=TASK_QUEUE,
                )
                for index, handle in enumerate(handles)
            ]
        )
        await _timed_calls([partial(h.query, WaitingWorkflow.ready) for h in handles])
        return handles

    async def _open_and_cache(self, cases: Sequence[InvoiceCase]) -> list[Interval]:
        starts = await self._start_cases(cases)
        # A query is answered by the worker only once the case ran its first task.
        queries = [
            partial(h.query, InvoiceWorkflow.next_step) for h in self._handles(cases)
        ]
        await _timed_calls(queries)
        return starts

    async def trivial(self, count: int, round_name: str = "") -> tuple[float, float]:
        """Start the trivial workflow ``count`` times; return starts/s and completions/s."""
        ids = [f"bench-trivial-{round_name}{index}" for index in range(count)]
        calls = [
            partial(
                self.client.start_workflow,
                TrivialWorkflow.run,
                index,
                id=workflow_id,
                task_queue=TASK_QUEUE,
            )
            for index, workflow_id in enumerate(ids)
        ]
        starts = await _timed_calls(calls)
        handles = [self.client.get_workflow_handle(workflow_id) for workflow_id in ids]
        await asyncio.gather(*(handle.result() for handle in handles))
        histories = await _histories(handles)
        work = [i for history in histories for i in work_intervals(history.events)]
        completions = count / busy_seconds([*starts, *work])
        logger.info("trivial: %s started and completed", count)
        return _per_second(count, starts), completions

    async def lifecycles(
        self,
        count: int,
        trivial_starts: float,
        trivial_completions: float,
        prefix: str = "B",
    ) -> dict[str, Any]:
        """Open ``count`` cases, let both reminders go out, pay each; measure it all.

        ``prefix`` starts the round's invoice numbers, so rounds never share a case.
        """
        first_at, second_at = _reminder_instants(
            count, trivial_starts, trivial_completions
        )
        policy, due = two_step_policy(first_at, second_at)
        cases = self._add_cases(prefix, count, policy, due)
        self.reminded = {case.invoice_number: asyncio.Event() for case in cases}
        starts = await self._start_cases(cases)
        payers = [self._pay_when_reminded(case) for case in cases]
        allowance = (second_at - datetime.now(UTC)).total_seconds() + 60 + count
        async with asyncio.timeout(allowance):
            finished = await asyncio.gather(*payers)
        payments = [(began, paid) for began, paid, _ in finished]
        wall = max(done for *_, done in finished) - min(began for began, _ in starts)
        histories = await _histories(self._handles(cases))
        # Timers cost nothing while they wait and a policy chooses their length, so the
        # rate counts only the time during which some case had work outstanding.
        work = [i for history in histories for i in work_intervals(history.events)]
        return {
            "case_starts_per_second": _per_second(count, starts),
            "lifecycles_completed": sum(_completed(h) for h in histories),
            "reminders_sent": self._reminders_in_outbox(prefix),
            "activities_per_lifecycle": _activities(histories) / count,
            "lifecycle_busy_seconds": busy_seconds([*starts, *payments, *work]),
            "lifecycle_wall_seconds": wall,
            **_typical(histories),
        }

    async def _pay_when_reminded(self, case: InvoiceCase) -> tuple[float, float, float]:
        """Wait for the second reminder, pay the whole invoice, wait for the case to end."""
        number = case.invoice_number
        await self.reminded[number].wait()
        began = time.time()
        payment = PaymentReceived(
            f"PAY-{number}", case.amount_minor, case.currency, datetime.now(UTC)
        )
        await report_payment(self.client, self.engine, TENANT, number, payment)
        paid = time.time()
        await case_handle(self.client, TENANT, number).result()
        return began, paid, time.time()

    def _reminders_in_outbox(self, prefix: str) -> int:
        with session_scope(self.engine) as session:
            statement = select(func.count()).where(
                OutboxMessage.tenant == TENANT,
                col(OutboxMessage.invoice_number).startswith(prefix),
            )
            return int(session.exec(statement).one())


def _reminder_instants(
    count: int, trivial_starts: float, trivial_completions: float
) -> tuple[datetime, datetime]:
    """When the two reminders of every lifecycle case fall, from the trivial rates.

    The first comes once all cases should be open, the second once every first reminder
    should be out; both with a wide margin, since a case whose first timer fires after
    the second reminder's instant would skip the first as superseded.
    """
    opening = 4 * count / trivial_starts + 3.0
    first_burst = 4 * count / trivial_completions + 3.0
    first_at = _whole_second_after(datetime.now(UTC) + timedelta(seconds=opening))
    return first_at, _whole_second_after(first_at + timedelta(seconds=first_burst))


def _completed(history: WorkflowHistory) -> bool:
    return event_type_name(history.events[-1]) == "WorkflowExecutionCompleted"


def _activities(histories: Iterable[WorkflowHistory]) -> int:
    return sum(
        event_counts(h.events).get("ActivityTaskScheduled", 0) for h in histories
    )


def _typical(histories: Sequence[WorkflowHistory]) -> dict[str, Any]:
    """The commonest history shape among completed cases, and the share that has it."""
    shapes = Counter(
        tuple(sorted(event_counts(h.events).items()))
        for h in histories
        if _completed(h)
    )
    if not shapes:
        return {
            "typical_case_events": event_counts(histories[0].events),
            "typical_case_share": 0.0,
        }
    shape, count = shapes.most_common(1)[0]
    return {
        "typical_case_events": dict(shape),
        "typical_case_share": count / shapes.total(),
    }
