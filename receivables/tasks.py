"""Human tasks of a case: opened by its workflow, worked by people, bounded by business-day SLAs."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import UniqueConstraint, and_, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from receivables.business_days import add_business_days
from receivables.call_tasks import record_call_made, release_call
from receivables.case import (
    DisputeCategory,
    GovernanceLevel,
    OpenedTask,
    TaskOutcome,
    TaskOutcomeKind,
    TaskRequest,
    TimelineEntry,
)
from receivables.commitments import (
    StoredDispute,
    StoredPromise,
    disputes_of,
    promises_of,
)
from receivables.governance import (
    SupervisorAction,
    assignee_for,
    find_person,
    json_text,
    person_at_level,
    record_supervisor_action,
    supervisors_of,
    team_of,
)
from receivables.ledger import ContactLedger
from receivables.money import format_amount
from receivables.operator_actions import OperatorAction, actions_of
from receivables.planning import format_local, local_date_of
from receivables.store import (
    ContactLedgerEntry,
    Invoice,
    Payment,
    StopFactRecord,
    as_utc,
    find_customer,
    find_invoice,
    session_scope,
    utc_now,
)

# The audit trail lives with the governance; it is offered here too, beside the tasks.
__all__ = [
    "CaseView",
    "HumanTask",
    "InboxItem",
    "SupervisorAction",
    "TaskError",
    "TaskStatus",
    "breached",
    "cancel_open_tasks",
    "case_view",
    "claim_task",
    "complete_task",
    "escalate_task",
    "find_task",
    "inbox",
    "open_task",
    "record_supervisor_action",
]

log = logging.getLogger(__name__)


class TaskStatus(enum.StrEnum):
    """Where a human task stands."""

    OPEN = "open"
    CLAIMED = "claimed"  # someone said they are on it
    DONE = "done"
    CANCELLED = "cancelled"  # the case ended or moved on before anyone worked it


OPEN_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED)


class TaskError(ValueError):
    """A task command that cannot be carried out, saying why and what to do instead."""


class HumanTask(SQLModel, table=True):
    """Work for a person on one invoice: a call, an incident to fix, data to check."""

    # A retried activity finds the task its first attempt opened, not a second one.
    __table_args__ = (UniqueConstraint("tenant", "workflow_id", "step_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str = Field(index=True)
    workflow_id: str
    step_id: str
    kind: str
    role: int  # the GovernanceLevel the task was opened for
    assignee_id: str = Field(index=True)
    reason: str
    script_template: str | None = None
    time_zone: str  # the debtor's: promised dates are checked on their calendar
    opened_at: datetime
    due_at: datetime
    status: str = Field(default=TaskStatus.OPEN, index=True)
    escalation_level: int = (
        0  # the GovernanceLevel escalated to; 0 while never escalated
    )
    escalated_at: datetime | None = None
    escalated_to: str | None = Field(default=None, index=True)
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    completed_by: str | None = None
    completed_at: datetime | None = None  # also when a task was cancelled
    outcome_kind: str | None = None
    outcome_json: str | None = None


@dataclass(frozen=True)
class InboxItem:
    """One open task as a person's work list shows it."""

    task_id: int
    invoice_number: str
    customer_id: str
    kind: str
    role: GovernanceLevel
    status: TaskStatus
    assignee_id: str
    escalated_to: str | None
    reason: str
    script_template: str | None
    due_at: datetime
    overdue: bool
    balance_minor: int
    currency: str
    time_zone: str  # the debtor's, where the due time is shown


# -- opening and moving tasks ----------------------------------------------------------


def open_task(
    engine: Engine,
    request: TaskRequest,
    *,
    country: str = "CL",
    subdivision: str | None = None,
) -> OpenedTask:
    """Open the task a case step asks for, or return the one it already opened."""
    # Limit: a TaskRequest names a time zone but no country, so the holiday calendar
    # is Chile's unless the caller says otherwise; a country on the request lifts this.
    try:
        return _open(engine, request, country, subdivision)
    except IntegrityError:
        # A concurrent attempt inserted the same step between our read and our insert.
        return _open(engine, request, country, subdivision)


