"""Declarative dunning policies and segmentation rules: the YAML schema and its loader."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from receivables.money import MoneyError, parse_minor_units
from receivables.yaml_text import load_yaml

SEGMENTS_FILE = "segments.yaml"
# Files of the policies folder that configure something else than one segment's policy.
NOT_POLICIES = frozenset({SEGMENTS_FILE, "governance.yaml"})
StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+\-]*$", max_length=40)]


class PolicyError(ValueError):
    """A policy or segmentation file that cannot be used, with file, field and reason."""

    def __init__(self, file: Path | str, field: str, reason: str) -> None:
        self.file, self.field, self.reason = str(file), field, reason
        super().__init__(f"{file}: {field}: {reason}")


class Channel(enum.StrEnum):
    """How a message reaches a debtor."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    LETTER = "letter"


class UnknownOutcome(enum.StrEnum):
    """What a retry does when an attempt was cut off and its channel cannot be asked."""

    RESEND = "resend"  # risk a duplicate message; the ledger records that it did
    HOLD = "hold"  # send nothing more on that step; a person checks with the provider


# Template fields an SMS may spell in GSM-7 (``sms_transliterate``); the rest of a text is
# the template author's, checked by the content lint.
TransliterableField = Literal[
    "creditor_name",
    "customer_name",
    "contact_name",
    "payment_instructions",
    "creditor_contact",
]


class Anchor(enum.StrEnum):
    """The invoice date a step's offset counts from."""

    DUE = "due"
    ISSUE = "issue"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clock_not_number(value: object) -> object:
    # YAML 1.1 reads an unquoted 10:00 as the sexagesimal number 600, which pydantic would
    # take as seconds after midnight: a reminder at 00:10 at night instead of 10:00.
    if isinstance(value, int | float):
        raise ValueError(
            f'{value!r} is a number, not a time of day; write it in quotes, like "10:00"'
        )
    return value


Role = Literal["executive", "supervisor", "strategic"]
# Task kinds in which a person contacts the debtor by voice, and the channel the contact
# rules count them on: a call or a visit is a contact like a message, capped the same way.
VOICE_TASK_CHANNELS = {"call_debtor": "call", "visit_debtor": "visit"}


def voice_channel_of(task_kind: str) -> str | None:
    """The channel ("call" or "visit") a task of this kind contacts the debtor by, if any."""
    return VOICE_TASK_CHANNELS.get(task_kind)


class TaskSpec(_Strict):
    """A human task a step opens: what to do, for which governance level, within what SLA."""

    kind: str = Field(pattern=r"^[a-z][a-z_]*$")  # call_debtor, resolve_incident, ...
    role: Role = "executive"
    sla_business_days: int = Field(default=2, ge=1, le=30)
    script: str | None = None  # a call script or checklist the person follows

    @property
    def contact_channel(self) -> str | None:
        """The voice channel this task reaches the debtor by; None for back-office work."""
        return voice_channel_of(self.kind)


class PolicyStep(_Strict):
    """One planned action: which day relative to an anchor, and either a message or a task."""

    id: StepId
    anchor: Anchor = Anchor.DUE
    offset_days: int = Field(ge=-365, le=730)
    channel: Channel | None = None
    template: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    task: TaskSpec | None = None
    fallback_channels: tuple[Channel, ...] = ()
    send_time: time | None = None
    repeat_every_days: int | None = Field(default=None, ge=1, le=90)
    repeat_count: int = Field(default=1, ge=1, le=52)

    _send_time_is_clock = field_validator("send_time", mode="before")(_clock_not_number)

    @model_validator(mode="after")
    def _repeat_is_coherent(self) -> PolicyStep:
        if self.repeat_count > 1 and self.repeat_every_days is None:
            raise ValueError("repeat_count above 1 needs repeat_every_days")
        is_message = self.channel is not None and self.template is not None
        if is_message == (self.task is not None):
            raise ValueError(
                "a step sends a message (channel and template) or opens a task"
            )
        return self


