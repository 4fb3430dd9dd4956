"""Lawful-contact rules per jurisdiction as data: YAML schema, loader and tenant overlays."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from datetime import date, time
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from receivables.mapping import CUSTOMER_TYPES
from receivables.policy import PolicyError
from receivables.yaml_text import load_yaml

JURISDICTIONS_DIR = Path(__file__).resolve().parents[1] / "policies" / "jurisdictions"
RuleId = Annotated[
    str, Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{2,}$", max_length=30)
]
_PHRASE = re.compile(r"\w[^*]*\*?")


class JurisdictionError(PolicyError):
    """A jurisdiction profile or tenant overlay that cannot be used: file, field and reason."""


class ChannelClass(enum.StrEnum):
    """How the law groups channels: voice (calls, visits) or written (letters, SMS, email, chat)."""

    VOICE = "voice"
    WRITTEN = "written"


class Weekday(enum.StrEnum):
    """A day of the week as the YAML spells it; ``index`` follows ``date.weekday()``."""

    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @classmethod
    def of(cls, day: date) -> Weekday:
        """The weekday of a local date."""
        return list(cls)[day.weekday()]

    @property
    def label(self) -> str:
        """Capitalised name for reasons shown to people."""
        return self.value.capitalize()


class CapScope(enum.StrEnum):
    """Which past contacts a frequency rule counts against the attempt."""

    DEBTOR = "debtor"  # every collector's contacts with the debtor
    COLLECTOR_DEBTOR = "collector_debtor"  # one collector, all of the debtor's debts
    COLLECTOR_DEBTOR_DEBT = "collector_debtor_debt"  # one collector, the same debt

    @property
    def breadth(self) -> int:
        """Larger counts more contacts, so it is the stricter scope."""
        return {"collector_debtor_debt": 1, "collector_debtor": 2, "debtor": 3}[
            self.value
        ]


class PeriodKind(enum.StrEnum):
    """How a cap's period is measured."""

    ROLLING = "rolling"  # any span of period_days x 24 hours
    LOCAL_DAYS = "local_days"  # any run of period_days consecutive local calendar dates


class StopCondition(enum.StrEnum):
    """A fact about the debtor or invoice that ends extrajudicial collection."""

    LAWSUIT_SERVED = "lawsuit_served"
    INSOLVENT = "insolvent"
    INVOICE_CEDED = "invoice_ceded"
    INVOICE_RECLAIMED = "invoice_reclaimed"
    PAYMENT_FORM_CASH = "payment_form_cash"
    PAYMENT_FORM_FREE = "payment_form_free"
    CEASE_REQUESTED = "cease_requested"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DayWindow(_Strict):
    """The lawful hours of one weekday, local time, start inclusive and end exclusive."""

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f"{value!r} must look like '08:00-20:00'")
            return {"start": start.strip(), "end": end.strip()}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise ValueError(f"window starts at {self.start} but ends at {self.end}")
        return self

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class _RuleBase(_Strict):
    id: RuleId
    summary: str = Field(min_length=3)
    source: str = Field(min_length=3)
    effective_from: date
    # The first day the rule no longer applies; None while it is in force.
    effective_to: date | None = None
    relaxable: bool = False

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must come after effective_from")
        return self

    def in_force(self, day: date) -> bool:
        """Whether the rule applies on this local date."""
        ends = self.effective_to
        return self.effective_from <= day and (ends is None or day < ends)

    def governs(self, channel: str | None, channel_class: ChannelClass | None) -> bool:
        """Whether the rule speaks to a contact on this channel (None: any channel)."""
        return True


class _ClassRule(_RuleBase):
    applies_to: tuple[ChannelClass, ...] = (ChannelClass.VOICE, ChannelClass.WRITTEN)

    def governs(self, channel: str | None, channel_class: ChannelClass | None) -> bool:
        """Whether the rule speaks to a contact of this class (None: any class)."""
        return channel_class is None or channel_class in self.applies_to


class _ChannelRule(_RuleBase):
    channel_class: ChannelClass
    channels: tuple[str, ...] = ()  # when given, only these channels of the class
    scope: CapScope = CapScope.COLLECTOR_DEBTOR

    def governs(self, channel: str | None, channel_class: ChannelClass | None) -> bool:
        """Whether the rule counts, and limits, contacts on this channel."""
        if channel is None:
            return True
        if self.channels:
            return channel in self.channels
        return channel_class == self.channel_class


