"""The worker: runs invoice cases and their activities against the configured Temporal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.people import PeopleActivities
from activities.sending import ReminderSender
from receivables.cases import TemporalUnreachable, connect, metrics_runtime
from receivables.channels import MessageChannel, OutboxChannel
from receivables.logs import configure_logging
from receivables.providers.config import provider_channels_from_env
from receivables.schema import migrate
from receivables.settings import Settings, load_settings
from receivables.store import make_engine
from receivables.task_gauges import TaskGauges
from receivables.workflow_runner import StartReleasingInterceptor, workflow_runner
from workflows.invoice import InvoiceWorkflow

log = logging.getLogger(__name__)
ACTIVITY_THREADS = 16
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a stopping worker waits for Temporal to take back its polls and results. A
# worker that cannot reach Temporal would wait forever; what it leaves unfinished is
# retried by the next worker, and a send cut off is looked up before it is sent again.
SHUTDOWN_WAIT_SECONDS = 10.0


def default_channels(
    engine: Engine, env: Mapping[str, str] | None = None
) -> dict[str, MessageChannel]:
    """The outbox for every channel, replaced by SendGrid or Twilio where configured."""
    outbox = OutboxChannel(engine)
    channels: dict[str, MessageChannel] = {
        "email": outbox,
        "sms": outbox,
        "whatsapp": outbox,
        "letter": outbox,
    }
    providers = provider_channels_from_env(os.environ if env is None else env)
    return channels | (providers or {})


def build_worker(
    client: Client,
    engine: Engine,
    settings: Settings,
    *,
    task_queue: str | None = None,
    channels: dict[str, MessageChannel] | None = None,
    extra_workflows: tuple[type, ...] = (),
    extra_activities: tuple[object, ...] = (),
) -> Worker:
    """A worker for invoice cases, with the send activity bound to this store and channels."""
    sender = ReminderSender(
        engine, channels or default_channels(engine), settings.templates_dir
    )
    people = PeopleActivities(engine)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=[InvoiceWorkflow, *extra_workflows],
        workflow_runner=workflow_runner(settings.workflow_sandbox),
        interceptors=[StartReleasingInterceptor()],
        activities=[
            sender.send_reminder,
            people.open_task,
            people.offer_call_task,
            people.escalate_task,
            people.close_tasks,
            people.record_promise,
            people.record_dispute,
            *extra_activities,  # type: ignore[list-item]
        ],
        activity_executor=ThreadPoolExecutor(max_workers=ACTIVITY_THREADS),
        max_concurrent_activities=ACTIVITY_THREADS,
        max_task_queue_activities_per_second=settings.temporal.max_sends_per_second,
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Connect, make sure the store is migrated, and poll until ``stop`` is set.

    Without ``stop`` it polls until cancelled. Raises ``WorkerStopTimedOut`` when Temporal
    did not let the worker stop within ``SHUTDOWN_WAIT_SECONDS``.
    """
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    stop = stop or asyncio.Event()
    client = await _connect_unless_stopped(settings, stop)
    if client is None:
        return
    worker = build_worker(client, engine, settings)
    log.info(
        "worker polling %s on %s/%s (workflow sandbox %s)",
        settings.temporal.task_queue,
        settings.temporal.address,
        settings.temporal.namespace,
        "on" if settings.workflow_sandbox else "off",
    )
    runtime = metrics_runtime(settings.temporal.metrics_address)
    gauges = (
        None
        if runtime is None
        else asyncio.create_task(TaskGauges(runtime.metric_meter, engine).keep_fresh())
    )
    try:
        await _poll_until(worker, stop)
    finally:
        if gauges is not None:
            gauges.cancel()


async def _connect_unless_stopped(
    settings: Settings, stop: asyncio.Event
) -> Client | None:
    """The client, or None when told to stop first.

    A server that accepts the connection and never answers holds the SDK's connect for
    about 30 s, longer than a service manager waits after its SIGTERM.
    """
    connecting = asyncio.create_task(connect(settings.temporal))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    log.info("worker stopped before Temporal at %s answered", settings.temporal.address)
    return None


class WorkerStopTimedOut(RuntimeError):
    """Temporal did not let the worker stop in time (most often: it cannot be reached)."""


async def _poll_until(worker: Worker, stop: asyncio.Event) -> None:
    polling = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if polling.done():
        stopping.cancel()
        polling.result()  # a worker that failed by itself stops with its error
        return
    log.info(
        "worker stopping: waiting up to %.0f s for Temporal", SHUTDOWN_WAIT_SECONDS
    )
    try:
        await asyncio.wait_for(worker.shutdown(), SHUTDOWN_WAIT_SECONDS)
    except TimeoutError:
        raise WorkerStopTimedOut(
            f"Temporal did not answer within {SHUTDOWN_WAIT_SECONDS:.0f} s; stopped "
            "without it: unfinished work is retried by the next worker"
        ) from None
    # The shutdown ended the run; a failure it surfaced is already logged by the SDK.
    if not polling.cancelled() and polling.exception() is not None:
        log.warning("worker stopped after an error: %s", polling.exception())


async def run_until_signalled(settings: Settings) -> int:
    """Run a worker until SIGINT or SIGTERM, then stop it; the exit status to use.

    A second signal while it stops ends the process at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: stopping now", signum.name)
            _exit_now(1)
        log.info("%s received: the worker stops", signum.name)
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await run_worker(settings, stop)
    except (TemporalUnreachable, WorkerStopTimedOut) as problem:
        log.error("%s", problem)
        return 1
    log.info("worker stopped")
    return 0


def serve(settings: Settings) -> NoReturn:
    """Run a worker until SIGINT or SIGTERM, then end the process with its status."""
    _exit_now(asyncio.run(run_until_signalled(settings)))


def _exit_now(status: int) -> NoReturn:
    """End the process without waiting for the SDK's threads.

    Its native threads may be blocked retrying a Temporal that is gone; an ordinary exit
    would wait for them, or fail the interpreter's shutdown while they still run.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> None:
    """Command line entry: ``python worker.py``; configuration comes from the environment."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    settings = load_settings()
    configure_logging(settings.log_format, logging.INFO)
    serve(settings)


if __name__ == "__main__":
    main()
