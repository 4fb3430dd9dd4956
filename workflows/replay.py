"""PortfolioReplayWorkflow: replays a historical portfolio day by day through real cases."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.replay import (
        ReplayActivities,
        ReplayDay,
        ReplayDayResult,
        ReplayDispute,
    )
    from receivables.planning import local_instant

# Keeps the driver's own history short: a year of event days is well under Temporal's limits,
# but a portfolio spanning many years is not.
DAYS_PER_RUN = 120


@dataclass(frozen=True)
class ReplayPlan:
    """The event days to walk through, in order, and the local hours their events land."""

    tenant: str
    days: list[date]
    time_zone: str
    case_task_queue: str
    disputes: list[ReplayDispute] = field(default_factory=list)
    jurisdiction: str | None = None  # replaces every policy's contact-rule profile
    # Bank files and new invoices land before contact hours open (08:00), as they do in a
    # collections office; at 08:00 exactly a payment and a deferred reminder would race.
    events_at: time = time(7, 30)
    # A day's disputes are entered at the end of the office day, after every contact window
    # closes (21:00 at the latest). Their resolve task falls due at this wall time days later,
    # hours away from the morning instant at which the replay signals the case again. On
    # the same instant, the task's timer could fire while the case handled a rejection and
    # then cancelled it; the time-skipping test server refuses that cancel and stops its
    # clock for good (sdk-java issues 2606 and 3088).
    disputes_raised_at: time = time(22, 0)
    totals: ReplayDayResult = field(default_factory=ReplayDayResult)


@workflow.defn
class PortfolioReplayWorkflow:
    """Sleeps until each event day, acts out its cases, disputes and payments."""

    @workflow.run
    async def run(self, plan: ReplayPlan) -> ReplayDayResult:
        """Walk the days; continue as new every DAYS_PER_RUN days to keep history short."""
        totals = plan.totals
        for index, day in enumerate(plan.days):
            if index == DAYS_PER_RUN:
                workflow.continue_as_new(_rest_of(plan, plan.days[index:], totals))

            ending = [d for d in plan.disputes if d.resolves_on == day]
            totals = totals.plus(await _replay_morning(plan, day, ending))

            raised = [d for d in plan.disputes if d.opens_on == day]
            if raised:
                totals = totals.plus(await _raise_disputes(plan, day, raised))
        return totals


async def _replay_morning(
    plan: ReplayPlan, day: date, ending: list[ReplayDispute]
) -> ReplayDayResult:
    await _sleep_until(plan, day, plan.events_at, f"until {day} events")
    return await workflow.execute_activity_method(
        ReplayActivities.replay_day,
        ReplayDay(plan.tenant, day, plan.case_task_queue, ending, plan.jurisdiction),
        start_to_close_timeout=timedelta(minutes=10),
        summary=f"{day}: open cases, end disputes, record settlements",
    )


async def _raise_disputes(
    plan: ReplayPlan, day: date, raised: list[ReplayDispute]
) -> ReplayDayResult:
    await _sleep_until(plan, day, plan.disputes_raised_at, f"until {day} disputes")
    return await workflow.execute_activity_method(
        ReplayActivities.raise_disputes,
        ReplayDay(plan.tenant, day, plan.case_task_queue, raised, plan.jurisdiction),
        start_to_close_timeout=timedelta(minutes=10),
        summary=f"{day}: open {len(raised)} disputes",
    )


async def _sleep_until(plan: ReplayPlan, day: date, at: time, summary: str) -> None:
    wait = local_instant(day, at, plan.time_zone) - workflow.now()
    if wait > timedelta(0):
        await workflow.sleep(wait, summary=summary)


def _rest_of(plan: ReplayPlan, days: list[date], totals: ReplayDayResult) -> ReplayPlan:
    """The plan for the days left, carrying only the disputes still to open or end."""
    first = days[0]
    pending = [
        d
        for d in plan.disputes
        if d.opens_on >= first or (d.resolves_on is not None and d.resolves_on >= first)
    ]
    return replace(plan, days=days, disputes=pending, totals=totals)