def _open(
    engine: Engine, request: TaskRequest, country: str, subdivision: str | None
) -> OpenedTask:
    with session_scope(engine) as session:
        task = session.exec(
            select(HumanTask).where(
                HumanTask.tenant == request.tenant,
                HumanTask.workflow_id == request.workflow_id,
                HumanTask.step_id == request.step_id,
            )
        ).first()
        if task is None:
            task = _new_task(session, request, country, subdivision)
            session.add(task)
            session.flush()
            log.info(
                "opened %s task %s on invoice %s for %s, due %s",
                task.kind,
                task.id,
                task.invoice_number,
                task.assignee_id,
                task.due_at.isoformat(),
            )
        assert task.id is not None
        return OpenedTask(
            task_id=task.id, assignee_id=task.assignee_id, due_at=task.due_at
        )


def _new_task(
    session: Session, request: TaskRequest, country: str, subdivision: str | None
) -> HumanTask:
    invoice = find_invoice(session, request.tenant, request.invoice_number)
    if invoice is None:
        raise TaskError(
            f"no invoice {request.invoice_number!r} in tenant {request.tenant!r}; a task "
            "belongs to an imported invoice"
        )
    executive_id = assignee_for(
        session, request.tenant, invoice.customer_id, invoice.segment
    )
    due_at = add_business_days(
        request.opened_at,
        request.sla_business_days,
        time_zone=request.time_zone,
        country=country,
        subdivision=subdivision,
    )
    return HumanTask(
        tenant=request.tenant,
        invoice_number=request.invoice_number,
        workflow_id=request.workflow_id,
        step_id=request.step_id,
        kind=request.kind,
        role=GovernanceLevel(request.role),
        assignee_id=person_at_level(
            session, request.tenant, executive_id, request.role
        ),
        reason=request.reason,
        script_template=request.script_template,
        time_zone=request.time_zone,
        opened_at=request.opened_at,
        due_at=due_at,
    )


def escalate_task(
    engine: Engine, task_id: int, *, to_level: GovernanceLevel, at: datetime
) -> str:
    """Hand a task up to ``to_level`` once; returns who holds it now."""
    with session_scope(engine) as session:
        task = _locked(session, task_id)
        holder = task.escalated_to or task.assignee_id
        # At or above that level already, or finished: a repeated timer changes nothing.
        if (
            to_level <= max(task.role, task.escalation_level)
            or task.status not in OPEN_STATUSES
        ):
            return holder
        target = person_at_level(session, task.tenant, task.assignee_id, to_level)
        task.sqlmodel_update(
            {
                "escalation_level": int(to_level),
                "escalated_at": at,
                "escalated_to": target,
            }
        )
        session.add(task)
    log.info(
        "escalated task %s from %s to %s (%s)", task_id, holder, target, to_level.name
    )
    return target


def find_task(engine: Engine, tenant: str, task_id: int) -> HumanTask:
    """One task of the tenant by its id, as it stands; an unknown id is refused."""
    with session_scope(engine) as session:
        task = session.get(HumanTask, task_id)
    if task is None or task.tenant != tenant:
        raise unknown_task(tenant, task_id)
    return task


def unknown_task(tenant: str, task_id: int) -> TaskError:
    """The refusal for a task id the tenant does not have, saying where ids are listed."""
    return TaskError(
        f"no task {task_id} in tenant {tenant}; task ids are the #numbers that "
        "'starter.py inbox PERSON' lists"
    )


def claim_task(engine: Engine, task_id: int, person_id: str, at: datetime) -> HumanTask:
    """Mark a task as being worked by a person who may act on it."""
    with session_scope(engine) as session:
        task = _locked(session, task_id)
        _check_may_act(session, task, person_id)
        if task.status == TaskStatus.CLAIMED and task.claimed_by == person_id:
            return task
        if task.status != TaskStatus.OPEN:
            raise TaskError(
                f"task {task_id} is {_state_of(task)}; only an open task can be claimed"
            )
        task.sqlmodel_update(
            {"status": TaskStatus.CLAIMED, "claimed_by": person_id, "claimed_at": at}
        )
        session.add(task)
        return task