class WindowRule(_ClassRule):
    """Hours per weekday at the debtor's location; a day set to ``closed`` allows no contact."""

    kind: Literal["window"]
    hours: dict[Weekday, DayWindow | None]

    @field_validator("hours", mode="before")
    @classmethod
    def _closed_is_none(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                day: None if hours == "closed" else hours
                for day, hours in value.items()
            }
        return value

    @field_validator("hours")
    @classmethod
    def _every_day_given(
        cls, value: dict[Weekday, DayWindow | None]
    ) -> dict[Weekday, DayWindow | None]:
        missing = [day.value for day in Weekday if day not in value]
        if missing:
            raise ValueError(f"give every weekday, 'closed' if none; missing {missing}")
        return value


class ExtraHoliday(_Strict):
    """A holiday the ``holidays`` package lacks, such as a one-off day set by a special law."""

    day: date
    name: str
    source: str
    subdivisions: tuple[str, ...] = ()  # empty: the whole country


class CalendarRule(_ClassRule):
    """No contact on the public holidays of the debtor's country and region."""

    kind: Literal["calendar"]
    country: str
    subdivision_from_debtor: bool = True
    extra_holidays: tuple[ExtraHoliday, ...] = ()

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value not in holidays.list_supported_countries():
            raise ValueError(f"the holidays package has no calendar for {value!r}")
        return value


class CapRule(_ChannelRule):
    """At most ``max_contacts`` contacts of a channel class within a period."""

    kind: Literal["cap"]
    max_contacts: int = Field(ge=1, le=100)
    period_days: int = Field(ge=1, le=366)
    period: PeriodKind = PeriodKind.ROLLING


class GapRule(_ChannelRule):
    """At least ``clear_days`` whole local days between two contacts of a channel class."""

    kind: Literal["gap"]
    clear_days: int = Field(ge=1, le=60)


class ConversationRule(_ChannelRule):
    """No call for ``days`` local days after a conversation; its date is the first of them."""

    kind: Literal["after_conversation"]
    days: int = Field(ge=1, le=60)


class HoldRule(_RuleBase):
    """No dunning during the ``days`` local days that follow the invoice's reception."""

    kind: Literal["hold_after_reception"]
    days: int = Field(ge=1, le=60)


class StopRule(_RuleBase):
    """A condition that ends all extrajudicial contact for the debts concerned."""

    kind: Literal["stop"]
    condition: StopCondition


class OptOutRule(_RuleBase):
    """A channel the debtor asked not to be contacted through is never used."""

    kind: Literal["opt_out"]


class ContentRule(_RuleBase):
    """A rule about what a message may say; checked by the template lint, not by ``decide``."""

    kind: Literal["content"]
    check: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min_days_past_due: int | None = Field(default=None, ge=0, le=365)
    # Words a message must not say, matched whole and ignoring case and accents; a trailing
    # "*" also matches longer words that start so ("demanda*": demandado, demandaremos).
    phrases: tuple[str, ...] = ()
    # Phrases that contain a listed word but mean something else ("sin embargo": however).
    allowed: tuple[str, ...] = ()
    # Only policies that segments.yaml may give debts of these customer types; empty: all.
    customer_types: tuple[str, ...] = ()

    @field_validator("phrases", "allowed")
    @classmethod
    def _phrases_are_words(cls, phrases: tuple[str, ...]) -> tuple[str, ...]:
        for phrase in phrases:
            if not _PHRASE.fullmatch(phrase):
                raise ValueError(
                    f"{phrase!r} must be words, with '*' only at the end of the last one"
                )
        return phrases

    @field_validator("customer_types")
    @classmethod
    def _known_customer_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in types if kind not in CUSTOMER_TYPES]
        if unknown:
            raise ValueError(f"unknown {unknown}; use {', '.join(CUSTOMER_TYPES)}")
        return types

    def governs(self, channel: str | None, channel_class: ChannelClass | None) -> bool:
        """Content rules never decide timing."""
        return False


Rule = Annotated[
    WindowRule
    | CalendarRule
    | CapRule
    | GapRule
    | ConversationRule
    | HoldRule
    | StopRule
    | OptOutRule
    | ContentRule,
    Field(discriminator="kind"),
]
_RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)
RuleT = TypeVar("RuleT", bound=_RuleBase)


