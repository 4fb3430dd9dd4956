"""People activities: tasks for a case (calls only once the rules allow), promises, disputes."""

from __future__ import annotations

import dataclasses

from sqlalchemy.engine import Engine
from temporalio import activity

from receivables import commitments, tasks
from receivables.call_tasks import gate_call, note_offered
from receivables.case import (
    CallTaskOffer,
    CallTaskRequest,
    CallTaskStatus,
    CloseTasksRequest,
    DisputeRecord,
    EscalationRequest,
    OpenedTask,
    PromiseRecord,
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

    @activity.defn(name="offer_call_task")
    def offer_call_task(self, request: CallTaskRequest) -> CallTaskOffer:
        """Open a call or visit task if the contact rules allow it now; else say why not."""
        now = activity.info().current_attempt_scheduled_time
        offer = gate_call(self._engine, request, now)
        if offer.status is not CallTaskStatus.OFFERED:
            activity.logger.info(
                "%s %s of %s: %s",
                offer.status,
                request.task.step_id,
                request.task.invoice_number,
                offer.trace,
            )
            _count(
                "dunning_call_tasks", "Call and visit steps by outcome", offer.status
            )
            return offer
        offer = dataclasses.replace(offer, task=self.open_task(request.task))
        note_offered(self._engine, request, offer)
        _count("dunning_call_tasks", "Call and visit steps by outcome", offer.status)
        return offer

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

    @activity.defn(name="record_promise")
    def record_promise(self, record: PromiseRecord) -> None:
        """Write a payment promise as the case sees it; keyed by (tenant, invoice, sequence)."""
        commitments.record_promise(self._engine, record)
        _count(
            "dunning_promises_recorded", "Payment promises written", str(record.outcome)
        )

    @activity.defn(name="record_dispute")
    def record_dispute(self, record: DisputeRecord) -> None:
        """Write a dispute as the case sees it; keyed by (tenant, invoice, dispute id)."""
        commitments.record_dispute(self._engine, record)
        _count("dunning_disputes_recorded", "Disputes written", str(record.status))


def _count(name: str, description: str, kind: str) -> None:
    activity.metric_meter().create_counter(name, description).add(1, {"kind": kind})
