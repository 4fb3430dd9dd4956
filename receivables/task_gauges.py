"""Gauges of open and SLA-breached human tasks, refreshed from the store while a worker runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.common import MetricMeter

from receivables.store import session_scope, utc_now
from receivables.tasks import OPEN_STATUSES, HumanTask

log = logging.getLogger(__name__)

OPEN_TASKS, BREACHED_TASKS = "dunning_tasks_open", "dunning_tasks_breached"
# Tasks change at human speed; a scrape every minute or so sees them fresh enough.
REFRESH_SECONDS = 30.0

Labels = tuple[str, str]  # tenant, task kind


def count_open_tasks(engine: Engine, at: datetime) -> dict[Labels, tuple[int, int]]:
    """Per tenant and kind: tasks not yet done or cancelled, and those past their SLA."""
    past_due = case((col(HumanTask.due_at) < at, 1), else_=0)
    with session_scope(engine) as session:
        rows = session.exec(
            select(HumanTask.tenant, HumanTask.kind, func.count(), func.sum(past_due))
            .where(col(HumanTask.status).in_(OPEN_STATUSES))
            .group_by(col(HumanTask.tenant), col(HumanTask.kind))
        ).all()
    return {
        (tenant, kind): (total, int(late or 0)) for tenant, kind, total, late in rows
    }


class TaskGauges:
    """Sets ``dunning_tasks_open`` and ``dunning_tasks_breached`` from the store."""

    def __init__(self, meter: MetricMeter, engine: Engine) -> None:
        self._engine = engine
        self._open = meter.create_gauge(
            OPEN_TASKS, "Human tasks not yet done or cancelled, by tenant and kind"
        )
        self._breached = meter.create_gauge(
            BREACHED_TASKS, "Open human tasks past their SLA, by tenant and kind"
        )
        # A kind whose last task closed must fall to zero, not keep its last value.
        self._seen: set[Labels] = set()

    def refresh(self, at: datetime) -> dict[Labels, tuple[int, int]]:
        """Read the counts as of ``at`` and set both gauges; return what was set."""
        counts = count_open_tasks(self._engine, at)
        self._seen |= set(counts)
        for tenant, kind in self._seen:
            open_now, breached_now = counts.get((tenant, kind), (0, 0))
            labels = {"tenant": tenant, "kind": kind}
            self._open.set(open_now, labels)
            self._breached.set(breached_now, labels)
        return counts

    async def keep_fresh(self, every: float = REFRESH_SECONDS) -> None:
        """Refresh until cancelled; a failed read is logged and tried again next time."""
        while True:
            try:
                await asyncio.to_thread(self.refresh, utc_now())
            except Exception:  # the store may be briefly away; the worker goes on
                log.exception("could not refresh the task gauges")
            await asyncio.sleep(every)
