"""The typed messages in and out of an invoice case: its input, signals, queries and steps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

from receivables.policy import Policy, UnknownOutcome


class Stage(enum.StrEnum):
    """Where a case stands; terminal stages end the workflow and every timer with it."""

    NOT_DUE = "not_due"
    OVERDUE = "overdue"
    NEEDS_DUE_DATE = "needs_due_date"
    PAID = "paid"
    CLOSED_BY_CREDIT = "closed_by_credit"
    WRITTEN_OFF = "written_off"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the stages a case never leaves."""
        return self in TERMINAL_STAGES


TERMINAL_STAGES = frozenset(
    {Stage.PAID, Stage.CLOSED_BY_CREDIT, Stage.WRITTEN_OFF, Stage.CANCELLED}
)


def case_workflow_id(tenant: str, invoice_number: str) -> str:
    """The one workflow id of an invoice: re-importing it can never open a second case."""
    return f"invoice/{tenant}/{invoice_number}"


# The newest case behaviour (see InvoiceCase.behaviour); each change it guards says so.
# 1: DunningNextActionAt follows the plan (cleared when nothing is left, set when a step
#    found late at opening or deferred by a contact rule moves).
CASE_BEHAVIOUR = 1


@dataclass(frozen=True)
class InvoiceCase:
    """Everything a case needs at start. No personal data: names and addresses stay in the DB."""

    tenant: str
    invoice_number: str
    customer_id: str
    issue_date: date
    due_date: date
    amount_minor: int
    currency: str
    time_zone: str
    segment: str
    policy: Policy  # pinned for the life of the case
    disputed: bool = False  # marked disputed at import: the case opens in dispute
    # Which release's case behaviour the case runs, pinned like its policy. A case started
    # before the field existed decodes as 0 and replays as it ran; new cases open at
    # CASE_BEHAVIOUR. Unlike workflow.patched, it adds no marker to every new history.
    behaviour: int = 0


@dataclass(frozen=True)
class PaymentReceived:
    """Money received against the invoice; ``reference`` makes a re-delivery harmless."""

    reference: str
    amount_minor: int
    currency: str
    received_at: datetime


@dataclass(frozen=True)
class CreditApplied:
    """A credit note (negative for the debtor) or an adjustment (either sign)."""

    reference: str
    amount_minor: int  # positive lowers the balance; an adjustment may be negative
    currency: str
    applied_at: datetime
    kind: str = "credit_note"  # credit_note or adjustment


@dataclass(frozen=True)
class DueDateChanged:
    """A new due date agreed with the debtor or corrected by the creditor."""

    new_due_date: date
    reason: str
    changed_by: str = "system"


@dataclass(frozen=True)
class CaseClosed:
    """An operator's decision to cancel the invoice or write it off."""

    reason: str
    closed_by: str = "system"


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the case file, as the timeline query returns it."""

    at: datetime
    kind: str
    detail: str


@dataclass(frozen=True)
class NextStep:
    """The next planned action and its instant, as the next-step query returns it."""

    step_id: str
    channel: str
    at: datetime
    local_date: date


@dataclass(frozen=True)
class CaseState:
    """The case as the state query returns it."""

    stage: Stage
    segment: str
    policy_name: str
    policy_version: int
    due_date: date
    amount_minor: int
    paid_minor: int
    credited_minor: int
    balance_minor: int
    currency: str
    steps_done: list[str] = field(default_factory=list)
    next_step: NextStep | None = None
    waiting_for: str = ""
    paused: bool = False
    disputed_minor: int = 0
    promised: bool = False
    escalation_level: int = 0
    open_tasks: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SendReminderRequest:
    """Ask the send activity to deliver one planned step of one invoice."""

    tenant: str
    invoice_number: str
    step_id: str
    channel: str
    template: str
    fallback_channels: tuple[str, ...]
    policy_name: str
    policy_version: int
    planned_at: datetime
    language: str
    # Under a partial dispute, reminders ask only for the undisputed part of the balance.
    disputed_minor: int = 0
    jurisdiction: str | None = None  # the contact-rule profile; None decides nothing
    # The policy's choice when an attempt was cut off and the channel cannot be asked.
    on_unknown_outcome: UnknownOutcome = UnknownOutcome.RESEND
    # Template fields an SMS spells in GSM-7; each change is recorded in the ledger.
    sms_transliterate: tuple[str, ...] = ()


class SendStatus(enum.StrEnum):
    """What happened to one step's contact."""

    SENT = "sent"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    FAILED = "failed"
    # Another invoice's statement named this one: the debtor has it, nothing more to send.
    CONSOLIDATED = "consolidated"
    # A stop rule (lawsuit served, insolvency, cession, cash or free invoice) denied it:
    # no later step may contact the debtor about this invoice either.
    STOPPED = "stopped"


