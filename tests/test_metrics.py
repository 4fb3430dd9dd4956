"""The worker's Prometheus endpoint: Temporal's runtime metrics and our contact counters."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from receivables.case import CaseClosed, GovernanceLevel
from receivables.cases import connect, metrics_runtime
from receivables.settings import TemporalSettings
from receivables.store import make_engine, session_scope
from receivables.task_gauges import TaskGauges
from receivables.tasks import HumanTask, TaskStatus
from tests.case_helpers import (
    add_invoice,
    add_sunday_reminder,
    open_case,
    policy_with_steps,
    running_worker,
    step_due_just_now,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow


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
    slot = step_due_just_now(now)
    today = slot.today
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        amount_minor=99_000,
        time_zone=slot.time_zone,
    )
    # A step due a moment ago, R+10 today: the case sends it as soon as it opens.
    step = {
        "id": "R+10",
        "offset_days": 10,
        "channel": "email",
        "template": "overdue-first",
    }
    policy = policy_with_steps(step, send_time=slot.send_time, time_zone=slot.time_zone)
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


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample of ``name`` carrying every one of ``labels``, if exposed."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and wanted <= set(
            head[len(name) + 1 : -1].split(",")
        ):
            return float(value)
    return None


async def test_deferred_and_sent_contacts_are_counted_per_channel(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    address = f"127.0.0.1:{free_loopback_port()}"
    frontend = env.client.service_client.config.target_host
    client = await connect(TemporalSettings(address=frontend, metrics_address=address))
    reminder = add_sunday_reminder(engine, await env.get_current_time())

    async with running_worker(client, engine) as (_, queue):
        run = await open_case(
            client,
            engine,
            reminder.invoice,
            reminder.customer,
            reminder.policy,
            queue,
            await env.get_current_time(),
        )
        await env.sleep(reminder.monday_noon - await env.get_current_time())
        text = await asyncio.to_thread(scrape, address)
        await run.handle.signal(
            InvoiceWorkflow.cancel, CaseClosed("the test is over", "test")
        )
        await run.handle.result()

    assert [m.step_id for m in run.outbox()] == ["R+1"]
    for outcome in ("defer", "sent"):
        counted = metric_value(
            text, "dunning_contacts", outcome=outcome, channel="email"
        )
        assert counted is not None and counted >= 1


def add_task(
    engine: Engine, tenant: str, kind: str, *, due_at: datetime, status: str
) -> None:
    """Commit one human task of ``kind`` with the given SLA end and status."""
    with session_scope(engine) as session:
        session.add(
            HumanTask(
                tenant=tenant,
                invoice_number=unique_number(),
                workflow_id=f"invoice/{tenant}/{unique_number()}",
                step_id="T1",
                kind=kind,
                role=GovernanceLevel.EXECUTIVE,
                assignee_id="ex-a1",
                reason="no payment after the due date",
                time_zone="America/Santiago",
                opened_at=due_at - timedelta(days=2),
                due_at=due_at,
                status=status,
            )
        )


def test_open_and_breached_tasks_are_gauged_by_tenant_and_kind(
    sqlite_url: str,
) -> None:
    engine, tenant = make_engine(sqlite_url), f"gauge-{unique_number()}"
    now = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
    add_task(
        engine, tenant, "call_debtor", due_at=now - timedelta(hours=1), status="open"
    )
    add_task(
        engine, tenant, "call_debtor", due_at=now + timedelta(days=1), status="open"
    )
    add_task(
        engine, tenant, "call_debtor", due_at=now - timedelta(days=3), status="done"
    )
    add_task(
        engine, tenant, "data_fix", due_at=now - timedelta(days=1), status="claimed"
    )
    address = f"127.0.0.1:{free_loopback_port()}"
    runtime = metrics_runtime(address)
    assert runtime is not None
    gauges = TaskGauges(runtime.metric_meter, engine)

    gauges.refresh(now)
    before = scrape(address)
    with session_scope(engine) as session:
        for task in session.exec(select(HumanTask).where(HumanTask.tenant == tenant)):
            task.status = TaskStatus.DONE
            session.add(task)
    gauges.refresh(now)
    after = scrape(address)

    call, fix = (
        {"tenant": tenant, "kind": "call_debtor"},
        {"tenant": tenant, "kind": "data_fix"},
    )
    assert metric_value(before, "dunning_tasks_open", **call) == 2
    assert metric_value(before, "dunning_tasks_breached", **call) == 1
    assert metric_value(before, "dunning_tasks_open", **fix) == 1
    assert metric_value(before, "dunning_tasks_breached", **fix) == 1
    for labels in (call, fix):
        assert metric_value(after, "dunning_tasks_open", **labels) == 0
        assert metric_value(after, "dunning_tasks_breached", **labels) == 0