class ChannelClasses(_Strict):
    """Which channels the jurisdiction treats as voice and which as written."""

    voice: tuple[str, ...]
    written: tuple[str, ...]

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        both = sorted(set(self.voice) & set(self.written))
        if both:
            raise ValueError(f"channels {both} are listed as both voice and written")
        return self


class JurisdictionProfile(_Strict):
    """Every contact rule of one jurisdiction, plus the names of the overlays merged into it."""

    jurisdiction: str = Field(pattern=r"^[a-z]{2}\.[a-z0-9_]+$")
    description: str
    default_time_zones: tuple[str, ...] = Field(min_length=1)
    channels: ChannelClasses
    rules: tuple[Rule, ...] = Field(min_length=1)
    overlays: tuple[str, ...] = ()
    # One statement-style message for a debtor's invoices whose written reminders fall due
    # together, counted once by the caps. Strict: "yes" or 1 is a typo, not a choice.
    consolidate_written: bool = Field(default=False, strict=True)

    @field_validator("default_time_zones")
    @classmethod
    def _known_zones(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        for name in zones:
            _zone_or_error(name)
        return zones

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(
                    f"rule id {rule.id!r} appears twice; ids must be unique"
                )
            seen.add(rule.id)
        return rules

    @model_validator(mode="after")
    def _rule_channels_known(self) -> Self:
        for rule in self.rules:
            if isinstance(rule, _ChannelRule):
                listed = getattr(self.channels, rule.channel_class.value)
                stray = [c for c in rule.channels if c not in listed]
                if stray:
                    raise ValueError(
                        f"rule {rule.id} names {stray}, not {rule.channel_class} channels"
                    )
        return self

    @model_validator(mode="after")
    def _consolidation_has_written_channels(self) -> Self:
        if self.consolidate_written and not self.channels.written:
            raise ValueError(
                "consolidate_written is true but channels.written lists no channel; "
                "list the written channels or drop consolidate_written"
            )
        return self

    def channel_class(self, channel: str) -> ChannelClass:
        """The class of a channel; an unlisted channel is an error, never a free pass."""
        if channel in self.channels.voice:
            return ChannelClass.VOICE
        if channel in self.channels.written:
            return ChannelClass.WRITTEN
        raise ValueError(
            f"channel {channel!r} is not classified in {self.jurisdiction}; "
            "add it to channels.voice or channels.written"
        )

    def rules_of(self, kind: type[RuleT]) -> tuple[RuleT, ...]:
        """The profile's rules of one kind, in file order."""
        return tuple(rule for rule in self.rules if isinstance(rule, kind))


class TenantOverlay(_Strict):
    """A tenant's changes to a profile: tighter values for existing rules, or extra rules."""

    overlay_for: str
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    description: str = ""
    rules: tuple[dict[str, Any], ...] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _entries_have_ids(
        cls, entries: tuple[dict[str, Any], ...]
    ) -> tuple[dict[str, Any], ...]:
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            rule_id = entry.get("id")
            if not isinstance(rule_id, str):
                raise ValueError(
                    f"entry {index} needs the id of the rule it changes or adds"
                )
            if rule_id in seen:
                raise ValueError(f"rule id {rule_id!r} appears twice")
            seen.add(rule_id)
        return entries


@cache
def _zone_or_error(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise JurisdictionError(path, where, f"not valid YAML: {error}") from None
    except OSError as error:
        raise JurisdictionError(
            path, "(file)", f"cannot be read: {error.strerror}"
        ) from None


def _describe(error: ValidationError, raw: Any) -> tuple[str, str]:
    """Field path (with the rule id when inside ``rules``) and reason of the first error."""
    first = error.errors()[0]
    loc = list(first["loc"])
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        index = loc[1]
        rule_id = _raw_rule_id(raw, index)
        # Pydantic puts the discriminator tag after the index; people never wrote it.
        rest = loc[3:] if len(loc) > 2 and loc[2] in _KINDS else loc[2:]
        head = f"rules[{index}]" + (f" ({rule_id})" if rule_id else "")
        loc = [head, *rest]
    field = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc
    )
    return field.lstrip(".") or "(top level)", first["msg"]


def _raw_rule_id(raw: Any, index: int) -> str | None:
    try:
        rule_id = raw["rules"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return rule_id if isinstance(rule_id, str) else None


_KINDS = {
    "window",
    "calendar",
    "cap",
    "gap",
    "after_conversation",
    "hold_after_reception",
    "stop",
    "opt_out",
    "content",
}


def load_jurisdiction(path: Path) -> JurisdictionProfile:
    """Load one profile; errors name the file, the field (and rule id) and the reason."""
    raw = _read_yaml(path)
    try:
        profile = JurisdictionProfile.model_validate(raw)
    except ValidationError as error:
        field, reason = _describe(error, raw)
        raise JurisdictionError(
            path, field, f"{reason}; fix the file and load again"
        ) from None
    if profile.jurisdiction != path.stem:
        raise JurisdictionError(
            path,
            "jurisdiction",
            f"is {profile.jurisdiction!r} but the file is {path.name}",
        )
    return profile


def load_jurisdictions(
    folder: Path = JURISDICTIONS_DIR,
) -> dict[str, JurisdictionProfile]:
    """Load every ``*.yaml`` profile of a folder, keyed by jurisdiction name."""
    return {
        path.stem: load_jurisdiction(path) for path in sorted(folder.glob("*.yaml"))
    }


def load_overlay(path: Path) -> TenantOverlay:
    """Load a tenant overlay file; its rules are checked when it is applied to a profile."""
    raw = _read_yaml(path)
    try:
        return TenantOverlay.model_validate(raw)
    except ValidationError as error:
        field, reason = _describe(error, raw)
        raise JurisdictionError(path, field, reason) from None


def load_profile(
    jurisdiction: str,
    overlays: Sequence[Path] = (),
    folder: Path = JURISDICTIONS_DIR,
) -> JurisdictionProfile:
    """Load a jurisdiction's profile and merge the given tenant overlays into it, in order."""
    path = folder / f"{jurisdiction}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise JurisdictionError(
            path, "(file)", f"no such jurisdiction (known: {known})"
        )
    profile = load_jurisdiction(path)
    for overlay_path in overlays:
        profile = apply_overlay(profile, load_overlay(overlay_path), overlay_path)
    return profile


def apply_overlay(
    profile: JurisdictionProfile, overlay: TenantOverlay, file: Path | str = "<overlay>"
) -> JurisdictionProfile:
    """Merge an overlay that may only tighten, unless the rule it touches is ``relaxable``."""
    if overlay.overlay_for != profile.jurisdiction:
        raise JurisdictionError(
            file,
            "overlay_for",
            f"is {overlay.overlay_for!r} but the profile is {profile.jurisdiction!r}",
        )
    rules: dict[str, Rule] = {rule.id: rule for rule in profile.rules}
    for entry in overlay.rules:
        rule_id = entry["id"]
        if rule_id in rules:
            merged = _merge_rule(rules[rule_id], entry, file)
            if merged is None:
                del rules[rule_id]
            else:
                rules[rule_id] = merged
        else:
            # Every rule kind only forbids, so a new rule can only tighten the profile.
            rules[rule_id] = _validate_rule(dict(entry), file, rule_id)
    candidate = profile.model_copy(
        update={
            "rules": tuple(rules.values()),
            "overlays": (*profile.overlays, overlay.tenant),
        }
    )
    try:
        return JurisdictionProfile.model_validate(candidate.model_dump(mode="json"))
    except ValidationError as error:
        field, reason = _describe(error, None)
        raise JurisdictionError(file, field, reason) from None


# Fields that give a rule its meaning; an overlay changing them would be a different rule.
_FIXED_FIELDS = frozenset(
    {
        "kind",
        "summary",
        "source",
        "relaxable",
        "channel_class",
        "condition",
        "country",
        "check",
        "customer_types",
    }
)


def _merge_rule(base: Rule, entry: dict[str, Any], file: Path | str) -> Rule | None:
    changes = {key: value for key, value in entry.items() if key != "id"}
    enabled = changes.pop("enabled", True)
    for key in changes:
        if key in _FIXED_FIELDS:
            raise JurisdictionError(
                file, f"rules[{base.id}].{key}", "cannot be changed by an overlay"
            )
    if enabled is not True:
        if not base.relaxable:
            _refuse_loosening(file, base, "enabled", "switches the rule off")
        return None
    data = base.model_dump(mode="json")
    if isinstance(changes.get("hours"), dict):
        # A partial ``hours`` changes only the weekdays it names.
        changes["hours"] = {**data["hours"], **changes["hours"]}
    merged = _validate_rule({**data, **changes}, file, base.id)
    if not base.relaxable:
        for field in changes:
            why = _loosening(field, getattr(base, field), getattr(merged, field))
            if why is not None:
                _refuse_loosening(file, base, field, why)
    return merged


def _validate_rule(data: dict[str, Any], file: Path | str, rule_id: str) -> Rule:
    try:
        return _RULE_ADAPTER.validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(part) for part in first["loc"] if str(part) not in _KINDS]
        field = ".".join(loc) or "(rule)"
        raise JurisdictionError(
            file, f"rules[{rule_id}].{field}", first["msg"]
        ) from None


