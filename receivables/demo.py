"""The main job on one machine: dev server with Web UI, a worker, and a live sample portfolio."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import col, select
from temporalio.client import Client

from receivables.cases import connect, open_cases_without_one
from receivables.devserver import DevServer, DevServerConfig, start_dev_server
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.importer import import_portfolio
from receivables.policy import load_policy_book
from receivables.pulse import PULSE_SECONDS, report_pulse
from receivables.sample_portfolio import write_sample_portfolio
from receivables.schema import migrate
from receivables.settings import DEFAULT_TENANT, Settings
from receivables.store import (
    Invoice,
    InvoiceStatus,
    make_engine,
    session_scope,
)

log = logging.getLogger(__name__)
SAMPLE_MAPPING = "sample"


def _dev_server_config(settings: Settings) -> DevServerConfig:
    host, _, port = settings.temporal.address.rpartition(":")
    return DevServerConfig(
        data_dir=settings.data_dir / "temporal",
        ip=host or "127.0.0.1",
        port=int(port),
        ui_port=int(port) + 1000,
        namespace=settings.temporal.namespace,
    )


def load_sample_portfolio(settings: Settings, size: int) -> str:
    """Generate today's sample portfolio once and import it; say what happened."""
    today = datetime.now(UTC).date()
    engine = make_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        already = session.exec(
            select(Invoice.id).where(Invoice.tenant == settings.tenant).limit(1)
        ).first()
    if already is not None:
        return (
            f"tenant {settings.tenant!r} already has a portfolio in "
            f"{settings.resolved_database_url}; delete {settings.data_dir} to start afresh"
        )
    path = write_sample_portfolio(
        settings.data_dir / f"sample-portfolio-{today}.csv", today=today, size=size
    )
    report = import_portfolio(
        path,
        SAMPLE_MAPPING,
        database_url=settings.resolved_database_url,
        tenant=settings.tenant,
        policies_dir=settings.policies_dir,
    )
    return report.summary()


async def open_every_case(client: Client, settings: Settings) -> Counter[str]:
    """Start a case for every open invoice of the tenant; re-running opens none twice."""
    return await open_cases_without_one(
        client,
        make_engine(settings.resolved_database_url),
        load_policy_book(settings.policies_dir),
        settings.tenant,
        task_queue=settings.temporal.task_queue,
    )


async def run_demo(
    settings: Settings,
    *,
    exit_after: float | None,
    size: int,
    pulse_every: float = PULSE_SECONDS,
) -> int:
    """Bring everything up, open the cases, print where to look, run until interrupted.

    While it runs, a line with the portfolio's cases, contacts and tasks is printed every
    ``pulse_every`` seconds in which any of them changed.
    """
    from worker import run_worker

    config = _dev_server_config(settings)
    server = start_dev_server(config)
    try:
        migrate(settings.resolved_database_url)
        sync_governance(
            make_engine(settings.resolved_database_url),
            settings.tenant,
            settings.policies_dir / GOVERNANCE_FILE,
        )
        print(load_sample_portfolio(settings, size))
        worker: asyncio.Task[object] = asyncio.create_task(run_worker(settings))
        outcome = await open_every_case(await connect(settings.temporal), settings)
        print(_welcome(config, settings, outcome, pulse_every))
        engine = make_engine(settings.resolved_database_url)
        # Flushed: a run piped to a file or a pager shows each line as it happens.
        write = functools.partial(print, flush=True)
        pulse = asyncio.create_task(
            report_pulse(engine, settings.tenant, write, every=pulse_every)
        )
        try:
            await _until_interrupted(exit_after, worker)
        finally:
            pulse.cancel()
    finally:
        server.stop()
    return 0


async def serve_forever(settings: Settings) -> int:
    """Only the dev server and its Web UI, until interrupted."""
    config = _dev_server_config(settings)
    server: DevServer = start_dev_server(config)
    try:
        print(f"Temporal dev server on {config.address}, Web UI at {config.ui_url}")
        await _until_interrupted(None, None)
    finally:
        server.stop()
    return 0


async def _until_interrupted(
    exit_after: float | None, worker: asyncio.Task[object] | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    waiters: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
    if worker is not None:
        waiters.append(worker)  # a worker that crashes ends the demo with its error
    done, _ = await asyncio.wait(
        waiters, timeout=exit_after, return_when="FIRST_COMPLETED"
    )
    if worker is not None:
        if worker in done:
            worker.result()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def _an_open_invoice(settings: Settings) -> tuple[str, str] | None:
    """A folio and balance to show in the examples, so they can be pasted as they are."""
    with session_scope(make_engine(settings.resolved_database_url)) as session:
        invoice = session.exec(
            select(Invoice)
            .where(
                Invoice.tenant == settings.tenant, Invoice.status == InvoiceStatus.OPEN
            )
            .order_by(col(Invoice.due_date))
        ).first()
    if invoice is None:
        return None
    return invoice.invoice_number, str(invoice.balance_minor)


def _environment_prefix(settings: Settings) -> str:
    """The variables another terminal needs to reach this run, when they are not defaults."""
    defaults = Settings()
    wanted = {
        "DUNNING_DATA_DIR": (str(settings.data_dir), str(defaults.data_dir)),
        "DUNNING_TENANT": (settings.tenant, DEFAULT_TENANT),
        "TEMPORAL_ADDRESS": (settings.temporal.address, defaults.temporal.address),
    }
    return "".join(
        f"{name}={value} "
        for name, (value, default) in wanted.items()
        if value != default
    )


def _welcome(
    config: DevServerConfig,
    settings: Settings,
    outcome: Counter[str],
    pulse_every: float,
) -> str:
    opened = ", ".join(f"{n} {what}" for what, n in sorted(outcome.items())) or "none"
    folio, amount = _an_open_invoice(settings) or ("<folio>", "<amount>")
    command = f"  {_environment_prefix(settings)}.venv/bin/python starter.py"
    return "\n".join(
        [
            "",
            f"Cases: {opened} (settled rows of the sample are history, with no case).",
            f"Temporal Web UI:  {config.ui_url}/namespaces/{config.namespace}/workflows",
            f"Store:            {settings.resolved_database_url}",
            "",
            f"Try, in another terminal (from {Path.cwd()}):",
            f"{command} outbox list            # messages sent so far",
            f"{command} case {folio}        # stage, timeline, ledger",
            f"{command} pay {folio} {amount} --reference TRX-{folio} --by exec-01",
            f"{command} report                 # KPIs of the portfolio",
            "",
            f"Every {pulse_every:g} s in which cases, contacts or tasks change, a line says so.",
            "Press Ctrl-C to stop the worker and the dev server.",
        ]
    )