def complete_task(
    engine: Engine, task_id: int, person_id: str, outcome: TaskOutcome, at: datetime
) -> HumanTask:
    """Record what a person found on a task and close it; a repeated completion is harmless."""
    stored = json_text(outcome)
    with session_scope(engine) as session:
        task = _locked(session, task_id)
        _check_may_act(session, task, person_id)
        if task.status == TaskStatus.DONE and task.outcome_json == stored:
            return (
                task  # the same completion again: a retried activity or a double click
            )
        if task.status not in OPEN_STATUSES:
            raise TaskError(
                f"task {task_id} is {_state_of(task)}; it cannot be completed"
            )
        _check_outcome(session, task, person_id, outcome, at)
        task.sqlmodel_update(
            {
                "status": TaskStatus.DONE,
                "completed_by": person_id,
                "completed_at": at,
                "outcome_kind": TaskOutcomeKind(outcome.kind),
                "outcome_json": stored,
            }
        )
        session.add(task)
        # In the same transaction: the weekly call cap sees the call as soon as it is done.
        record_call_made(session, task, outcome, at)
    log.info("task %s done by %s: %s", task_id, person_id, outcome.kind)
    return task


def cancel_open_tasks(
    engine: Engine,
    tenant: str,
    workflow_id: str,
    *,
    at: datetime,
    task_ids: Sequence[int] | None = None,
) -> list[int]:
    """Cancel a case's unfinished tasks (all, or those named) when they lost their purpose."""
    with session_scope(engine) as session:
        statement = select(HumanTask).where(
            HumanTask.tenant == tenant,
            HumanTask.workflow_id == workflow_id,
            col(HumanTask.status).in_(OPEN_STATUSES),
        )
        if task_ids is not None:
            statement = statement.where(col(HumanTask.id).in_(list(task_ids)))
        tasks = session.exec(statement.with_for_update()).all()
        for task in tasks:
            task.sqlmodel_update({"status": TaskStatus.CANCELLED, "completed_at": at})
            session.add(task)
            release_call(session, task, at)
        return [task.id for task in tasks if task.id is not None]


def _locked(session: Session, task_id: int) -> HumanTask:
    # Row lock on PostgreSQL, so two people acting at once are serialised; SQLite locks
    # the whole store on write anyway.
    task = session.get(HumanTask, task_id, with_for_update=True)
    if task is None:
        raise TaskError(f"no task {task_id}")
    return task


def _state_of(task: HumanTask) -> str:
    if task.status == TaskStatus.CLAIMED:
        return f"claimed by {task.claimed_by!r}"
    if task.status == TaskStatus.DONE:
        return f"done by {task.completed_by!r} ({task.outcome_kind})"
    return str(task.status)


def _check_may_act(session: Session, task: HumanTask, person_id: str) -> None:
    person = find_person(session, task.tenant, person_id)
    if not person.active:
        raise TaskError(
            f"{person_id!r} is no longer in the team and cannot act on tasks"
        )
    holders = {task.assignee_id, task.escalated_to}
    if person_id in holders:
        return
    if person_id in supervisors_of(session, task.tenant, task.assignee_id):
        return
    raise TaskError(
        f"{person_id!r} may not act on task {task.id}: it is assigned to "
        f"{task.assignee_id!r}"
        + (f" and escalated to {task.escalated_to!r}" if task.escalated_to else "")
        + "; only they or the people above them may"
    )


# -- outcomes --------------------------------------------------------------------------


def _check_outcome(
    session: Session,
    task: HumanTask,
    person_id: str,
    outcome: TaskOutcome,
    at: datetime,
) -> None:
    if outcome.task_id != task.id:
        raise TaskError(
            f"the outcome is for task {outcome.task_id}, not task {task.id}"
        )
    if outcome.completed_by != person_id:
        raise TaskError(
            f"the outcome names {outcome.completed_by!r} but {person_id!r} is completing"
        )
    try:
        kind = TaskOutcomeKind(outcome.kind)
    except ValueError:
        known = ", ".join(kind.value for kind in TaskOutcomeKind)
        raise TaskError(f"unknown outcome {outcome.kind!r} (known: {known})") from None
    if kind is not TaskOutcomeKind.PAYMENT_PROMISE and outcome.promise is not None:
        raise TaskError(f"a {kind} outcome carries no payment promise")
    if kind is not TaskOutcomeKind.DISPUTE and outcome.dispute is not None:
        raise TaskError(f"a {kind} outcome carries no dispute")
    if kind is TaskOutcomeKind.PAYMENT_PROMISE:
        _check_promise(session, task, outcome, at)
    if kind is TaskOutcomeKind.DISPUTE:
        _check_dispute(session, task, outcome)