class DisputeRules(_Strict):
    """What a dispute silences, and who owns resolving it within what SLA."""

    pause: Literal["whole_invoice", "disputed_part"] = "whole_invoice"
    owner_role: Role = "executive"
    sla_business_days: int = Field(default=5, ge=1, le=60)


class PromiseRules(_Strict):
    """How payment promises silence reminders, and what happens when one is broken."""

    max_per_invoice: int = Field(default=2, ge=0, le=10)
    grace_days: int = Field(default=1, ge=0, le=30)
    check_time: time = time(18, 0)
    broken_task: TaskSpec = TaskSpec(kind="broken_promise", sla_business_days=1)

    _check_time_is_clock = field_validator("check_time", mode="before")(
        _clock_not_number
    )


class Policy(_Strict):
    """A segment's whole dunning plan, pinned by name and version in every case it governs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    version: int = Field(ge=1)
    description: str
    language: str = "es-CL"
    send_time: time = time(9, 0)
    time_zone: str = "America/Santiago"
    jurisdiction: str | None = None
    # A step found due this long after its time (case opened late, workers down) is skipped.
    catch_up_days: int = Field(default=3, ge=0, le=30)
    # Each case sends up to this many minutes after the send time, so a segment due the
    # same minute reaches the channels over a window instead of all at once.
    send_spread_minutes: int = Field(default=0, ge=0, le=240)
    # A retry after a cut-off attempt asks the channel first where it can be asked
    # (Twilio, the outbox); where it cannot (SendGrid), this decides.
    on_unknown_outcome: UnknownOutcome = UnknownOutcome.RESEND
    # Fields folded to GSM-7 in SMS (Núñez -> Nuñez): one accent outside GSM-7 turns the
    # whole text into UCS-2, 70 characters a segment instead of 160. Every change is
    # recorded in the ledger; a field not named keeps its accents and the true cost.
    sms_transliterate: tuple[TransliterableField, ...] = ()
    steps: tuple[PolicyStep, ...] = Field(min_length=1)
    disputes: DisputeRules = DisputeRules()
    promises: PromiseRules = PromiseRules()

    _send_time_is_clock = field_validator("send_time", mode="before")(_clock_not_number)

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("steps")
    @classmethod
    def _unique_step_ids(cls, steps: tuple[PolicyStep, ...]) -> tuple[PolicyStep, ...]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(
                    f"step id {step.id!r} appears twice; ids must be unique"
                )
            seen.add(step.id)
        return steps

    @model_validator(mode="wrap")
    @classmethod
    def _one_copy_per_process(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> Policy:
        # Every case pins its policy in its start input, so each cached case would hold
        # its own decoded copy; frozen and equal, they can all share one object.
        policy: Policy = handler(data)
        if len(_SHARED_POLICIES) >= SHARED_POLICIES_LIMIT:
            _SHARED_POLICIES.clear()
        return _SHARED_POLICIES.setdefault(policy.model_dump_json(), policy)


# Policies decoded in this process, by their JSON: a few per segment and version in use.
SHARED_POLICIES_LIMIT = 512
_SHARED_POLICIES: dict[str, Policy] = {}


class SegmentRule(_Strict):
    """Conditions that put an invoice in a segment; every condition given must hold."""

    segment: str
    policy: str
    customer_types: tuple[str, ...] | None = None
    min_amount: str | None = None  # "5000000 CLP": inclusive lower bound
    max_amount: str | None = None  # exclusive upper bound
    min_average_days_late: float | None = None
    max_average_days_late: float | None = None
    # Promises the customer broke before this invoice was issued (no look-ahead).
    min_broken_promises: int | None = Field(default=None, ge=1, le=100)

    @field_validator("min_amount", "max_amount")
    @classmethod
    def _amount_with_currency(cls, value: str | None) -> str | None:
        if value is not None:
            parse_threshold(value)
        return value


class Segmentation(_Strict):
    """Ordered segmentation rules; the first that matches wins, else the default segment."""

    version: int = Field(ge=1)
    rules: tuple[SegmentRule, ...]
    default_segment: str
    default_policy: str


def parse_threshold(text: str) -> tuple[int, str]:
    """Read ``"5000000 CLP"`` into minor units and currency."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(
            f"{text!r} must be an amount and a currency, like '5000000 CLP'"
        )
    try:
        return parse_minor_units(parts[0], parts[1]), parts[1]
    except MoneyError as error:
        raise ValueError(str(error)) from None