@dataclass(frozen=True)
class SendOutcome:
    """The send activity's answer: what happened, on which channel, and why."""

    status: SendStatus
    channel: str
    reason: str
    message_id: str | None = None
    duplicate: bool = False
    retry_at: datetime | None = None  # for a deferred contact: the next lawful instant


# -- people in the loop --------------------------------------------------------------------


class GovernanceLevel(enum.IntEnum):
    """Who acts on a case: the assigned executive, their supervisor, the strategic level."""

    EXECUTIVE = 0
    SUPERVISOR = 1
    STRATEGIC = 2


class DisputeCategory(enum.StrEnum):
    """Why a debtor says the invoice is not payable yet: the incidents preventive work fixes."""

    PURCHASE_ORDER_PENDING = "purchase_order_pending"
    GOODS_RECEIPT_NOT_REGISTERED = "goods_receipt_not_registered"
    ADMINISTRATIVE_DIFFERENCE = "administrative_difference"
    REINVOICING_NEEDED = "reinvoicing_needed"
    OTHER = "other"


class TaskOutcomeKind(enum.StrEnum):
    """What a person found when working a task; each steers the case differently."""

    PAYMENT_PROMISE = "payment_promise"
    DISPUTE = "dispute"
    CLAIMS_PAID = "claims_paid"
    WRONG_CONTACT = "wrong_contact"
    NO_ANSWER = "no_answer"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class PaymentPromise:
    """The debtor's word: this amount by this local date."""

    amount_minor: int
    promised_date: date
    recorded_by: str


@dataclass(frozen=True)
class DisputeOpened:
    """A contested amount, with its category and who raised it."""

    dispute_id: str
    amount_minor: int
    category: DisputeCategory
    opened_by: str
    note: str = ""


class DisputeResolution(enum.StrEnum):
    """How a dispute ended: upheld (the debtor was right) or rejected."""

    UPHELD = "upheld"
    REJECTED = "rejected"


@dataclass(frozen=True)
class DisputeResolved:
    """The end of a dispute; an upheld one may come with a credit note amount."""

    dispute_id: str
    resolution: DisputeResolution
    resolved_by: str
    credit_minor: int = 0
    note: str = ""
    # The folio of the credit note issued for an upheld dispute; "" for dispute-<id>.
    credit_reference: str = ""

    @property
    def credit_note_reference(self) -> str:
        """The reference the credit is recorded under: its folio, else one made up."""
        return self.credit_reference or f"dispute-{self.dispute_id}"


@dataclass(frozen=True)
class TaskOutcome:
    """A completed human task's result, typed by kind."""

    task_id: int
    kind: TaskOutcomeKind
    completed_by: str
    note: str = ""
    promise: PaymentPromise | None = None
    dispute: DisputeOpened | None = None


@dataclass(frozen=True)
class TaskRequest:
    """Ask the task activity to open a human task for a case."""

    tenant: str
    invoice_number: str
    workflow_id: str
    step_id: str
    kind: str  # call_debtor, resolve_incident, verify_contact, payment_check, data_fix, ...
    role: GovernanceLevel
    reason: str
    script_template: str | None
    sla_business_days: int
    opened_at: datetime
    time_zone: str


@dataclass(frozen=True)
class OpenedTask:
    """The task as stored: its id, who has it and when its SLA ends."""

    task_id: int
    assignee_id: str
    due_at: datetime


@dataclass(frozen=True)
class CallTaskRequest:
    """Ask the contact rules whether a call or visit may be offered now, and if so offer it."""

    task: TaskRequest
    channel: str  # "call" or "visit"
    policy_name: str
    policy_version: int
    planned_at: datetime  # the step's planned instant, kept on the ledger entry
    jurisdiction: str | None = None  # the contact-rule profile; None decides nothing