def _check_promise(
    session: Session, task: HumanTask, outcome: TaskOutcome, at: datetime
) -> None:
    promise = outcome.promise
    if promise is None:
        raise TaskError("a payment_promise outcome needs the promise: amount and date")
    _check_amount(session, task, promise.amount_minor, "promise")
    today = local_date_of(at, task.time_zone)
    if promise.promised_date < today:
        raise TaskError(
            f"the promised date {promise.promised_date} is in the past (today is {today} "
            f"in {task.time_zone}); record the date the debtor commits to from now on"
        )


def _check_dispute(session: Session, task: HumanTask, outcome: TaskOutcome) -> None:
    dispute = outcome.dispute
    if dispute is None:
        raise TaskError("a dispute outcome needs the dispute: amount and category")
    _check_amount(session, task, dispute.amount_minor, "disputed amount")
    try:
        DisputeCategory(dispute.category)
    except ValueError:
        known = ", ".join(category.value for category in DisputeCategory)
        raise TaskError(
            f"dispute category {dispute.category!r} is unknown (known: {known})"
        ) from None


def _check_amount(
    session: Session, task: HumanTask, amount_minor: int, what: str
) -> None:
    invoice = find_invoice(session, task.tenant, task.invoice_number)
    if invoice is None:
        raise TaskError(f"invoice {task.invoice_number!r} of task {task.id} is gone")
    if amount_minor <= 0:
        raise TaskError(
            f"the {what} must be above zero, not {amount_minor} minor units"
        )
    if amount_minor > invoice.balance_minor:
        raise TaskError(
            f"the {what} of {format_amount(amount_minor, invoice.currency)} is more "
            f"than the balance {format_amount(invoice.balance_minor, invoice.currency)} of "
            f"invoice {invoice.invoice_number}"
        )


# -- work lists ------------------------------------------------------------------------


def inbox(
    engine: Engine,
    tenant: str,
    person_id: str,
    *,
    team: bool = False,
    at: datetime | None = None,
) -> list[InboxItem]:
    """A person's open tasks, soonest due first; with ``team``, also those of their reports."""
    at = at or utc_now()
    with session_scope(engine) as session:
        people = {person_id}
        if team:
            people |= team_of(session, tenant, person_id)
        statement = _open_items(tenant).where(_held_by(people))
        return [_item(task, invoice, at) for task, invoice in session.exec(statement)]


def breached(
    engine: Engine, tenant: str, at: datetime, supervisor_id: str | None = None
) -> list[InboxItem]:
    """Unfinished tasks past their SLA at ``at``; with a supervisor, only their team's."""
    with session_scope(engine) as session:
        statement = _open_items(tenant).where(col(HumanTask.due_at) < at)
        if supervisor_id is not None:
            people = {supervisor_id} | team_of(session, tenant, supervisor_id)
            statement = statement.where(_held_by(people))
        return [_item(task, invoice, at) for task, invoice in session.exec(statement)]


def _open_items(tenant: str) -> SelectOfScalar[tuple[HumanTask, Invoice]]:
    statement: SelectOfScalar[tuple[HumanTask, Invoice]] = (
        select(HumanTask, Invoice)  # type: ignore[assignment]
        .join(
            Invoice,
            and_(
                col(Invoice.tenant) == col(HumanTask.tenant),
                col(Invoice.invoice_number) == col(HumanTask.invoice_number),
            ),
        )
        .where(HumanTask.tenant == tenant, col(HumanTask.status).in_(OPEN_STATUSES))
        .order_by(col(HumanTask.due_at), col(HumanTask.id))
    )
    return statement


