"""The worker's Prometheus endpoint: Temporal's runtime metrics and our contact counters."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from receivables.cases import connect
from receivables.settings import TemporalSettings
from receivables.store import make_engine
from tests.case_helpers import (
    add_invoice,
    open_case,
    policy_with_steps,
    running_worker,
    unique_number,
    zone_in_contact_hours,
)


def free_loopback_port() -> int:
    """A port nobody listens on, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(address: str) -> str:
    """GET /metrics on a loopback address, ignoring any proxy settings."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{address}/metrics", timeout=10) as answer:
        return str(answer.read().decode("utf-8"))


async def test_metrics_endpoint_answers_while_the_worker_runs(
    local_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    address = f"127.0.0.1:{free_loopback_port()}"
    frontend = local_env.client.service_client.config.target_host
    client = await connect(TemporalSettings(address=frontend, metrics_address=address))
    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    zone = zone_in_contact_hours(now)
    today = now.astimezone(ZoneInfo(zone)).date()
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        amount_minor=99_000,
        time_zone=zone,
    )
    # A step due a moment ago: the case sends it as soon as it opens.
    step = {
        "id": "R+9",
        "offset_days": 9,
        "channel": "email",
        "template": "overdue-first",
    }
    policy = policy_with_steps(step, send_time="00:00", time_zone=zone)
    async with running_worker(client, engine) as (_, queue):
        run = await open_case(
            client, engine, invoice, customer, policy, queue, datetime.now(UTC)
        )
        for _ in range(80):
            if run.outbox():
                break
            await asyncio.sleep(0.25)
        text = await asyncio.to_thread(scrape, address)
        await run.handle.terminate("the test is over")

    assert run.outbox(), "the reminder was not sent"
    assert "temporal_" in text
    assert "dunning_contacts{" in text and 'outcome="sent"' in text
