"""InvoiceWorkflow: one durable case per invoice, from issuance until it is settled or closed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.people import PeopleActivities
    from activities.sending import (
        NO_REACHABLE_CONTACT,
        OUTCOME_UNKNOWN,
        ReminderSender,
    )
    from receivables import search_attributes as sa
    from receivables.case import (
        CallTaskRequest,
        CallTaskStatus,
        CaseClosed,
        CaseState,
        CloseTasksRequest,
        CommandReceipt,
        CreditApplied,
        DisputeCategory,
        DisputeOpened,
        DisputeRecord,
        DisputeResolution,
        DisputeResolved,
        DisputeStatus,
        DueDateChanged,
        EscalateCommand,
        EscalationRequest,
        GovernanceLevel,
        InvoiceCase,
        NextStep,
        OpenedTask,
        PauseCommand,
        PaymentPromise,
        PaymentReceived,
        PromiseOutcome,
        PromiseRecord,
        ReassignCommand,
        SendOutcome,
        SendReminderRequest,
        SendStatus,
        Stage,
        SupervisorCommand,
        TaskOutcome,
        TaskOutcomeKind,
        TaskRequest,
        TimelineEntry,
    )
    from receivables.case_attributes import case_updates
    from receivables.money import format_amount
    from receivables.planning import (
        DueDateReplan,
        PlannedStep,
        SkippedStep,
        announces_a_past_due_date,
        days_past_due,
        format_local,
        keyed_to_due_date,
        local_date_of,
        local_instant,
        next_due_step,
        occurrence_of,
        plan_case,
        replan_after_due_date_move,
        upcoming_step,
        within_usual_contact_hours,
    )
    from receivables.policy import TaskSpec
    from workflows.case_holds import (
        ActivePromise,
        OpenDispute,
        Pause,
        TaskInFlight,
        silence_reason,
    )

# A step noticed this long after its time, outside usual contact hours, waits for its
# next local send time.
LATE_TOLERANCE = timedelta(minutes=30)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
SEND_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# Cases started before promises and disputes were written to the store replay without it.
RECORD_COMMITMENTS_PATCH = "record-promises-and-disputes"
CALLS_PASS_THE_GATE = "call-steps-pass-the-contact-gate"
# Cases that moved a due date before reminders were keyed by the date they announce
# replay without it: their before-due reminders stay done whatever the move.
REMINDERS_KEYED_BY_DUE_DATE = "before-due-reminders-keyed-by-due-date"
# Cases that moved a due date while a step waited on a deferral replay without it: their
# step kept the instant it was deferred to, whatever the new date.
DEFERRALS_FOLLOW_DUE_DATE = "deferrals-follow-the-moved-due-date"
# Cases that sent a before-due reminder a hold pushed past the due date replay without it.
HELD_REMINDERS_OF_A_PAST_DUE_DATE_SKIPPED = "held-reminders-of-a-past-due-date-skipped"
# Cases whose due date moved while a reminder was with the channel replay without it.
SENDS_IN_FLIGHT_FOLLOW_DUE_DATE = "sends-in-flight-follow-the-moved-due-date"
# From this case behaviour on (InvoiceCase.behaviour), DunningNextActionAt is cleared when
# nothing is left planned and upserted when a step is moved or deferred; a patch marker
# instead would have cost every new case two billable actions.
NEXT_ACTION_FOLLOWS_THE_PLAN = 1
ROLE_LEVELS = {
    "executive": GovernanceLevel.EXECUTIVE,
    "supervisor": GovernanceLevel.SUPERVISOR,
    "strategic": GovernanceLevel.STRATEGIC,
}


@dataclass(frozen=True)
class _TaskToOpen:
    step_id: str
    spec: TaskSpec
    reason: str


@workflow.defn
class InvoiceWorkflow:
    """Plans every step from the pinned policy, waits on durable timers, re-plans on new facts."""

    @workflow.init
    def __init__(self, case: InvoiceCase) -> None:
        self._case = case
        self._due_date = case.due_date
        self._payments: dict[str, int] = {}
        self._credits: dict[str, int] = {}
        self._closed_as: Stage | None = None
        self._settled_by_credit = False
        self._done: set[str] = set()
        self._timeline: list[TimelineEntry] = []
        self._facts_version = 0
        self._published: tuple[object, ...] | None = None
        self._waiting_for = "the first step"
        # People in the loop: what holds reminders back, and the tasks the case waits on.
        self._pause: Pause | None = None
        self._disputes: dict[str, OpenDispute] = {}
        self._promise: ActivePromise | None = None
        self._promises_made = 0
        # Promises and disputes as the store should hold them; written one activity per
        # fact, in the order the facts happened (a later fact on the same key coalesces).
        self._promise_records: dict[int, PromiseRecord] = {}
        self._dispute_records: dict[str, DisputeRecord] = {}
        self._records_to_write: dict[tuple[str, str], None] = {}
        # Task outcomes applied, so the same completion told twice changes nothing.
        self._completed_tasks: dict[int, TaskOutcome] = {}
        self._contact_under_repair = False
        self._contact_task_asked = False
        self._tasks: dict[int, TaskInFlight] = {}
        self._tasks_to_open: list[_TaskToOpen] = []
        self._tasks_to_close: list[int] = []
        self._escalation = GovernanceLevel.EXECUTIVE
        self._assignee: str | None = None
        self._silenced_since: datetime | None = None
        # Steps found late are moved to the next local send time instead of going out at
        # whatever hour the case noticed them.
        self._moved: dict[str, datetime] = {}
        self._sent = 0
        self._skipped = 0
        # A stop rule's denial (lawsuit served, insolvency, cession...): no step contacts the
        # debtor again; the case stays open for payments and for a person to close it.
        self._stopped_by: str | None = None
        self._opened_at = workflow.now()
        self._shift_days = 0
        # Set by the first due date move of a case on this release (see change_due_date).
        self._keys_name_due_date = False
        self._base_plan = self._make_plan()

    @workflow.run
    async def run(self, case: InvoiceCase) -> CaseState:
        """Walk the dunning timeline: plan, wait, act, record, until the case ends."""
        self._record("opened", f"policy {self._policy_label}, segment {case.segment}")
        if case.disputed:
            self._open_dispute(
                DisputeOpened(
                    "import",
                    case.amount_minor,
                    DisputeCategory.OTHER,
                    "import",
                    "marked disputed in the imported portfolio",
                )
            )

        while not self._stage().is_terminal:
            self._publish()

            if await self._act_on_what_is_due():
                continue

            await self._wait_for_next_event()

        if self._tasks or self._tasks_to_close:
            # Tasks of an ended case lost their purpose: nobody should work them any more.
            await self._close_tasks(None, f"case {self._stage()}")
        self._end_commitments_with_the_case()
        while self._records_to_write:
            await self._write_next_record()
        self._publish()
        return self.state()

    # -- money and facts (signals) -------------------------------------------------------

    @workflow.signal
    def record_payment(self, payment: PaymentReceived) -> None:
        """Apply a payment; a re-delivered reference or a zero amount changes nothing."""
        if not self._accepts_money(
            payment.reference, payment.currency, payment.amount_minor
        ):
            return
        self._payments[payment.reference] = payment.amount_minor
        if self._balance() <= 0:
            self._settled_by_credit = False
        self._facts_changed(
            "payment",
            f"{payment.reference}: {self._money(payment.amount_minor)} received",
        )
        self._check_promise_kept()

    @workflow.signal
    def apply_credit(self, credit: CreditApplied) -> None:
        """Apply a credit note or an adjustment; a re-delivered reference changes nothing."""
        if not self._accepts_money(
            credit.reference, credit.currency, credit.amount_minor
        ):
            return
        self._credits[credit.reference] = credit.amount_minor
        if self._balance() <= 0:
            self._settled_by_credit = True
        self._facts_changed(
            credit.kind,
            f"{credit.reference}: {self._money(credit.amount_minor)} credited",
        )

    @workflow.signal
    def change_due_date(self, change: DueDateChanged) -> None:
        """Move the due date and re-plan every step that has not happened yet.

        Moved later, a before-due reminder already sent for the old date is sent again
        for the new one when its new time is still ahead; moved earlier, nothing repeats.
        """
        if self._stage().is_terminal or change.new_due_date == self._due_date:
            return
        old, self._due_date = self._due_date, change.new_due_date
        old_plan, replan = self._base_plan, None
        if workflow.patched(REMINDERS_KEYED_BY_DUE_DATE):
            replan = self._replan_for_due_date(moved_later=self._due_date > old)
        else:
            self._base_plan = self._make_plan()
        if workflow.patched(DEFERRALS_FOLLOW_DUE_DATE):
            self._forget_moves_of_replanned_steps(old_plan)
        self._facts_changed(
            "due_date_changed",
            f"{old} -> {change.new_due_date} by {change.changed_by}: {change.reason}",
        )
        if replan is not None:
            self._record_replan(replan, old)

    @workflow.signal
    def cancel(self, closing: CaseClosed) -> None:
        """Cancel the invoice: no further contact."""
        self._close(Stage.CANCELLED, closing)

    @workflow.signal
    def write_off(self, closing: CaseClosed) -> None:
        """Write the balance off: no further contact."""
        self._close(Stage.WRITTEN_OFF, closing)

    # -- supervisor commands (updates with validators) ------------------------------------

    @workflow.update
    def pause(self, command: PauseCommand) -> CommandReceipt:
        """Hold every reminder until a date or until resumed."""
        until = None
        if command.until is not None:
            until = local_instant(command.until, time(0, 0), self._case.time_zone)
        self._pause = Pause(workflow.now(), until, command.actor, command.reason)
        return self._command_done(
            "paused", command, f"until {command.until or 'resumed'}"
        )

    @pause.validator
    def _validate_pause(self, command: PauseCommand) -> None:
        self._refuse_if_closed("pause")
        self._refuse_without_reason(command)
        if self._pause is not None:
            raise ValueError(f"invoice {self._case.invoice_number} is already paused")
        if command.until is not None and command.until <= self._local_today():
            raise ValueError(
                f"pause until {command.until}: the date must be after today"
            )

    @workflow.update
    def resume(self, command: SupervisorCommand) -> CommandReceipt:
        """End a pause; the plan continues at its next step, shifted by the pause."""
        self._pause = None
        return self._command_done("resumed", command, "")

    @resume.validator
    def _validate_resume(self, command: SupervisorCommand) -> None:
        self._refuse_if_closed("resume")
        self._refuse_without_reason(command)
        if self._pause is None:
            raise ValueError(f"invoice {self._case.invoice_number} is not paused")

    @workflow.update
    def escalate(self, command: EscalateCommand) -> CommandReceipt:
        """Raise the case to a governance level, with a review task for that level."""
        self._escalation = command.level
        spec = TaskSpec(
            kind="review_case", role=_role_of(command.level), sla_business_days=2
        )
        self._tasks_to_open.append(
            _TaskToOpen(f"ESC-{command.level.name}", spec, command.reason)
        )
        return self._command_done(
            "escalated", command, f"to {command.level.name.lower()}"
        )

    @escalate.validator
    def _validate_escalate(self, command: EscalateCommand) -> None:
        self._refuse_if_closed("escalate")
        self._refuse_without_reason(command)
        if command.level <= self._escalation:
            raise ValueError(
                f"invoice {self._case.invoice_number} is already at "
                f"{self._escalation.name.lower()}; escalate to a higher level"
            )

    @workflow.update
    def reassign(self, command: ReassignCommand) -> CommandReceipt:
        """Hand the case to another executive."""
        self._assignee = command.executive_id
        return self._command_done("reassigned", command, f"to {command.executive_id}")

    @reassign.validator
    def _validate_reassign(self, command: ReassignCommand) -> None:
        self._refuse_if_closed("reassign")
        self._refuse_without_reason(command)
        if command.executive_id == self._assignee:
            raise ValueError(f"invoice {self._case.invoice_number} is already theirs")

    @workflow.update
    def add_note(self, command: SupervisorCommand) -> CommandReceipt:
        """Add a note to the case file."""
        return self._command_done("note", command, "")

    @add_note.validator
    def _validate_note(self, command: SupervisorCommand) -> None:
        self._refuse_without_reason(command)

    # -- disputes, promises, task outcomes (updates) ---------------------------------------

    @workflow.update
    def open_dispute(self, dispute: DisputeOpened) -> CommandReceipt:
        """Contest an amount: reminders stop for it (or for all, as the policy says)."""
        self._open_dispute(dispute)
        return CommandReceipt(
            self._case.invoice_number, f"dispute {dispute.dispute_id} open"
        )

    @open_dispute.validator
    def _validate_open_dispute(self, dispute: DisputeOpened) -> None:
        self._refuse_if_closed("open a dispute on")
        if dispute.dispute_id in self._disputes:
            raise ValueError(f"dispute {dispute.dispute_id} is already open")
        contested = sum(d.amount_minor for d in self._disputes.values())
        if not 0 < dispute.amount_minor <= self._balance() - contested:
            raise ValueError(
                f"disputed amount {self._money(dispute.amount_minor)} must be positive and "
                f"at most the undisputed balance {self._money(self._balance() - contested)}"
            )

    @workflow.update
    def resolve_dispute(self, resolution: DisputeResolved) -> CommandReceipt:
        """End a dispute: upheld credits the debtor, rejected resumes the plan shifted."""
        self._end_dispute(resolution)
        return CommandReceipt(
            self._case.invoice_number, f"dispute {resolution.resolution}"
        )

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, resolution: DisputeResolved) -> None:
        if resolution.dispute_id not in self._disputes:
            open_ids = ", ".join(sorted(self._disputes)) or "none"
            raise ValueError(
                f"no open dispute {resolution.dispute_id} (open: {open_ids})"
            )

    @workflow.signal
    def report_dispute(self, dispute: DisputeOpened) -> None:
        """A dispute from a feed (ERP, replay): applied if valid, else recorded and ignored."""
        try:
            self._validate_open_dispute(dispute)
        except ValueError as refused:
            self._record("ignored", f"dispute {dispute.dispute_id}: {refused}")
            return
        self._open_dispute(dispute)

    @workflow.signal
    def report_dispute_resolution(self, resolution: DisputeResolved) -> None:
        """A dispute's end from a feed: applied if that dispute is open, else recorded."""
        try:
            self._validate_resolve_dispute(resolution)
        except ValueError as refused:
            self._record("ignored", f"dispute {resolution.dispute_id}: {refused}")
            return
        self._end_dispute(resolution)

    @workflow.update
    def record_promise(self, promise: PaymentPromise) -> CommandReceipt:
        """Record a payment promise: reminders wait until its date plus the policy's grace."""
        self._start_promise(promise)
        return CommandReceipt(
            self._case.invoice_number, f"promise to {promise.promised_date}"
        )

    @record_promise.validator
    def _validate_promise(self, promise: PaymentPromise) -> None:
        self._refuse_if_closed("record a promise on")
        rules = self._case.policy.promises
        if self._promises_made >= rules.max_per_invoice:
            raise ValueError(
                f"invoice {self._case.invoice_number} already had {self._promises_made} "
                f"promises, the policy's limit; escalate instead"
            )
        if promise.promised_date < self._local_today():
            raise ValueError(f"promised date {promise.promised_date} is in the past")
        if promise.amount_minor <= 0:
            raise ValueError("a promise needs a positive amount")

    @workflow.update
    def complete_task(self, outcome: TaskOutcome) -> CommandReceipt:
        """Apply a person's task outcome: it steers what the case does next."""
        if outcome.task_id in self._completed_tasks:
            # Told again (a command retried after a failure): applied once already.
            return CommandReceipt(
                self._case.invoice_number, f"task {outcome.task_id} done"
            )
        task = self._tasks.pop(outcome.task_id)
        self._completed_tasks[outcome.task_id] = outcome
        self._record(
            "task_done",
            f"task {outcome.task_id} ({task.kind}) by {outcome.completed_by}: {outcome.kind}"
            + (f" — {outcome.note}" if outcome.note else ""),
        )
        self._apply_outcome(task, outcome)
        self._facts_version += 1
        self._track_silence()
        return CommandReceipt(self._case.invoice_number, f"task {outcome.task_id} done")

    @complete_task.validator
    def _validate_complete_task(self, outcome: TaskOutcome) -> None:
        done = self._completed_tasks.get(outcome.task_id)
        if done is not None:
            if done == outcome:
                return
            raise ValueError(
                f"task {outcome.task_id} was already completed on invoice "
                f"{self._case.invoice_number} by {done.completed_by} with {done.kind}; "
                "a different outcome cannot replace it"
            )
        if outcome.task_id not in self._tasks:
            raise ValueError(
                f"task {outcome.task_id} is not open on invoice {self._case.invoice_number}"
            )
        self._refuse_completing_an_open_dispute(self._tasks[outcome.task_id])
        if outcome.kind is TaskOutcomeKind.PAYMENT_PROMISE:
            if outcome.promise is None:
                raise ValueError("a payment_promise outcome needs the promise")
            self._validate_promise(outcome.promise)
        if outcome.kind is TaskOutcomeKind.DISPUTE:
            if outcome.dispute is None:
                raise ValueError("a dispute outcome needs the dispute")
            self._validate_open_dispute(outcome.dispute)

    # -- queries -------------------------------------------------------------------------

    @workflow.query
    def state(self) -> CaseState:
        """The case as it stands: stage, amounts, steps done and the next planned step."""
        return CaseState(
            stage=self._stage(),
            segment=self._case.segment,
            policy_name=self._case.policy.name,
            policy_version=self._case.policy.version,
            due_date=self._due_date,
            amount_minor=self._case.amount_minor,
            paid_minor=sum(self._payments.values()),
            credited_minor=sum(self._credits.values()),
            balance_minor=self._balance(),
            currency=self._case.currency,
            steps_done=sorted(self._done),
            next_step=self.next_step(),
            # An ended case waits for nothing; the label of its last wait is history.
            waiting_for="" if self._stage().is_terminal else self._waiting_for,
            paused=self._pause is not None,
            disputed_minor=self._disputed(),
            promised=self._promise is not None,
            escalation_level=int(self._escalation),
            open_tasks=sorted(self._tasks),
        )

    @workflow.query
    def open_disputes(self) -> list[str]:
        """The ids of the disputes open on the invoice, so a resolution can be checked."""
        return sorted(self._disputes)

    @workflow.query
    def balance(self) -> int:
        """Amount − payments − credits, in minor units."""
        return self._balance()

    @workflow.query
    def next_step(self) -> NextStep | None:
        """The next planned step, or None when nothing more is planned."""
        if self._stage().is_terminal:
            return None
        upcoming = upcoming_step(self._plan(), self._done, workflow.now())
        if upcoming is None:
            return None
        channel = (
            upcoming.channel or f"task:{upcoming.task.kind if upcoming.task else ''}"
        )
        return NextStep(upcoming.step_id, channel, upcoming.at, upcoming.local_date)

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        """Every event of the case file, oldest first."""
        return list(self._timeline)

    # -- the loop's two halves: act on what is due, wait for what is next ----------------

    async def _act_on_what_is_due(self) -> bool:
        """Do the one thing that is due now, if any; True when something was done."""
        now = workflow.now()
        if self._tasks_to_open:
            await self._open_task(self._tasks_to_open.pop(0))
            return True
        if self._tasks_to_close:
            ids, self._tasks_to_close = self._tasks_to_close, []
            await self._close_tasks(ids, "its dispute was resolved")
            return True
        if self._records_to_write:
            await self._write_next_record()
            return True
        if self._pause and self._pause.until and self._pause.until <= now:
            self._pause = None
            self._facts_changed("resumed", "pause ended on its date")
            return True
        if self._promise and self._promise.deadline <= now:
            self._promise_broken()
            return True
        late_task = next(
            (t for t in self._tasks.values() if not t.escalated and t.due_at <= now),
            None,
        )
        if late_task is not None:
            await self._escalate_late_task(late_task)
            return True
        return await self._run_due_step(now)

    async def _run_due_step(self, now: datetime) -> bool:
        if self._silence() is not None:
            return False
        step, skipped = next_due_step(
            self._plan(),
            self._done,
            now,
            due_date=self._due_date,
            time_zone=self._case.time_zone,
            catch_up=timedelta(days=self._case.policy.catch_up_days),
            opened_at=self._opened_at,
        )
        self._skip(skipped)
        if step is None:
            return bool(skipped)
        if announces_a_past_due_date(
            step, self._due_date, now, self._case.time_zone
        ) and workflow.patched(HELD_REMINDERS_OF_A_PAST_DUE_DATE_SKIPPED):
            self._skip([SkippedStep(step, "its due date passed while it was held")])
            return True
        if now - step.at > LATE_TOLERANCE and not within_usual_contact_hours(
            now, self._case.time_zone
        ):
            self._move_to_next_send_time(step, now)
            return True
        if (
            step.task is not None
            and step.task.contact_channel is not None
            # Cases that opened call tasks directly before calls passed the gate replay
            # their history unchanged.
            and workflow.patched(CALLS_PASS_THE_GATE)
        ):
            await self._offer_call(step)
        elif step.task is not None:
            self._done.add(step.step_id)
            await self._open_task(
                _TaskToOpen(step.step_id, step.task, f"policy step {step.step_id}")
            )
        else:
            await self._send(step)
        return True

    async def _wait_for_next_event(self) -> None:
        version = self._facts_version
        when, label = self._next_event()
        self._waiting_for = label
        self._publish()
        if when is None:
            # Nothing is planned: the case stays open, with no timer, until a fact arrives.
            await workflow.wait_condition(lambda: self._facts_version != version)
            return
        # A timeout is the normal end of a wait: the next event is due.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._facts_version != version,
                timeout=max(when - workflow.now(), timedelta(seconds=1)),
                timeout_summary=f"until {label}",
            )

    def _next_event(self) -> tuple[datetime | None, str]:
        """The earliest thing the case will do by itself, and how to say it."""
        candidates: list[tuple[datetime, str]] = []
        if self._pause is not None and self._pause.until is not None:
            candidates.append((self._pause.until, "the pause ends"))
        if self._promise is not None:
            candidates.append((self._promise.deadline, "the promise's deadline"))
        for task in self._tasks.values():
            if not task.escalated:
                candidates.append((task.due_at, f"task {task.task_id} SLA"))
        silence = self._silence()
        upcoming = upcoming_step(self._plan(), self._done, workflow.now())
        if silence is None and upcoming is not None:
            what = (
                upcoming.channel
                or f"task {upcoming.task.kind if upcoming.task else ''}"
            )
            local = format_local(upcoming.at, self._case.time_zone)
            candidates.append((upcoming.at, f"{upcoming.step_id} {what} at {local}"))
        if not candidates and self._stopped_by is not None:
            return (
                None,
                f"a payment or a person: collection stopped ({self._stopped_by})",
            )
        if not candidates:
            return None, silence or "a payment or a person: no step left in the policy"
        when, label = min(candidates)
        return when, label if silence is None else f"{label} ({silence})"

    # -- acting --------------------------------------------------------------------------

    async def _send(self, step: PlannedStep) -> None:
        request = SendReminderRequest(
            tenant=self._case.tenant,
            invoice_number=self._case.invoice_number,
            step_id=step.step_id,
            channel=step.channel,
            template=step.template,
            fallback_channels=step.fallback_channels,
            policy_name=self._case.policy.name,
            policy_version=self._case.policy.version,
            planned_at=step.at,
            language=self._case.policy.language,
            disputed_minor=self._disputed(),
            jurisdiction=self._case.policy.jurisdiction,
            on_unknown_outcome=self._case.policy.on_unknown_outcome,
            sms_transliterate=self._case.policy.sms_transliterate,
        )
        asked = self._money(self._balance() - self._disputed())
        announced = self._due_date
        try:
            outcome = await workflow.execute_activity_method(
                ReminderSender.send_reminder,
                request,
                start_to_close_timeout=timedelta(minutes=2),
                # The activity heartbeats from a side thread while it runs: a worker that
                # dies mid-call is noticed in seconds, and the retry asks the channel.
                heartbeat_timeout=SEND_HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=SEND_RETRY,
                summary=f"{step.step_id} {step.channel}: {asked} due",
            )
        except ActivityError as error:
            outcome = SendOutcome(
                SendStatus.FAILED, step.channel, str(error.cause or error)
            )

        if outcome.status is SendStatus.DEFERRED and outcome.retry_at is not None:
            # A contact rule moved it: the same step waits for the lawful instant.
            self._moved[step.step_id] = outcome.retry_at
            self._record("reminder_deferred", self._describe_outcome(step, outcome))
            return

        self._done.add(step.step_id)
        if self._due_date != announced and workflow.patched(
            SENDS_IN_FLIGHT_FOLLOW_DUE_DATE
        ):
            self._settle_sent_for_an_old_due_date(step, announced)
        self._sent += outcome.status is SendStatus.SENT
        self._record(
            f"reminder_{outcome.status}", self._describe_outcome(step, outcome)
        )
        if outcome.status is SendStatus.BLOCKED and outcome.reason.startswith(
            NO_REACHABLE_CONTACT
        ):
            self._ask_for_contact(outcome.reason)
        if outcome.status is SendStatus.STOPPED:
            self._stop_collection(outcome.reason)
        if outcome.status is SendStatus.BLOCKED and outcome.reason.startswith(
            OUTCOME_UNKNOWN
        ):
            self._ask_to_check_delivery(step.step_id, outcome.reason)

    def _stop_collection(self, reason: str) -> None:
        """Skip every remaining step: a stop rule is permanent, retrying would only re-deny."""
        self._stopped_by = reason
        self._record("collection_stopped", reason)
        remaining = [p for p in self._plan() if p.step_id not in self._done]
        self._skip([SkippedStep(p, f"collection stopped: {reason}") for p in remaining])
        workflow.logger.info(
            "case %s: collection stopped: %s", self._case.invoice_number, reason
        )

    async def _offer_call(self, step: PlannedStep) -> None:
        """A call or visit is a contact: the rules decide it before any task is offered."""
        assert step.task is not None and step.task.contact_channel is not None
        task = _TaskToOpen(step.step_id, step.task, f"policy step {step.step_id}")
        request = CallTaskRequest(
            task=self._task_request(task),
            channel=step.task.contact_channel,
            policy_name=self._case.policy.name,
            policy_version=self._case.policy.version,
            planned_at=step.at,
            jurisdiction=self._case.policy.jurisdiction,
        )
        offer = await workflow.execute_activity_method(
            PeopleActivities.offer_call_task,
            request,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"{step.step_id} {request.channel}: ask the contact rules",
        )
        detail = f"{step.step_id} {request.channel}: {offer.trace}"
        if offer.status is CallTaskStatus.DEFERRED and offer.retry_at is not None:
            # Like a deferred reminder, the step waits; its task is offered when lawful.
            self._moved[step.step_id] = offer.retry_at
            self._record("call_deferred", detail)
            return
        self._done.add(step.step_id)
        if offer.status is CallTaskStatus.STOPPED or offer.task is None:
            self._record("call_stopped", detail)
            self._stop_collection(offer.trace)
            return
        self._track_task(task, offer.task, f"{task.reason}; {offer.trace}")

    async def _open_task(self, task: _TaskToOpen) -> None:
        opened = await workflow.execute_activity_method(
            PeopleActivities.open_task,
            self._task_request(task),
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"task {task.spec.kind} for {task.spec.role}: {task.reason}",
        )
        self._track_task(task, opened, task.reason)

    def _task_request(self, task: _TaskToOpen) -> TaskRequest:
        return TaskRequest(
            tenant=self._case.tenant,
            invoice_number=self._case.invoice_number,
            workflow_id=workflow.info().workflow_id,
            step_id=task.step_id,
            kind=task.spec.kind,
            role=ROLE_LEVELS[task.spec.role],
            reason=task.reason,
            script_template=task.spec.script,
            sla_business_days=task.spec.sla_business_days,
            opened_at=workflow.now(),
            time_zone=self._case.time_zone,
        )

    def _track_task(self, task: _TaskToOpen, opened: OpenedTask, reason: str) -> None:
        self._tasks[opened.task_id] = TaskInFlight(
            opened.task_id, task.spec.kind, opened.due_at, task.step_id
        )
        self._assignee = self._assignee or opened.assignee_id
        self._note_dispute_owner(task.step_id, opened.assignee_id, opened.due_at)
        self._record(
            "task_opened",
            f"task {opened.task_id} {task.spec.kind} for {opened.assignee_id}, SLA "
            f"{format_local(opened.due_at, self._case.time_zone)}: {reason}",
        )

    async def _escalate_late_task(self, task: TaskInFlight) -> None:
        level = GovernanceLevel(
            min(int(self._escalation) + 1, GovernanceLevel.STRATEGIC)
        )
        request = EscalationRequest(task.task_id, level, workflow.now(), "SLA missed")
        escalatee = await workflow.execute_activity_method(
            PeopleActivities.escalate_task,
            request,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"task {task.task_id} SLA missed: escalate to {level.name.lower()}",
        )
        task.escalated = True
        self._escalation = max(self._escalation, level)
        self._record(
            "task_escalated",
            f"task {task.task_id} ({task.kind}) missed its SLA; escalated once to "
            f"{level.name.lower()} {escalatee}",
        )

    # -- people in the loop: state changes -----------------------------------------------

    def _open_dispute(self, dispute: DisputeOpened) -> None:
        rules = self._case.policy.disputes
        step_id = f"DSP-{dispute.dispute_id}"
        self._disputes[dispute.dispute_id] = OpenDispute(
            dispute.amount_minor, dispute.category.value, workflow.now(), step_id
        )
        spec = TaskSpec(
            kind="resolve_dispute",
            role=rules.owner_role,
            sla_business_days=rules.sla_business_days,
        )
        self._tasks_to_open.append(
            _TaskToOpen(step_id, spec, f"dispute {dispute.category}")
        )
        self._dispute_records[dispute.dispute_id] = DisputeRecord(
            tenant=self._case.tenant,
            invoice_number=self._case.invoice_number,
            customer_id=self._case.customer_id,
            dispute_id=dispute.dispute_id,
            amount_minor=dispute.amount_minor,
            currency=self._case.currency,
            category=dispute.category,
            opened_at=workflow.now(),
            opened_by=dispute.opened_by,
            note=dispute.note,
        )
        self._write_later("dispute", dispute.dispute_id)
        self._facts_changed(
            "dispute_opened",
            f"{dispute.dispute_id}: {self._money(dispute.amount_minor)} "
            f"{dispute.category} by {dispute.opened_by} ({rules.pause.replace('_', ' ')})"
            + (f": {dispute.note}" if dispute.note else ""),
        )

    def _start_promise(
        self, promise: PaymentPromise, task_id: int | None = None
    ) -> None:
        rules = self._case.policy.promises
        if self._promise is not None:
            # The debtor's new word replaces the old one, which is neither kept nor broken.
            self._end_promise(PromiseOutcome.CANCELLED)
        check_day = promise.promised_date + timedelta(days=rules.grace_days)
        deadline = local_instant(check_day, rules.check_time, self._case.time_zone)
        self._promises_made += 1
        sequence = self._promises_made
        self._promise = ActivePromise(
            promise.amount_minor,
            deadline,
            sum(self._payments.values()),
            workflow.now(),
            sequence,
        )
        self._promise_records[sequence] = PromiseRecord(
            tenant=self._case.tenant,
            invoice_number=self._case.invoice_number,
            customer_id=self._case.customer_id,
            sequence=sequence,
            amount_minor=promise.amount_minor,
            currency=self._case.currency,
            promised_date=promise.promised_date,
            deadline=deadline,
            recorded_by=promise.recorded_by,
            recorded_at=workflow.now(),
            task_id=task_id,
        )
        self._write_later("promise", str(sequence))
        self._facts_changed(
            "promise",
            f"{self._money(promise.amount_minor)} by {promise.promised_date} "
            f"(recorded by {promise.recorded_by}); checked "
            f"{format_local(deadline, self._case.time_zone)}",
        )

    def _check_promise_kept(self) -> None:
        promise = self._promise
        if promise is None:
            return
        paid_since = sum(self._payments.values()) - promise.paid_before
        if paid_since >= promise.amount_minor or self._balance() <= 0:
            self._end_promise(PromiseOutcome.KEPT)
            self._facts_changed("promise_kept", f"{self._money(paid_since)} paid since")

    def _promise_broken(self) -> None:
        promise = self._promise
        assert promise is not None
        paid_since = self._end_promise(PromiseOutcome.BROKEN)
        spec = self._case.policy.promises.broken_task
        self._tasks_to_open.append(
            _TaskToOpen("PROMISE-BROKEN", spec, "promise broken")
        )
        self._facts_changed(
            "promise_broken",
            f"{self._money(paid_since)} of {self._money(promise.amount_minor)} paid by "
            "the deadline",
        )

    def _end_promise(self, outcome: PromiseOutcome) -> int:
        """Close the active promise with its outcome; returns what was paid since it."""
        promise = self._promise
        assert promise is not None
        self._promise = None
        paid_since = sum(self._payments.values()) - promise.paid_before
        record = self._promise_records.get(promise.sequence)
        if record is not None:
            self._promise_records[promise.sequence] = replace(
                record,
                outcome=outcome,
                outcome_at=workflow.now(),
                paid_minor=max(paid_since, 0),
            )
            self._write_later("promise", str(promise.sequence))
        return paid_since

    def _end_commitments_with_the_case(self) -> None:
        """A case that ends leaves no promise or dispute open in the store."""
        if self._promise is not None:
            self._end_promise(PromiseOutcome.CANCELLED)
        for dispute_id in list(self._disputes):
            record = self._dispute_records.get(dispute_id)
            if record is not None and record.status is DisputeStatus.OPEN:
                self._dispute_records[dispute_id] = replace(
                    record,
                    status=DisputeStatus.CLOSED,
                    resolved_at=workflow.now(),
                    resolution_note=f"case {self._stage()} while in dispute",
                )
                self._write_later("dispute", dispute_id)

    def _note_dispute_owner(self, step_id: str, owner: str, due_at: datetime) -> None:
        for dispute_id, dispute in self._disputes.items():
            record = self._dispute_records.get(dispute_id)
            if dispute.task_step_id == step_id and record is not None:
                self._dispute_records[dispute_id] = replace(
                    record, owner_id=owner, sla_due_at=due_at
                )
                self._write_later("dispute", dispute_id)

    def _write_later(self, kind: str, key: str) -> None:
        # Re-inserting moves nothing: a key waiting to be written keeps its place.
        self._records_to_write[(kind, key)] = None

    async def _write_next_record(self) -> None:
        """Write the oldest pending promise or dispute to the store, in one activity."""
        kind, key = next(iter(self._records_to_write))
        del self._records_to_write[(kind, key)]
        if not workflow.patched(RECORD_COMMITMENTS_PATCH):
            self._records_to_write.clear()
            return
        if kind == "promise":
            promise = self._promise_records[int(key)]
            await workflow.execute_activity_method(
                PeopleActivities.record_promise,
                promise,
                start_to_close_timeout=timedelta(minutes=1),
                summary=f"promise {promise.sequence} {promise.outcome}: "
                f"{self._money(promise.amount_minor)} by {promise.promised_date}",
            )
            if promise.outcome is not PromiseOutcome.OPEN:
                self._promise_records.pop(int(key), None)
            return
        dispute = self._dispute_records[key]
        await workflow.execute_activity_method(
            PeopleActivities.record_dispute,
            dispute,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"dispute {dispute.dispute_id} {dispute.status}: "
            f"{self._money(dispute.amount_minor)} {dispute.category}",
        )
        if dispute.status is not DisputeStatus.OPEN:
            self._dispute_records.pop(key, None)

    def _apply_outcome(self, task: TaskInFlight, outcome: TaskOutcome) -> None:
        kind = outcome.kind
        if kind is TaskOutcomeKind.PAYMENT_PROMISE and outcome.promise is not None:
            self._start_promise(outcome.promise, task.task_id)
        elif kind is TaskOutcomeKind.DISPUTE and outcome.dispute is not None:
            self._open_dispute(outcome.dispute)
        elif kind is TaskOutcomeKind.CLAIMS_PAID:
            check = TaskSpec(
                kind="payment_check", role="executive", sla_business_days=2
            )
            reason = "debtor says it already paid: find the payment before any reminder"
            self._tasks_to_open.append(
                _TaskToOpen(f"CHECK-{task.task_id}", check, reason)
            )
            self._contact_under_repair = True
        elif kind is TaskOutcomeKind.WRONG_CONTACT:
            fix = TaskSpec(kind="data_fix", role="executive", sla_business_days=2)
            reason = "wrong or unreachable contact: fix the data"
            self._tasks_to_open.append(_TaskToOpen(f"FIX-{task.task_id}", fix, reason))
            self._contact_under_repair = True
        elif task.kind in ("data_fix", "payment_check", "verify_contact"):
            self._contact_under_repair = False

    def _ask_for_contact(self, reason: str) -> None:
        """Once per case, ask a person for a reachable contact; other channels carry on."""
        if self._contact_task_asked:
            return
        self._contact_task_asked = True
        spec = TaskSpec(kind="verify_contact", role="executive", sla_business_days=2)
        self._tasks_to_open.append(_TaskToOpen("VERIFY-CONTACT", spec, reason))

    def _ask_to_check_delivery(self, step_id: str, reason: str) -> None:
        """A held step: a person asks the provider whether it went, then sends or not."""
        spec = TaskSpec(kind="verify_delivery", role="executive", sla_business_days=1)
        self._tasks_to_open.append(_TaskToOpen(f"VERIFY-{step_id}", spec, reason))

    def _refuse_completing_an_open_dispute(self, task: TaskInFlight) -> None:
        # A task outcome cannot say upheld or rejected, nor carry the credit: only
        # resolving the dispute ends it, and that finishes its task too. Completing the
        # task alone would leave the case silently in dispute.
        for dispute_id, dispute in self._disputes.items():
            if dispute.task_step_id == task.step_id:
                raise ValueError(
                    f"task {task.task_id} resolves dispute {dispute_id}, which is still "
                    "open; end the dispute, which also closes this task: starter.py "
                    f"dispute resolve {self._case.invoice_number} {dispute_id} "
                    "{upheld|rejected} --by PERSON [--credit AMOUNT] [--note TEXT]"
                )

    def _end_dispute(self, resolution: DisputeResolved) -> None:
        dispute = self._disputes.pop(resolution.dispute_id)
        self._finish_task_of_step(dispute.task_step_id)
        record = self._dispute_records.get(resolution.dispute_id)
        if record is not None:
            self._dispute_records[resolution.dispute_id] = replace(
                record,
                status=DisputeStatus(resolution.resolution.value),
                resolved_at=workflow.now(),
                resolved_by=resolution.resolved_by,
                credit_minor=resolution.credit_minor,
                resolution_note=resolution.note,
            )
            self._write_later("dispute", resolution.dispute_id)
        upheld = resolution.resolution is DisputeResolution.UPHELD
        if upheld and resolution.credit_minor:
            self.apply_credit(
                CreditApplied(
                    resolution.credit_note_reference,
                    resolution.credit_minor,
                    self._case.currency,
                    workflow.now(),
                )
            )
        self._facts_changed(
            "dispute_resolved",
            f"{resolution.dispute_id} {resolution.resolution} by {resolution.resolved_by}"
            + (f": {resolution.note}" if resolution.note else ""),
        )

    def _finish_task_of_step(self, step_id: str) -> None:
        for task_id, task in list(self._tasks.items()):
            if task.step_id == step_id:
                del self._tasks[task_id]
                self._tasks_to_close.append(task_id)

    async def _close_tasks(self, task_ids: list[int] | None, reason: str) -> None:
        request = CloseTasksRequest(
            self._case.tenant,
            workflow.info().workflow_id,
            workflow.now(),
            reason,
            task_ids,
        )
        closed = await workflow.execute_activity_method(
            PeopleActivities.close_tasks,
            request,
            start_to_close_timeout=timedelta(minutes=1),
            summary=f"close tasks: {reason}",
        )
        if closed:
            self._record("tasks_closed", f"{', '.join(map(str, closed))}: {reason}")

    # -- facts and stage -----------------------------------------------------------------

    def _make_plan(self) -> tuple[PlannedStep, ...]:
        plan = plan_case(
            self._case.policy,
            issue_date=self._case.issue_date,
            due_date=self._due_date,
            time_zone=self._case.time_zone,
            spread_key=self._case.invoice_number,
        )
        if not self._keys_name_due_date or self._due_date == self._case.due_date:
            return plan
        return tuple(
            keyed_to_due_date(p, self._due_date) if p.announces_due_date else p
            for p in plan
        )

    def _replan_for_due_date(self, *, moved_later: bool) -> DueDateReplan:
        """Re-plan on the new due date; the reminders done for the old one say what repeats."""
        old_plan = self._plan()
        self._keys_name_due_date = True
        self._base_plan = self._make_plan()
        replan = replan_after_due_date_move(
            old_plan,
            self._plan(),
            self._done,
            workflow.now(),
            # A stop rule is permanent: a new date owes the debtor no reminder.
            moved_later=moved_later and self._stopped_by is None,
        )
        self._done |= replan.still_done
        return replan

    def _forget_moves_of_replanned_steps(
        self, old_plan: tuple[PlannedStep, ...]
    ) -> None:
        """Drop the deferral of a step the move placed anew: it was for the old instant.

        An overdue reminder deferred to Monday must not go out on Monday once the due date
        is two weeks later; at its new time the contact rules decide it again.
        """
        before = {p.step_id: p.at for p in old_plan}
        for step in self._base_plan:
            if step.step_id in self._moved and before.get(step.step_id) != step.at:
                del self._moved[step.step_id]

    def _settle_sent_for_an_old_due_date(self, step: PlannedStep, old: date) -> None:
        """A reminder for the old date finished after the move: the move's rule applies now.

        The move saw the reminder not yet done, so its key for the new date was left to be
        sent like any other; moved earlier, that would tell the debtor twice in minutes.
        """
        replan = replan_after_due_date_move(
            (step,),
            self._plan(),
            self._done,
            workflow.now(),
            moved_later=self._due_date > old and self._stopped_by is None,
        )
        self._done |= replan.still_done
        self._record_replan(replan, old)

    def _record_replan(self, replan: DueDateReplan, old: date) -> None:
        zone = self._case.time_zone
        for step in replan.owed_again:
            self._record(
                "step_replanned",
                f"{step.step_id} {step.channel} at {format_local(step.at, zone)}: "
                f"{occurrence_of(step.step_id)} was done for the old due date {old}",
            )

    def _plan(self) -> tuple[PlannedStep, ...]:
        """The plan shifted by every hold so far (no step skipped, none repeated), with moves."""
        zone = self._case.time_zone
        plan = [step.shifted(self._shift_days, zone) for step in self._base_plan]
        if self._moved:
            # Only the instant moves: the step keeps its calendar date, which says whether
            # its wording (before or after the due date) is still true.
            plan = [replace(p, at=self._moved.get(p.step_id, p.at)) for p in plan]
        return tuple(sorted(plan, key=lambda p: (p.at, p.step_id)))

    def _move_to_next_send_time(self, step: PlannedStep, now: datetime) -> None:
        zone = self._case.time_zone
        clock = step.at.astimezone(ZoneInfo(zone)).time()
        today = local_date_of(now, zone)
        slot = local_instant(today, clock, zone)
        if slot <= now:
            slot = local_instant(today + timedelta(days=1), clock, zone)
        self._moved[step.step_id] = slot
        self._record(
            "step_moved",
            f"{step.step_id} found late; moved to its send time {format_local(slot, zone)}",
        )

    def _silence(self) -> str | None:
        return silence_reason(
            pause=self._pause,
            disputes=self._disputes,
            whole_invoice_disputes=self._case.policy.disputes.pause == "whole_invoice",
            promise=self._promise,
            contact_under_repair=self._contact_under_repair,
            time_zone=self._case.time_zone,
        )

    def _track_silence(self) -> None:
        """Start timing a hold when reminders go quiet; shift the plan when they may resume."""
        silent = self._silence() is not None
        if silent and self._silenced_since is None:
            self._silenced_since = workflow.now()
        elif not silent and self._silenced_since is not None:
            # Whole local days, so a shifted reminder keeps its local send time across DST.
            zone = self._case.time_zone
            held = local_date_of(workflow.now(), zone) - local_date_of(
                self._silenced_since, zone
            )
            self._shift_days += held.days
            self._silenced_since = None
            self._record("plan_shifted", f"remaining steps moved by {held.days} days")

    def _accepts_money(self, reference: str, currency: str, amount_minor: int) -> bool:
        if self._stage().is_terminal:
            self._record("ignored", f"{reference}: case already {self._stage()}")
            return False
        if reference in self._payments or reference in self._credits:
            self._record("duplicate", f"{reference}: already applied, ignored")
            return False
        if currency != self._case.currency:
            self._record(
                "needs_review",
                f"{reference}: {currency} does not match invoice {self._case.currency}",
            )
            return False
        if amount_minor == 0:
            self._record("ignored", f"{reference}: zero amount changes nothing")
            return False
        return True

    def _facts_changed(self, kind: str, detail: str) -> None:
        self._facts_version += 1
        self._record(kind, f"{detail}; balance {self._money(self._balance())}")
        self._track_silence()
        workflow.logger.info(
            "case %s: %s",
            self._case.invoice_number,
            kind,
            extra={
                "tenant": self._case.tenant,
                "invoice": self._case.invoice_number,
                "outcome": kind,
            },
        )

    def _command_done(
        self, action: str, command: SupervisorCommand | Any, detail: str
    ) -> CommandReceipt:
        text = f"by {command.actor}" + (f" {detail}" if detail else "")
        self._facts_changed(action, f"{text}: {command.reason}")
        return CommandReceipt(self._case.invoice_number, action)

    def _refuse_if_closed(self, action: str) -> None:
        if self._stage().is_terminal:
            raise ValueError(
                f"cannot {action} invoice {self._case.invoice_number}: it is {self._stage()}"
            )

    @staticmethod
    def _refuse_without_reason(command: Any) -> None:
        if not command.actor.strip() or not command.reason.strip():
            raise ValueError(
                "every supervisor command needs who (actor) and why (reason)"
            )

    def _close(self, stage: Stage, closing: CaseClosed) -> None:
        if self._stage().is_terminal:
            self._record(
                "ignored", f"{stage} requested but case already {self._stage()}"
            )
            return
        self._closed_as = stage
        self._facts_changed(str(stage), f"by {closing.closed_by}: {closing.reason}")

    def _balance(self) -> int:
        paid = sum(self._payments.values())
        return self._case.amount_minor - paid - sum(self._credits.values())

    def _disputed(self) -> int:
        return sum(d.amount_minor for d in self._disputes.values())

    def _local_today(self) -> date:
        return local_date_of(workflow.now(), self._case.time_zone)

    def _stage(self) -> Stage:
        if self._closed_as is not None:
            return self._closed_as
        if self._balance() <= 0:
            return Stage.CLOSED_BY_CREDIT if self._settled_by_credit else Stage.PAID
        if days_past_due(self._due_date, workflow.now(), self._case.time_zone) > 0:
            return Stage.OVERDUE
        return Stage.NOT_DUE

    def _skip(self, skipped: list[SkippedStep]) -> None:
        for item in skipped:
            self._done.add(item.step.step_id)
            self._skipped += 1
            self._record("step_skipped", f"{item.step.step_id}: {item.reason}")
            workflow.logger.info(
                "case %s skipped %s: %s",
                self._case.invoice_number,
                item.step.step_id,
                item.reason,
                extra={
                    "tenant": self._case.tenant,
                    "invoice": self._case.invoice_number,
                    "step": item.step.step_id,
                    "outcome": "skipped",
                    "reason": item.reason,
                },
            )

    # -- what the Temporal UI shows --------------------------------------------------------

    def _publish(self) -> None:
        """Upsert search attributes when what they show changed; always refresh the story."""
        stage = self._stage()
        facts = self._visible_facts(stage)
        if facts != self._published:
            if self._published is not None or not self._started_with(stage):
                workflow.upsert_search_attributes(self._search_attribute_updates(stage))
            self._published = facts
        workflow.set_current_details(self._story(stage))

    def _visible_facts(self, stage: Stage) -> tuple[object, ...]:
        # Whether a step is planned, and the steps moved or deferred, but not the instant of
        # the next step: an upsert after every send would cost a billable action each.
        planned = (
            (
                self._next_action_at(stage) is not None,
                tuple(sorted(self._moved.items())),
            )
            if self._case.behaviour >= NEXT_ACTION_FOLLOWS_THE_PLAN
            else ()
        )
        return (
            *planned,
            stage,
            self._balance(),
            self._due_date,
            self._pause is not None,
            bool(self._disputes),
            self._promise is not None,
            self._escalation,
            self._assignee,
        )

    def _started_with(self, stage: Stage) -> bool:
        # The worker keeps only sa.READ_BACK_FROM_START of the start's attributes: a key
        # read here must be one of them.
        started = workflow.info().typed_search_attributes
        # A step found late at opening moves to its send time, which the start could not
        # know: the first publish corrects DunningNextActionAt then.
        planned_as_started = (
            self._case.behaviour < NEXT_ACTION_FOLLOWS_THE_PLAN
            or started.get(sa.DUNNING_NEXT_ACTION_AT) == self._next_action_at(stage)
        )
        return (
            planned_as_started
            and started.get(sa.DUNNING_STAGE) == stage.value
            and started.get(sa.DUNNING_AMOUNT_DUE) == max(self._balance(), 0)
        )

    def _next_action_at(self, stage: Stage) -> datetime | None:
        """When the next step is planned; None when none is, or while reminders are held."""
        if stage.is_terminal or self._silence() is not None:
            return None
        upcoming = upcoming_step(self._plan(), self._done, workflow.now())
        return upcoming.at if upcoming else None

    def _search_attribute_updates(
        self, stage: Stage
    ) -> list[SearchAttributeUpdate[Any]]:
        updates = case_updates(
            stage=stage,
            amount_due_minor=max(self._balance(), 0),
            due_date=self._due_date,
            next_action_at=self._next_action_at(stage),
        )
        updates += [
            sa.DUNNING_PAUSED.value_set(self._pause is not None),
            sa.DUNNING_DISPUTED.value_set(bool(self._disputes)),
            sa.DUNNING_PROMISED.value_set(self._promise is not None),
            sa.DUNNING_ESCALATION_LEVEL.value_set(int(self._escalation)),
        ]
        if self._assignee:
            updates.append(sa.DUNNING_ASSIGNEE.value_set(self._assignee))
        return updates

    def _story(self, stage: Stage) -> str:
        late = days_past_due(self._due_date, workflow.now(), self._case.time_zone)
        lines = [
            f"**Stage:** {stage}" + (f" ({late} days past due)" if late else ""),
            f"**Balance:** {self._money(self._balance())} of "
            f"{self._money(self._case.amount_minor)}, due {self._due_date}",
            f"**Policy:** {self._policy_label} · reminders sent: {self._sent}"
            + (f" · steps skipped: {self._skipped}" if self._skipped else ""),
        ]
        if self._disputes:
            lines.append(f"**Disputed:** {self._money(self._disputed())}")
        if self._tasks:
            lines.append(
                f"**Open tasks:** {', '.join(str(t) for t in sorted(self._tasks))}"
            )
        if self._escalation > GovernanceLevel.EXECUTIVE or self._assignee:
            lines.append(
                f"**Owner:** {self._assignee or 'unassigned'} · level "
                f"{self._escalation.name.lower()}"
            )
        if not stage.is_terminal:
            lines.append(f"**Waiting for:** {self._waiting_for}")
        return "\n".join(lines)

    # -- small helpers -------------------------------------------------------------------

    @property
    def _policy_label(self) -> str:
        return f"{self._case.policy.name}@{self._case.policy.version}"

    def _money(self, minor_units: int) -> str:
        return format_amount(minor_units, self._case.currency)

    def _record(self, kind: str, detail: str) -> None:
        self._timeline.append(TimelineEntry(workflow.now(), kind, detail))

    def _describe_outcome(self, step: PlannedStep, outcome: SendOutcome) -> str:
        text = f"{step.step_id} by {outcome.channel}: {outcome.reason}"
        return text + (" (already sent before a retry)" if outcome.duplicate else "")


def _role_of(level: GovernanceLevel) -> Any:
    return {v: k for k, v in ROLE_LEVELS.items()}[level]