def _held_by(people: set[str]) -> ColumnElement[bool]:
    return or_(
        col(HumanTask.assignee_id).in_(people), col(HumanTask.escalated_to).in_(people)
    )


def _item(task: HumanTask, invoice: Invoice, at: datetime) -> InboxItem:
    assert task.id is not None
    return InboxItem(
        task_id=task.id,
        invoice_number=task.invoice_number,
        customer_id=invoice.customer_id,
        kind=task.kind,
        role=GovernanceLevel(task.role),
        status=TaskStatus(task.status),
        assignee_id=task.assignee_id,
        escalated_to=task.escalated_to,
        reason=task.reason,
        script_template=task.script_template,
        due_at=task.due_at,
        overdue=task.due_at < at,
        balance_minor=invoice.balance_minor,
        currency=invoice.currency,
        time_zone=task.time_zone,
    )


# -- the case file ---------------------------------------------------------------------


def _note_of(outcome_json: str | None) -> str:
    """The note a person left when completing a task, as the case file shows it."""
    note = json.loads(outcome_json).get("note") if outcome_json else None
    return f": {note}" if note else ""


@dataclass(frozen=True)
class CaseView:
    """One invoice as a supervisor reviews it: its standing, tasks, commands and contacts."""

    invoice: Invoice
    tasks: list[HumanTask]
    supervisor_actions: list[SupervisorAction]
    contacts: list[ContactLedgerEntry]
    promises: list[StoredPromise] = field(default_factory=list)
    disputes: list[StoredDispute] = field(default_factory=list)
    time_zone: str = "UTC"  # the debtor's, where the case file shows its instants
    payments: list[Payment] = field(default_factory=list)  # and credits, oldest first
    # Hand-entered changes and stop facts, on the invoice or on its debtor.
    operator_actions: list[OperatorAction] = field(default_factory=list)
    stop_fact_records: list[StopFactRecord] = field(default_factory=list)

    @property
    def balance_minor(self) -> int:
        """What the debtor still owes, in minor units of the invoice's currency."""
        return self.invoice.balance_minor

    @property
    def status(self) -> str:
        """The invoice's committed status."""
        return self.invoice.status

    def timeline(self) -> list[TimelineEntry]:
        """Tasks, commands, hand-entered changes, stop facts, contacts, promises and
        disputes in one list, oldest first."""
        entries = [
            TimelineEntry(task.opened_at, "task", f"{task.kind} for {task.assignee_id}")
            for task in self.tasks
        ]
        entries += [
            TimelineEntry(
                task.completed_at,
                "task",
                f"#{task.id} {task.kind} {task.status} by {task.completed_by}"
                + (f": {task.outcome_kind}" if task.outcome_kind else "")
                + _note_of(task.outcome_json),
            )
            for task in self.tasks
            if task.completed_at is not None and task.status == TaskStatus.DONE
        ]
        entries += self._promise_entries() + self._dispute_entries()
        entries += [self._action_entry(action) for action in self.operator_actions]
        entries += [
            TimelineEntry(
                record.at,
                "stop_fact",
                f"{record.fact} {record.value} by {record.recorded_by} "
                f"({record.source}): {record.reason}",
            )
            for record in self.stop_fact_records
        ]
        entries += [
            # The reason is what a supervisor wrote: for a note, the note itself.
            TimelineEntry(
                action.at,
                "supervisor",
                f"{action.action} by {action.actor}: {action.reason}",
            )
            for action in self.supervisor_actions
        ]
        entries += [
            TimelineEntry(
                entry.decided_at or entry.planned_at,
                "contact",
                f"{entry.step_id} by {entry.channel}: {entry.status}",
            )
            for entry in self.contacts
        ]
        return sorted(entries, key=lambda entry: as_utc(entry.at))

    def _action_entry(self, action: OperatorAction) -> TimelineEntry:
        change = (
            f" ({action.before_value} → {action.after_value})"
            if action.before_value is not None or action.after_value is not None
            else ""
        )
        effective = ""
        if action.effective_at is not None:
            when = format_local(as_utc(action.effective_at), self.time_zone)
            effective = f", effective {when}"
        subject = "" if action.invoice_number else f" on debtor {action.customer_id}"
        return TimelineEntry(
            action.recorded_at,
            action.kind,
            f"by {action.person_id}{subject}: {action.reason}{change}{effective}",
        )

    def _promise_entries(self) -> list[TimelineEntry]:
        currency = self.invoice.currency
        entries = []
        for promise in self.promises:
            amount = format_amount(promise.amount_minor, currency)
            entries.append(
                TimelineEntry(
                    promise.recorded_at,
                    "promise",
                    f"#{promise.sequence} {amount} by "
                    f"{promise.promised_date}, recorded by {promise.recorded_by}",
                )
            )
            if promise.outcome_at is not None:
                paid = format_amount(promise.paid_minor, currency)
                entries.append(
                    TimelineEntry(
                        promise.outcome_at,
                        "promise",
                        f"#{promise.sequence} {promise.outcome} ({paid} paid since)",
                    )
                )
        return entries

    def _dispute_entries(self) -> list[TimelineEntry]:
        currency = self.invoice.currency
        entries = []
        for dispute in self.disputes:
            amount = format_amount(dispute.amount_minor, currency)
            owner = f", owner {dispute.owner_id}" if dispute.owner_id else ""
            note = f": {dispute.note}" if dispute.note else ""
            entries.append(
                TimelineEntry(
                    dispute.opened_at,
                    "dispute",
                    f"{dispute.dispute_id} {amount} {dispute.category} by "
                    f"{dispute.opened_by}{owner}{note}",
                )
            )
            if dispute.resolved_at is not None:
                who = f" by {dispute.resolved_by}" if dispute.resolved_by else ""
                credit = (
                    f", {format_amount(dispute.credit_minor, currency)} credited"
                    if dispute.credit_minor
                    else ""
                )
                note = f": {dispute.resolution_note}" if dispute.resolution_note else ""
                entries.append(
                    TimelineEntry(
                        dispute.resolved_at,
                        "dispute",
                        f"{dispute.dispute_id} {dispute.status}{who}{credit}{note}",
                    )
                )
        return entries


