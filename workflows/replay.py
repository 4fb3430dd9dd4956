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
    """The event days to walk through, in order, and the local hour each day's events land."""

    tenant: str
    days: list[date]
    time_zone: str
    case_task_queue: str
    disputes: list[ReplayDispute] = field(default_factory=list)
    jurisdiction: str | None = None  # replaces every policy's contact-rule profile
    # Bank files and new invoices land before contact hours open (08:00), as they do in a
    # collections office; at 08:00 exactly a payment and a deferred reminder would race.
    events_at: time = time(7, 30)
    totals: ReplayDayResult = field(default_factory=ReplayDayResult)


@workflow.defn
class PortfolioReplayWorkflow:
    """Sleeps until each event day, then acts out its cases, disputes and payments."""

    @workflow.run
    async def run(self, plan: ReplayPlan) -> ReplayDayResult:
        """Walk the days; continue as new every DAYS_PER_RUN days to keep history short."""
        totals = plan.totals
        for index, day in enumerate(plan.days):
            if index == DAYS_PER_RUN:
                workflow.continue_as_new(_rest_of(plan, plan.days[index:], totals))

            at = local_instant(day, plan.events_at, plan.time_zone)
            wait = at - workflow.now()
            if wait > timedelta(0):
                await workflow.sleep(wait, summary=f"until {day} events")

            todays = [d for d in plan.disputes if day in (d.opens_on, d.resolves_on)]
            result = await workflow.execute_activity_method(
                ReplayActivities.replay_day,
                ReplayDay(
                    plan.tenant,
                    day,
                    plan.case_task_queue,
                    todays,
                    plan.jurisdiction,
                ),
                start_to_close_timeout=timedelta(minutes=10),
                summary=f"{day}: open cases, open and end disputes, record settlements",
            )
            totals = totals.plus(result)
        return totals


def _rest_of(plan: ReplayPlan, days: list[date], totals: ReplayDayResult) -> ReplayPlan:
    """The plan for the days left, carrying only the disputes still to open or end."""
    first = days[0]
    pending = [
        d
        for d in plan.disputes
        if d.opens_on >= first or (d.resolves_on is not None and d.resolves_on >= first)
    ]
    return replace(plan, days=days, disputes=pending, totals=totals)