def _refuse_loosening(file: Path | str, base: Rule, field: str, why: str) -> None:
    raise JurisdictionError(
        file,
        f"rules[{base.id}].{field}",
        f"{why}, which loosens non-relaxable rule {base.id} ({base.source}); "
        "an overlay may only tighten it",
    )


def _loosening(field: str, before: Any, after: Any) -> str | None:
    """Why changing a field from ``before`` to ``after`` loosens the rule, or None."""
    if before == after:
        return None
    judge = _JUDGES.get(field)
    if judge is None:
        return f"changes {field} from {before!r} to {after!r} in a way no tightening check covers"
    return judge(before, after)


def _looser_hours(
    before: dict[Weekday, DayWindow | None], after: dict[Weekday, DayWindow | None]
) -> str | None:
    for day in Weekday:
        old, new = before[day], after[day]
        if new is None:
            continue
        if old is None:
            return f"opens {day.value}, which the rule keeps closed"
        if new.start < old.start or new.end > old.end:
            return f"widens {day.value} from {old} to {new}"
    return None


def _higher_is_looser(before: int, after: int) -> str | None:
    return f"raises it from {before} to {after}" if after > before else None


def _lower_is_looser(before: int, after: int) -> str | None:
    return f"lowers it from {before} to {after}" if after < before else None


