"""The worker: runs invoice cases and their activities against the configured Temporal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.people import PeopleActivities
from activities.sending import ReminderSender
from receivables.cases import connect, metrics_runtime
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


async def run_worker(settings: Settings) -> None:
    """Connect, make sure the store is migrated, and poll until interrupted."""
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    client = await connect(settings.temporal)
    worker = build_worker(client, engine, settings)
    log.info(
        "worker polling %s on %s/%s (workflow sandbox %s)",
        settings.temporal.task_queue,
        settings.temporal.address,
        settings.temporal.namespace,
        "on" if settings.workflow_sandbox else "off",
    )
    runtime = metrics_runtime(settings.temporal.metrics_address)
    if runtime is None:
        await worker.run()
        return
    gauges = asyncio.create_task(TaskGauges(runtime.metric_meter, engine).keep_fresh())
    try:
        await worker.run()
    finally:
        gauges.cancel()


def main() -> None:
    """Command line entry: ``python worker.py``; configuration comes from the environment."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    settings = load_settings()
    configure_logging(settings.log_format, logging.INFO)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