@dataclass(frozen=True)
class SegmentFacts:
    """What segmentation looks at for one invoice."""

    amount_minor: int
    currency: str
    customer_type: str
    average_days_late: float | None  # None: no invoice of this customer settled before
    broken_promises: int = (
        0  # the customer's promises broken before this invoice's issue
    )


def rule_matches(rule: SegmentRule, facts: SegmentFacts) -> bool:
    """Tell whether every condition the rule states holds for these facts."""
    if (
        rule.customer_types is not None
        and facts.customer_type not in rule.customer_types
    ):
        return False
    for bound, is_lower in ((rule.min_amount, True), (rule.max_amount, False)):
        if bound is None:
            continue
        limit, currency = parse_threshold(bound)
        if currency != facts.currency:
            return False
        if is_lower and facts.amount_minor < limit:
            return False
        if not is_lower and facts.amount_minor >= limit:
            return False
    if (
        rule.min_broken_promises is not None
        and facts.broken_promises < rule.min_broken_promises
    ):
        return False
    late = facts.average_days_late
    if rule.min_average_days_late is not None and (
        late is None or late < rule.min_average_days_late
    ):
        return False
    # No history matches no days-late bound, the upper one included, as segments.yaml says.
    return not (
        rule.max_average_days_late is not None
        and (late is None or late > rule.max_average_days_late)
    )


def choose_segment(segmentation: Segmentation, facts: SegmentFacts) -> tuple[str, str]:
    """Return (segment, policy name) for an invoice: first matching rule, else the default."""
    for rule in segmentation.rules:
        if rule_matches(rule, facts):
            return rule.segment, rule.policy
    return segmentation.default_segment, segmentation.default_policy


def _describe(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    return field or "(top level)", first["msg"]


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise PolicyError(path, where, f"not valid YAML: {error}") from None


def load_policy_file(path: Path) -> Policy:
    """Load and validate one policy file; errors name the file, the field and the reason."""
    try:
        policy = Policy.model_validate(_read_yaml(path))
    except ValidationError as error:
        field, reason = _describe(error)
        raise PolicyError(
            path, field, f"{reason}; fix the file and load again"
        ) from None
    if policy.name != path.stem:
        raise PolicyError(
            path, "name", f"is {policy.name!r} but the file is {path.name}"
        )
    return policy


@dataclass(frozen=True)
class PolicyBook:
    """Every policy of a folder, plus the segmentation that points at them."""

    policies: dict[str, Policy]
    segmentation: Segmentation

    def policy_for(self, facts: SegmentFacts) -> tuple[str, Policy]:
        """Return the segment and the policy that govern an invoice with these facts."""
        segment, policy_name = choose_segment(self.segmentation, facts)
        return segment, self.policies[policy_name]


def load_policy_book(folder: Path) -> PolicyBook:
    """Load every ``*.yaml`` policy of a folder and its ``segments.yaml``, cross-checked."""
    policies = {
        path.stem: load_policy_file(path)
        for path in sorted(folder.glob("*.yaml"))
        if path.name not in NOT_POLICIES
    }
    segments_path = folder / SEGMENTS_FILE
    if not segments_path.exists():
        raise PolicyError(
            segments_path, "(file)", "missing; every policy folder needs one"
        )
    try:
        segmentation = Segmentation.model_validate(_read_yaml(segments_path))
    except ValidationError as error:
        field, reason = _describe(error)
        raise PolicyError(segments_path, field, reason) from None
    named = [(f"rules[{i}].policy", r.policy) for i, r in enumerate(segmentation.rules)]
    named.append(("default_policy", segmentation.default_policy))
    for field, name in named:
        if name not in policies:
            known = ", ".join(sorted(policies)) or "none"
            raise PolicyError(
                segments_path, field, f"no policy {name!r} (known: {known})"
            )
    return PolicyBook(policies=policies, segmentation=segmentation)
