"""People activities: open a human task for a case, and escalate one whose SLA passed."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from receivables import tasks
from receivables.case import (
    CloseTasksRequest,
    EscalationRequest,
    OpenedTask,
    TaskRequest,
)


class PeopleActivities:
    """Writes tasks to the store, where executives and supervisors work them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="open_task")
    def open_task(self, request: TaskRequest) -> OpenedTask:
        """Open the task once per (case, step): a retried activity returns the same task."""
        opened = tasks.open_task(self._engine, request)
        _count("dunning_tasks_opened", "Human tasks opened", request.kind)
        activity.logger.info(
            "opened task %s (%s) on %s",
            opened.task_id,
            request.kind,
            request.invoice_number,
            extra={
                "tenant": request.tenant,
                "invoice": request.invoice_number,
                "task_id": opened.task_id,
                "outcome": "task opened",
            },
        )
        return opened

    @activity.defn(name="close_tasks")
    def close_tasks(self, request: CloseTasksRequest) -> list[int]:
        """Cancel tasks nobody needs any more; returns the ids that were still open."""
        closed = tasks.cancel_open_tasks(
            self._engine,
            request.tenant,
            request.workflow_id,
            at=request.at,
            task_ids=request.task_ids,
        )
        activity.logger.info(
            "closed tasks %s: %s",
            closed,
            request.reason,
            extra={"tenant": request.tenant, "task_ids": closed, "outcome": "closed"},
        )
        return closed

    @activity.defn(name="escalate_task")
    def escalate_task(self, request: EscalationRequest) -> str:
        """Hand a late task to the next level, once; returns who has it now."""
        holder = tasks.escalate_task(
            self._engine, request.task_id, to_level=request.to_level, at=request.at
        )
        _count("dunning_tasks_escalated", "Tasks escalated after a missed SLA", "sla")
        return holder


def _count(name: str, description: str, kind: str) -> None:
    activity.metric_meter().create_counter(name, description).add(1, {"kind": kind})
