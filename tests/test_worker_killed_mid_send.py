"""A worker process killed in the middle of a provider call: one message, or a person asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from receivables.governance import sync_governance
from receivables.settings import Settings
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask
from tests.case_helpers import (
    add_invoice,
    open_case,
    policy_with_steps,
    step_due_just_now,
    unique_number,
)
from tests.fakes.contract import ContractFake
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio
from tests.test_providers import ACCOUNT_SID, AUTH_TOKEN, SMS_FROM
from tests.worker_process import READY, TEMPLATES_DIR
from worker import build_worker, default_channels

pytest_plugins = ("tests.fakes.fixtures",)
REPO = Path(__file__).resolve().parents[1]
# Every wait below ends well before this: the send's heartbeat timeout is 10 s and its
# first retry comes 5 s after.
PATIENCE_SECONDS = 45.0
PROVIDER_SETTINGS = (
    "SENDGRID_API_KEY",
    "SENDGRID_FROM",
    "SENDGRID_HOST",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "TWILIO_FROM_SMS",
    "TWILIO_FROM_WHATSAPP",
)


def twilio_settings(fake: FakeTwilio) -> dict[str, str]:
    """Provider settings that send SMS through the Twilio fake on 127.0.0.1."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.base_url,
        "TWILIO_FROM_SMS": SMS_FROM,
    }


def sendgrid_settings(fake: FakeSendGrid) -> dict[str, str]:
    """Provider settings that send e-mail through the SendGrid fake on 127.0.0.1."""
    return {
        "SENDGRID_API_KEY": "SG.fake",
        "SENDGRID_FROM": "cobranzas@servicios-andinos.example",
        "SENDGRID_HOST": fake.base_url,
    }


@contextmanager
def worker_process(
    env: WorkflowEnvironment,
    task_queue: str,
    database_url: str,
    providers: Mapping[str, str],
    log: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in its own process with these provider settings; killed when the block ends."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in PROVIDER_SETTINGS
    }
    address = env.client.service_client.config.target_host
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.worker_process",
                address,
                task_queue,
                database_url,
            ],
            cwd=REPO,
            env={**environment, **providers},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


async def eventually(check: Callable[[], bool], what: str, log: Path) -> None:
    """Poll ``check()`` until it is true; fail with the worker's output if it never is."""
    deadline = asyncio.get_running_loop().time() + PATIENCE_SECONDS
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{what} did not happen; worker said:\n{log.read_text()}"
            )
        await asyncio.sleep(0.2)


async def kill_mid_call_then_recover(
    env: WorkflowEnvironment,
    database_url: str,
    fake: ContractFake,
    providers: dict[str, str],
    step: dict[str, object],
    settled: Callable[[], bool],
    tmp_path: Path,
    **rules: str,
) -> None:
    """Send one step by a worker process, kill it while the provider holds the call,
    then let a fresh worker on the same queue run until ``settled()`` is true."""
    engine = make_engine(database_url)
    # A held step opens a task, which needs executives to assign it to.
    sync_governance(engine, "test", REPO / "policies" / "governance.yaml")
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
    policy = policy_with_steps(
        step, send_time=slot.send_time, time_zone=slot.time_zone, **rules
    )
    task_queue = f"killed-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    stall = fake.stall_next()
    with worker_process(env, task_queue, database_url, providers, log) as process:
        await eventually(lambda: READY in log.read_text(), "worker start", log)
        run = await open_case(
            env.client, engine, invoice, customer, policy, task_queue, now
        )
        await eventually(stall.reached.is_set, "the provider call", log)
        process.kill()
        process.wait(timeout=30)
    stall.release.set()

    fresh = build_worker(
        env.client,
        engine,
        Settings(templates_dir=TEMPLATES_DIR),
        task_queue=task_queue,
        channels=default_channels(engine, env=providers),
    )
    try:
        async with fresh:
            await eventually(settled, "the retry's outcome", log)
    finally:
        await run.handle.terminate("the test is over")


def entry_of(database_url: str) -> ContactLedgerEntry | None:
    """The one ledger entry the test's case wrote, if any yet."""
    with session_scope(make_engine(database_url)) as session:
        return session.exec(select(ContactLedgerEntry)).first()


async def test_a_killed_worker_s_sms_is_found_at_twilio_and_not_sent_again(
    local_env: WorkflowEnvironment,
    sqlite_url: str,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
) -> None:
    step = {
        "id": "R+10",
        "offset_days": 10,
        "channel": "sms",
        "template": "overdue-first",
    }

    def settled() -> bool:
        entry = entry_of(sqlite_url)
        return entry is not None and entry.status == ContactStatus.SENT

    await kill_mid_call_then_recover(
        local_env,
        sqlite_url,
        fake_twilio,
        twilio_settings(fake_twilio),
        step,
        settled,
        tmp_path,
    )

    [taken] = fake_twilio.created
    assert len(fake_twilio.messages()) == 1
    assert len(fake_twilio.lookups()) == 1
    entry = entry_of(sqlite_url)
    assert entry is not None and entry.provider_message_id == taken["sid"]
    assert (
        entry.reason is not None and "cut off after the channel took it" in entry.reason
    )


async def test_a_killed_worker_s_email_is_held_and_a_person_asked_to_verify(
    local_env: WorkflowEnvironment,
    sqlite_url: str,
    fake_sendgrid: FakeSendGrid,
    tmp_path: Path,
) -> None:
    step = {
        "id": "R+10",
        "offset_days": 10,
        "channel": "email",
        "template": "overdue-first",
    }

    def verify_tasks() -> list[HumanTask]:
        with session_scope(make_engine(sqlite_url)) as session:
            return list(session.exec(select(HumanTask)).all())

    await kill_mid_call_then_recover(
        local_env,
        sqlite_url,
        fake_sendgrid,
        sendgrid_settings(fake_sendgrid),
        step,
        lambda: bool(verify_tasks()),
        tmp_path,
        on_unknown_outcome="hold",
    )

    assert len(fake_sendgrid.requests) == 1
    entry = entry_of(sqlite_url)
    assert entry is not None and entry.status == ContactStatus.HELD
    [task] = verify_tasks()
    assert (task.kind, task.step_id) == ("verify_delivery", "VERIFY-R+10")
    assert task.reason.startswith("outcome unknown")