class CallTaskStatus(enum.StrEnum):
    """What became of a call or visit step at the contact gate."""

    OFFERED = "offered"  # allowed: the task is in an executive's inbox
    DEFERRED = "deferred"  # a rule moved it: the step waits for the lawful instant
    STOPPED = "stopped"  # a stop rule denied it: no task, no later contact


@dataclass(frozen=True)
class CallTaskOffer:
    """The gate's answer for a call step: the task opened, or when to ask again, and why."""

    status: CallTaskStatus
    trace: str  # the decision as the ledger records it, with the rule ids
    task: OpenedTask | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class SupervisorCommand:
    """Who asks for a change, and why: recorded on every supervisor command."""

    actor: str
    reason: str


@dataclass(frozen=True)
class EscalationRequest:
    """Move a task whose SLA passed to the next governance level, once."""

    task_id: int
    to_level: GovernanceLevel
    at: datetime
    reason: str


@dataclass(frozen=True)
class CloseTasksRequest:
    """Cancel tasks that lost their purpose: those named, or all of a case that ended."""

    tenant: str
    workflow_id: str
    at: datetime
    reason: str
    task_ids: list[int] | None = None


@dataclass(frozen=True)
class PauseCommand:
    """A supervisor's pause: until a local date, or until resumed when ``until`` is None."""

    actor: str
    reason: str
    until: date | None = None


@dataclass(frozen=True)
class EscalateCommand:
    """A supervisor's escalation of the whole case to a governance level."""

    actor: str
    reason: str
    level: GovernanceLevel


@dataclass(frozen=True)
class ReassignCommand:
    """Hand the case to another executive."""

    actor: str
    reason: str
    executive_id: str


@dataclass(frozen=True)
class CommandReceipt:
    """What a supervisor command did, as the case records it."""

    invoice_number: str
    accepted: str


# -- promises and disputes as the store keeps them, for KPIs and payment behaviour ------


class PromiseOutcome(enum.StrEnum):
    """How a payment promise ended, or that it has not yet."""

    OPEN = "open"
    KEPT = "kept"  # paid in full (or the balance cleared) by its deadline
    BROKEN = "broken"  # its deadline passed without a covering payment
    CANCELLED = "cancelled"  # replaced by a new promise, or the case ended otherwise


class DisputeStatus(enum.StrEnum):
    """Where a dispute stands: open, resolved either way, or closed with its case."""

    OPEN = "open"
    UPHELD = "upheld"
    REJECTED = "rejected"
    CLOSED = "closed"  # the case ended (paid, credited, cancelled) while it was open

    @property
    def is_resolution(self) -> bool:
        """True for the statuses a person decided: upheld or rejected."""
        return self in (DisputeStatus.UPHELD, DisputeStatus.REJECTED)


@dataclass(frozen=True)
class PromiseRecord:
    """One payment promise of a case as it stands; written by (tenant, invoice, sequence)."""

    tenant: str
    invoice_number: str
    customer_id: str
    sequence: int  # 1 for the case's first promise, 2 for its second, ...
    amount_minor: int
    currency: str
    promised_date: date
    deadline: datetime  # the promised date plus the policy's grace, at its check time
    recorded_by: str
    recorded_at: datetime
    outcome: PromiseOutcome = PromiseOutcome.OPEN
    outcome_at: datetime | None = None
    paid_minor: int = 0  # paid since the promise was made, when it ended
    task_id: int | None = None  # the task whose outcome it was, if any


@dataclass(frozen=True)
class DisputeRecord:
    """One dispute of a case as it stands; written by (tenant, invoice, dispute id)."""

    tenant: str
    invoice_number: str
    customer_id: str
    dispute_id: str
    amount_minor: int
    currency: str
    category: DisputeCategory
    opened_at: datetime
    opened_by: str
    note: str = ""
    owner_id: str | None = None  # who holds its resolution task
    sla_due_at: datetime | None = None  # when that task's SLA ends
    status: DisputeStatus = DisputeStatus.OPEN
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    credit_minor: int = 0
    resolution_note: str = ""