def case_view(engine: Engine, tenant: str, invoice_number: str) -> CaseView:
    """Everything the store knows about one invoice's case, each list in time order."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, invoice_number)
        if invoice is None:
            raise TaskError(
                f"no invoice {invoice_number!r} for tenant {tenant}; check the folio "
                "(leading zeros count) or import it first"
            )
        customer = find_customer(session, tenant, invoice.customer_id)
        tasks = session.exec(
            select(HumanTask)
            .where(
                HumanTask.tenant == tenant, HumanTask.invoice_number == invoice_number
            )
            .order_by(col(HumanTask.opened_at), col(HumanTask.id))
        ).all()
        actions = session.exec(
            select(SupervisorAction)
            .where(
                SupervisorAction.tenant == tenant,
                SupervisorAction.invoice_number == invoice_number,
            )
            .order_by(col(SupervisorAction.at), col(SupervisorAction.id))
        ).all()
        payments = session.exec(
            select(Payment)
            .where(Payment.tenant == tenant, Payment.invoice_number == invoice_number)
            .order_by(col(Payment.received_at), col(Payment.id))
        ).all()
        stop_fact_records = session.exec(
            select(StopFactRecord)
            .where(
                StopFactRecord.tenant == tenant,
                or_(
                    col(StopFactRecord.invoice_number) == invoice_number,
                    and_(
                        col(StopFactRecord.invoice_number).is_(None),
                        col(StopFactRecord.customer_id) == invoice.customer_id,
                    ),
                ),
            )
            .order_by(col(StopFactRecord.at), col(StopFactRecord.id))
        ).all()
    contacts = ContactLedger(engine).entries_for(tenant, invoice_number)
    return CaseView(
        invoice,
        list(tasks),
        list(actions),
        contacts,
        promises_of(engine, tenant, invoice_number),
        disputes_of(engine, tenant, invoice_number),
        customer.time_zone if customer else "UTC",
        list(payments),
        actions_of(engine, tenant, invoice_number, invoice.customer_id),
        list(stop_fact_records),
    )