def _fewer_is_looser(before: tuple[Any, ...], after: tuple[Any, ...]) -> str | None:
    dropped = [item for item in before if item not in after]
    return f"drops {dropped}" if dropped else None


def _more_is_looser(before: tuple[Any, ...], after: tuple[Any, ...]) -> str | None:
    added = [item for item in after if item not in before]
    return f"adds {added}" if added else None


def _channels_looser(before: tuple[str, ...], after: tuple[str, ...]) -> str | None:
    # An empty list means "the whole class", the widest reach a rule can have.
    if not before:
        return "narrows the rule from its whole channel class to some channels"
    return _fewer_is_looser(before, after) if after else None


def _scope_looser(before: CapScope, after: CapScope) -> str | None:
    if after.breadth < before.breadth:
        return f"narrows the scope from {before} to {after}"
    return None


def _period_looser(before: PeriodKind, after: PeriodKind) -> str | None:
    # A rolling span of N x 24 h holds every run of N local dates too, so it is the stricter.
    if before is PeriodKind.ROLLING and after is PeriodKind.LOCAL_DAYS:
        return "measures the period in local dates instead of a rolling span"
    return None


def _from_looser(before: date, after: date) -> str | None:
    return f"starts the rule later, on {after}" if after > before else None


def _to_looser(before: date | None, after: date | None) -> str | None:
    if after is not None and (before is None or after < before):
        return f"ends the rule earlier, on {after}"
    return None


def _min_days_looser(before: int | None, after: int | None) -> str | None:
    if before is None:
        return None
    if after is None:
        return "removes the minimum number of days past due"
    return _lower_is_looser(before, after)


def _switch_off_looser(before: bool, after: bool) -> str | None:
    return "stops using the debtor's region" if before and not after else None


_JUDGES: dict[str, Callable[[Any, Any], str | None]] = {
    "hours": _looser_hours,
    "applies_to": _fewer_is_looser,
    "extra_holidays": _fewer_is_looser,
    "subdivision_from_debtor": _switch_off_looser,
    "max_contacts": _higher_is_looser,
    "period_days": _lower_is_looser,
    "period": _period_looser,
    "scope": _scope_looser,
    "channels": _channels_looser,
    "clear_days": _lower_is_looser,
    "days": _lower_is_looser,
    "min_days_past_due": _min_days_looser,
    "phrases": _fewer_is_looser,
    "allowed": _more_is_looser,
    "effective_from": _from_looser,
    "effective_to": _to_looser,
}
