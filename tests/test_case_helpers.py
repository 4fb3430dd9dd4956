"""The test helpers' own promises: a step placed 'just now' is acted on at once, any day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

from temporalio.testing import WorkflowEnvironment

from receivables.planning import next_due_step, plan_case, within_usual_contact_hours
from receivables.store import make_engine
from tests.case_helpers import (
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    step_due_just_now,
    unique_number,
)
from workflows.invoice import LATE_TOLERANCE, InvoiceWorkflow

# A Sunday at noon UTC: no zone from UTC-12 to UTC+14 is in usual contact hours then.
SUNDAY_NOON = datetime(2026, 4, 5, 12, 0, 37, tzinfo=UTC)
FIXED_OFFSET_ZONES = [
    f"Etc/GMT{-hours:+d}" if hours else "UTC" for hours in range(-12, 15)
]


def test_no_zone_is_in_contact_hours_on_a_sunday_at_noon_utc() -> None:
    # Why the helper does not look for a zone where it is daytime: on Sundays there is none.
    assert SUNDAY_NOON.weekday() == 6
    assert not any(
        within_usual_contact_hours(SUNDAY_NOON, z) for z in FIXED_OFFSET_ZONES
    )


def test_a_step_placed_just_now_is_due_and_not_late_at_any_hour_of_the_week() -> None:
    for quarter_hours in range(7 * 24 * 4):
        now = SUNDAY_NOON + timedelta(minutes=15 * quarter_hours)
        slot = step_due_just_now(now)
        step = {"id": "R+10", "offset_days": 10, "channel": "email", "template": "t"}
        policy = policy_with_steps(
            step, send_time=slot.send_time, time_zone=slot.time_zone
        )
        due_date = slot.today - timedelta(days=10)
        plan = plan_case(
            policy,
            issue_date=due_date - timedelta(days=30),
            due_date=due_date,
            time_zone=slot.time_zone,
        )
        chosen, skipped = next_due_step(
            plan,
            set(),
            now,
            due_date=due_date,
            time_zone=slot.time_zone,
            catch_up=timedelta(days=3),
            opened_at=now,
        )
        assert chosen is not None and not skipped, now
        # Within the tolerance the case sends at once, without asking for contact hours.
        assert (
            timedelta(0) <= now - chosen.at < min(LATE_TOLERANCE, timedelta(minutes=1))
        )


async def test_a_case_sends_a_step_placed_just_now_on_a_sunday_at_noon_utc(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    now = await env.get_current_time()
    days_to_sunday = (6 - now.weekday()) % 7 or 7
    sunday = (now + timedelta(days=days_to_sunday)).date()
    await advance_to(env, datetime.combine(sunday, time(12, 0), tzinfo=UTC))
    now = await env.get_current_time()
    slot = step_due_just_now(now)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=slot.today - timedelta(days=40),
        due_date=slot.today - timedelta(days=10),
        amount_minor=99_000,
        time_zone=slot.time_zone,
    )
    step = {"id": "R+10", "offset_days": 10, "channel": "email"}
    policy = policy_with_steps(
        {**step, "template": "overdue-first"},
        send_time=slot.send_time,
        time_zone=slot.time_zone,
    )
    async with running_worker(env.client, engine) as (_, queue):
        run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
        # Real seconds, not skipped time: a step moved to Monday would not be sent here.
        for _ in range(80):
            if run.outbox():
                break
            await asyncio.sleep(0.25)
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await run.handle.terminate("the test is over")

    assert len(run.outbox()) == 1
    assert not [entry for entry in timeline if entry.kind == "step_moved"]
