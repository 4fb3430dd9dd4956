"""InvoiceWorkflow: one durable case per invoice, from issuance until it is settled or closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.sending import ReminderSender
    from receivables import search_attributes as sa
    from receivables.case import (
        CaseClosed,
        CaseState,
        CreditApplied,
        DueDateChanged,
        InvoiceCase,
        NextStep,
        PaymentReceived,
        SendOutcome,
        SendReminderRequest,
        SendStatus,
        Stage,
        TimelineEntry,
    )
    from receivables.case_attributes import case_updates
    from receivables.money import format_money
    from receivables.planning import (
        PlannedStep,
        SkippedStep,
        days_past_due,
        format_local,
        next_due_step,
        plan_case,
        upcoming_step,
    )

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)


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
        self._waiting_for: PlannedStep | None = None
        self._plan = self._make_plan()

    @workflow.run
    async def run(self, case: InvoiceCase) -> CaseState:
        """Walk the dunning timeline: plan, wait, act, record, until the case ends."""
        self._record("opened", f"policy {self._policy_label}, segment {case.segment}")

        while not self._stage().is_terminal:
            self._publish()

            step, skipped = next_due_step(
                self._plan,
                self._done,
                workflow.now(),
                due_date=self._due_date,
                time_zone=self._case.time_zone,
                catch_up=timedelta(days=self._case.policy.catch_up_days),
            )
            self._skip(skipped)
            if step is not None:
                await self._act(step)
                continue

            await self._wait_for_next_step()

        self._publish()
        return self.state()

    # -- messages ------------------------------------------------------------------------

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
        """Move the due date and re-plan every step that has not happened yet."""
        if self._stage().is_terminal or change.new_due_date == self._due_date:
            return
        old, self._due_date = self._due_date, change.new_due_date
        self._plan = self._make_plan()
        self._facts_changed(
            "due_date_changed",
            f"{old} -> {change.new_due_date} by {change.changed_by}: {change.reason}",
        )

    @workflow.signal
    def cancel(self, closing: CaseClosed) -> None:
        """Cancel the invoice: no further contact."""
        self._close(Stage.CANCELLED, closing)

    @workflow.signal
    def write_off(self, closing: CaseClosed) -> None:
        """Write the balance off: no further contact."""
        self._close(Stage.WRITTEN_OFF, closing)

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
        )

    @workflow.query
    def balance(self) -> int:
        """Amount − payments − credits, in minor units."""
        return self._balance()

    @workflow.query
    def next_step(self) -> NextStep | None:
        """The next planned step, or None when nothing more is planned."""
        if self._stage().is_terminal:
            return None
        upcoming = upcoming_step(self._plan, self._done, workflow.now())
        if upcoming is None:
            return None
        return NextStep(
            upcoming.step_id, upcoming.channel, upcoming.at, upcoming.local_date
        )

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        """Every event of the case file, oldest first."""
        return list(self._timeline)

    # -- steps ---------------------------------------------------------------------------

    def _skip(self, skipped: list[SkippedStep]) -> None:
        for item in skipped:
            self._done.add(item.step.step_id)
            self._record("step_skipped", f"{item.step.step_id}: {item.reason}")
            workflow.logger.info(
                "case %s skipped %s: %s",
                self._case.invoice_number,
                item.step.step_id,
                item.reason,
            )

    async def _act(self, step: PlannedStep) -> None:
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
        )
        try:
            outcome = await workflow.execute_activity_method(
                ReminderSender.send_reminder,
                request,
                start_to_close_timeout=timedelta(minutes=2),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=SEND_RETRY,
                summary=f"{step.step_id} {step.channel}: {self._money(self._balance())} due",
            )
        except ActivityError as error:
            outcome = SendOutcome(
                SendStatus.FAILED, step.channel, str(error.cause or error)
            )

        self._done.add(step.step_id)
        self._record(
            f"reminder_{outcome.status}", self._describe_outcome(step, outcome)
        )

    async def _wait_for_next_step(self) -> None:
        version = self._facts_version
        upcoming = upcoming_step(self._plan, self._done, workflow.now())
        self._waiting_for = upcoming
        self._publish()
        if upcoming is None:
            # Nothing more is planned: the case stays open, with no timer, until a fact arrives.
            await workflow.wait_condition(lambda: self._facts_version != version)
            return
        try:
            await workflow.wait_condition(
                lambda: self._facts_version != version,
                timeout=max(upcoming.at - workflow.now(), timedelta(seconds=1)),
                timeout_summary=f"until {upcoming.step_id} {upcoming.channel} "
                f"at {self._local(upcoming.at)}",
            )
        except TimeoutError:
            pass
        finally:
            self._waiting_for = None

    # -- facts and stage -----------------------------------------------------------------

    def _make_plan(self) -> tuple[PlannedStep, ...]:
        return plan_case(
            self._case.policy,
            issue_date=self._case.issue_date,
            due_date=self._due_date,
            time_zone=self._case.time_zone,
        )

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
        workflow.logger.info("case %s: %s", self._case.invoice_number, kind)

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

    def _stage(self) -> Stage:
        if self._closed_as is not None:
            return self._closed_as
        if self._balance() <= 0:
            return Stage.CLOSED_BY_CREDIT if self._settled_by_credit else Stage.PAID
        if days_past_due(self._due_date, workflow.now(), self._case.time_zone) > 0:
            return Stage.OVERDUE
        return Stage.NOT_DUE

    # -- what the Temporal UI shows --------------------------------------------------------

    def _publish(self) -> None:
        """Upsert search attributes when stage or facts changed; always refresh the story."""
        stage = self._stage()
        upcoming = None if stage.is_terminal else self._waiting_for
        facts = (stage, self._balance(), self._due_date)
        if facts != self._published:
            if self._published is not None or not self._started_with(stage):
                workflow.upsert_search_attributes(self._search_attribute_updates(stage))
            self._published = facts
        workflow.set_current_details(self._story(stage, upcoming))

    def _started_with(self, stage: Stage) -> bool:
        started = workflow.info().typed_search_attributes
        return started.get(sa.DUNNING_STAGE) == stage.value and started.get(
            sa.DUNNING_AMOUNT_DUE
        ) == max(self._balance(), 0)

    def _search_attribute_updates(
        self, stage: Stage
    ) -> list[SearchAttributeUpdate[Any]]:
        upcoming = None
        if not stage.is_terminal:
            upcoming = upcoming_step(self._plan, self._done, workflow.now())
        return case_updates(
            stage=stage,
            amount_due_minor=max(self._balance(), 0),
            due_date=self._due_date,
            next_action_at=upcoming.at if upcoming else None,
        )

    def _story(self, stage: Stage, upcoming: PlannedStep | None) -> str:
        late = days_past_due(self._due_date, workflow.now(), self._case.time_zone)
        lines = [
            f"**Stage:** {stage}" + (f" ({late} days past due)" if late else ""),
            f"**Balance:** {self._money(self._balance())} of "
            f"{self._money(self._case.amount_minor)}, due {self._due_date}",
            f"**Policy:** {self._policy_label} · steps done: {len(self._done)}",
        ]
        if upcoming is not None:
            lines.append(
                f"**Next:** {upcoming.step_id} by {upcoming.channel} at "
                f"{self._local(upcoming.at)} · waiting for that date or a payment"
            )
        elif not stage.is_terminal:
            lines.append(
                "**Next:** no step left in the policy · waiting for payment or a person"
            )
        return "\n".join(lines)

    # -- small helpers -------------------------------------------------------------------

    @property
    def _policy_label(self) -> str:
        return f"{self._case.policy.name}@{self._case.policy.version}"

    def _money(self, minor_units: int) -> str:
        return f"{format_money(minor_units, self._case.currency)} {self._case.currency}"

    def _local(self, instant: datetime) -> str:
        return format_local(instant, self._case.time_zone)

    def _record(self, kind: str, detail: str) -> None:
        self._timeline.append(TimelineEntry(workflow.now(), kind, detail))

    def _describe_outcome(self, step: PlannedStep, outcome: SendOutcome) -> str:
        text = f"{step.step_id} by {outcome.channel}: {outcome.reason}"
        return text + (" (already sent before a retry)" if outcome.duplicate else "")
