"""Whether, and when, a collector may lawfully contact a debtor: one pure decision per attempt."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

from receivables.jurisdictions import (
    CalendarRule,
    CapRule,
    CapScope,
    ChannelClass,
    ConversationRule,
    GapRule,
    HoldRule,
    JurisdictionProfile,
    OptOutRule,
    PeriodKind,
    RuleT,
    StopCondition,
    StopRule,
    Weekday,
    WindowRule,
)

logger = logging.getLogger(__name__)

# A slot further out than this means the rules leave none at all (say, candidate zones whose
# windows never overlap): that needs a person, so it raises instead of deferring forever.
SEARCH_HORIZON = timedelta(days=400)
_CHUNK = timedelta(days=8)
_MAX_REASONS = 8


class Verdict(enum.StrEnum):
    """What to do with a contact attempt."""

    ALLOW = "allow"
    DEFER = "defer"
    DENY = "deny"


class PaymentForm(enum.IntEnum):
    """SII ``FmaPago`` of a Chilean electronic invoice."""

    CASH = 1  # contado: paid when issued
    CREDIT = 2  # crédito: payable later, the only form that is dunned
    FREE = 3  # sin costo: given free of charge


class NoLawfulInstantError(ValueError):
    """No instant within the search horizon satisfies every rule; a person must look."""


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime, got naive {moment.isoformat()}"
        )
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ContactAttempt:
    """A contact a workflow wants to make, about one or more invoices of one debtor."""

    channel: str
    wanted_at: datetime
    collector_id: str
    debtor_id: str
    invoice_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "wanted_at", _utc(self.wanted_at, "wanted_at"))


@dataclass(frozen=True)
class PastContact:
    """A contact made, from the ledger; ``conversation`` marks a call that reached the person."""

    channel: str
    at: datetime
    collector_id: str
    debtor_id: str
    invoice_ids: tuple[str, ...] = ()
    conversation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at, "at"))


@dataclass(frozen=True)
class DebtorFacts:
    """What the rules need to know about the debtor and the invoices of the attempt."""

    time_zone: str | None
    candidate_time_zones: tuple[str, ...] = ()
    subdivision: str | None = (
        None  # ISO 3166-2 region code as ``holidays`` spells it: "RM"
    )
    lawsuit_served: bool = False
    insolvent: bool = False
    invoice_ceded: bool = False
    invoice_reclaimed: bool = False
    payment_form: PaymentForm | None = None
    invoice_received_at: datetime | None = None  # SII reception of the invoice
    cease_requested: bool = False
    opted_out_channels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.invoice_received_at is not None:
            received = _utc(self.invoice_received_at, "invoice_received_at")
            object.__setattr__(self, "invoice_received_at", received)


@dataclass(frozen=True)
class ContactDecision:
    """The verdict, the instant to use (None when denied), why, and what was assumed."""

    verdict: Verdict
    at: datetime | None
    reason: str
    rules_evaluated: tuple[str, ...]
    flags: tuple[str, ...] = ()


_STOP_TESTS: dict[StopCondition, tuple[str, Callable[[DebtorFacts], bool]]] = {
    StopCondition.LAWSUIT_SERVED: ("lawsuit served", lambda d: d.lawsuit_served),
    StopCondition.INSOLVENT: ("insolvency procedure opened", lambda d: d.insolvent),
    StopCondition.INVOICE_CEDED: ("invoice ceded", lambda d: d.invoice_ceded),
    StopCondition.INVOICE_RECLAIMED: (
        "invoice reclaimed",
        lambda d: d.invoice_reclaimed,
    ),
    StopCondition.PAYMENT_FORM_CASH: (
        "paid in cash (FmaPago 1)",
        lambda d: d.payment_form is PaymentForm.CASH,
    ),
    StopCondition.PAYMENT_FORM_FREE: (
        "given free (FmaPago 3)",
        lambda d: d.payment_form is PaymentForm.FREE,
    ),
    StopCondition.CEASE_REQUESTED: ("cease requested", lambda d: d.cease_requested),
}


@dataclass
class _Context:
    profile: JurisdictionProfile
    debtor: DebtorFacts
    zones: tuple[ZoneInfo, ...]
    flags: tuple[str, ...]
    channel: str | None = None
    channel_class: ChannelClass | None = None
    attempt: ContactAttempt | None = None
    history: Sequence[PastContact] = ()
    consulted: set[str] = field(default_factory=set)

    def rules_on(self, kind: type[RuleT], day: date) -> list[RuleT]:
        """Rules of a kind in force on a local date that govern this channel."""
        found = [
            rule
            for rule in self.profile.rules_of(kind)
            if rule.in_force(day) and rule.governs(self.channel, self.channel_class)
        ]
        self.consulted.update(rule.id for rule in found)
        return found

    def rules_at(self, kind: type[RuleT], moment: datetime) -> list[RuleT]:
        """Rules of a kind in force at an instant in any of the debtor's possible zones."""
        days = {moment.astimezone(zone).date() for zone in self.zones}
        by_id: dict[str, RuleT] = {}
        for day in sorted(days):
            for rule in self.rules_on(kind, day):
                by_id.setdefault(rule.id, rule)
        return list(by_id.values())

    def evaluated(self) -> tuple[str, ...]:
        """Ids of the rules consulted, in the profile's order."""
        return tuple(
            rule.id for rule in self.profile.rules if rule.id in self.consulted
        )


def resolve_time_zones(
    profile: JurisdictionProfile, debtor: DebtorFacts
) -> tuple[tuple[ZoneInfo, ...], tuple[str, ...]]:
    """The zones whose windows must all allow a contact, and a flag when the zone was unknown."""
    if debtor.time_zone:
        return (ZoneInfo(debtor.time_zone),), ()
    names = debtor.candidate_time_zones or profile.default_time_zones
    zones = tuple(ZoneInfo(name) for name in names)
    if len(names) == 1:
        return zones, (f"time zone unknown: {names[0]} (the only candidate) used",)
    origin = (
        "" if debtor.candidate_time_zones else f" (all {profile.jurisdiction} zones)"
    )
    # A time is only lawful if it is lawful wherever the debtor may be (Reg. F comment to
    # 1006.6(b)(1)(i) says so for the US; for Chile it is the only safe reading).
    return zones, (
        f"time zone unknown: intersection of {', '.join(names)} windows used{origin}",
    )


def _context(
    profile: JurisdictionProfile,
    debtor: DebtorFacts,
    channel: str | None,
    attempt: ContactAttempt | None = None,
    history: Sequence[PastContact] = (),
) -> _Context:
    zones, flags = resolve_time_zones(profile, debtor)
    calendars = profile.rules_of(CalendarRule)
    if debtor.subdivision is None and any(
        rule.subdivision_from_debtor for rule in calendars
    ):
        countries = ", ".join(sorted({rule.country for rule in calendars}))
        flags += (f"region unknown: the holidays of every {countries} region avoided",)
    channel_class = None if channel is None else profile.channel_class(channel)
    return _Context(
        profile, debtor, zones, flags, channel, channel_class, attempt, history
    )


def decide(
    attempt: ContactAttempt,
    history: Sequence[PastContact],
    profile: JurisdictionProfile,
    debtor: DebtorFacts,
) -> ContactDecision:
    """Allow the attempt, defer it to the next instant every rule allows, or deny it on a stop."""
    ctx = _context(profile, debtor, attempt.channel, attempt, history)
    denial = _stop_reason(ctx, attempt)
    if denial is not None:
        logger.info(
            "denied %s contact: %s",
            attempt.channel,
            denial,
            extra={"channel": attempt.channel, "outcome": "denied", "reason": denial},
        )
        return ContactDecision(Verdict.DENY, None, denial, ctx.evaluated(), ctx.flags)

    at, reasons = _earliest_lawful(ctx, attempt.wanted_at)
    if at == attempt.wanted_at:
        reason = "lawful at the wanted instant"
        decision = ContactDecision(
            Verdict.ALLOW, at, reason, ctx.evaluated(), ctx.flags
        )
    else:
        reason = _join_reasons(reasons)
        decision = ContactDecision(
            Verdict.DEFER, at, reason, ctx.evaluated(), ctx.flags
        )
        local = at.astimezone(ctx.zones[0]).isoformat()
        logger.info(
            "deferred %s contact to %s: %s",
            attempt.channel,
            local,
            reason,
            extra={
                "channel": attempt.channel,
                "outcome": "deferred",
                "until": local,
                "reason": reason,
            },
        )
    return decision


def next_lawful_instant(
    after: datetime,
    profile: JurisdictionProfile,
    debtor: DebtorFacts,
    *,
    channel: str | None = None,
) -> datetime:
    """The first instant at or after ``after`` that the windows and calendars allow (UTC)."""
    ctx = _context(profile, debtor, channel)
    return _next_open(_utc(after, "after"), ctx)


def _stop_reason(ctx: _Context, attempt: ContactAttempt) -> str | None:
    for rule in ctx.rules_at(StopRule, attempt.wanted_at):
        label, applies = _STOP_TESTS[rule.condition]
        if applies(ctx.debtor):
            return f"{rule.id} {label}: {rule.summary}"
    for opt_out in ctx.rules_at(OptOutRule, attempt.wanted_at):
        if attempt.channel in ctx.debtor.opted_out_channels:
            return f"{opt_out.id} the debtor opted out of {attempt.channel}"
    return None


def _earliest_lawful(ctx: _Context, wanted: datetime) -> tuple[datetime, list[str]]:
    """Alternate window search and frequency checks until one instant passes both."""
    moment = wanted
    reasons: list[str] = []
    while moment < wanted + SEARCH_HORIZON:
        opened = _next_open(moment, ctx)
        reasons += _explain_wait(moment, opened, ctx)
        blocks = _frequency_blocks(opened, ctx)
        if not blocks:
            return opened, reasons
        # Every block names an instant before which it cannot clear; all of them must clear.
        moment = max(until for until, _ in blocks)
        reasons += [why for _, why in blocks]
    raise NoLawfulInstantError(
        f"no lawful instant within {SEARCH_HORIZON.days} days of {wanted.isoformat()}"
    )


def _join_reasons(reasons: list[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    if len(unique) > _MAX_REASONS:
        extra = len(unique) - _MAX_REASONS
        unique = [*unique[:_MAX_REASONS], f"and {extra} more"]
    return "; ".join(unique)


# --- windows and calendars -------------------------------------------------------------------


@dataclass(frozen=True)
class _Opening:
    start: datetime
    end: datetime
    local_start: time
    local_end: time | None  # None: until midnight
    start_rule: str | None
    end_rule: str | None


def _to_utc(day: date, moment: time | None, zone: ZoneInfo) -> datetime:
    """A local wall time as a UTC instant; None stands for the midnight that ends the day."""
    if moment is None:
        return datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(UTC)
    return datetime.combine(day, moment, zone).astimezone(UTC)


def _day_opening(day: date, zone: ZoneInfo, ctx: _Context) -> _Opening | str:
    """The lawful span of one local date in one zone, or the reason the date is closed."""
    start, end = time.min, None
    start_rule = end_rule = None
    weekday = Weekday.of(day)
    for window in ctx.rules_on(WindowRule, day):
        hours = window.hours[weekday]
        if hours is None:
            return f"{window.id} {weekday.label} {day}"
        if hours.start > start:
            start, start_rule = hours.start, window.id
        if end is None or hours.end < end:
            end, end_rule = hours.end, window.id
    for calendar in ctx.rules_on(CalendarRule, day):
        name = _holiday_name(calendar, day, ctx.debtor.subdivision)
        if name is not None:
            return f"{calendar.id} holiday {day} ({name})"
    if end is not None and end <= start:
        return f"{start_rule} and {end_rule} leave no hours on {day}"
    return _Opening(
        _to_utc(day, start, zone),
        _to_utc(day, end, zone),
        start,
        end,
        start_rule,
        end_rule,
    )


def _holiday_name(rule: CalendarRule, day: date, subdivision: str | None) -> str | None:
    for extra in rule.extra_holidays:
        in_region = (
            not extra.subdivisions
            or subdivision is None
            or subdivision in extra.subdivisions
        )
        if extra.day == day and in_region:
            return extra.name
    region = subdivision if rule.subdivision_from_debtor else None
    return _holiday_table(
        rule.country, region, rule.subdivision_from_debtor, day.year
    ).get(day)


@cache
def _holiday_table(
    country: str, subdivision: str | None, regional: bool, year: int
) -> dict[date, str]:
    """Holidays of a year; with the region unknown, the union of every region's holidays."""
    if not regional or subdivision is not None:
        try:
            table = holidays.country_holidays(country, subdiv=subdivision, years=year)
        except NotImplementedError:
            raise ValueError(
                f"{country} has no region {subdivision!r} in holidays"
            ) from None
        return dict(table)
    national = holidays.country_holidays(country, years=year)
    merged = dict(national)
    for region in national.subdivisions:
        merged.update(holidays.country_holidays(country, subdiv=region, years=year))
    return merged


def _spans(
    zone: ZoneInfo, first: date, last: date, ctx: _Context
) -> list[tuple[datetime, ...]]:
    spans: list[tuple[datetime, ...]] = []
    day = first
    while day <= last:
        opening = _day_opening(day, zone, ctx)
        if isinstance(opening, _Opening):
            if spans and spans[-1][1] >= opening.start:
                spans[-1] = (spans[-1][0], max(spans[-1][1], opening.end))
            else:
                spans.append((opening.start, opening.end))
        day += timedelta(days=1)
    return spans


def _intersect(
    left: list[tuple[datetime, ...]], right: list[tuple[datetime, ...]]
) -> list[tuple[datetime, ...]]:
    out: list[tuple[datetime, ...]] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _lawful_spans(
    start: datetime, stop: datetime, ctx: _Context
) -> list[tuple[datetime, ...]]:
    """UTC spans between roughly ``start`` and ``stop`` that are lawful in every zone."""
    result: list[tuple[datetime, ...]] | None = None
    for zone in ctx.zones:
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = stop.astimezone(zone).date() + timedelta(days=1)
        spans = _spans(zone, first, last, ctx)
        result = spans if result is None else _intersect(result, spans)
    return result or []


def _next_open(after: datetime, ctx: _Context) -> datetime:
    cursor = after
    while cursor < after + SEARCH_HORIZON:
        for start, end in _lawful_spans(cursor, cursor + _CHUNK, ctx):
            if end > cursor:
                return max(start, cursor)
        cursor += _CHUNK
    raise NoLawfulInstantError(
        f"no lawful window within {SEARCH_HORIZON.days} days of {after.isoformat()}"
    )


def _explain_wait(after: datetime, opened: datetime, ctx: _Context) -> list[str]:
    """Why the window search moved from ``after`` to ``opened``, day by day."""
    if opened == after:
        return []
    for index, zone in enumerate(ctx.zones):
        reasons = _explain_in_zone(after, opened, zone, ctx)
        if reasons:
            # Name the zone when it is not the first candidate, which readers assume.
            return reasons if index == 0 else [f"{zone}: {why}" for why in reasons]
    names = ", ".join(str(zone) for zone in ctx.zones)
    return [f"outside the windows of {names} taken together"]


def _explain_in_zone(
    after: datetime, opened: datetime, zone: ZoneInfo, ctx: _Context
) -> list[str]:
    first, last = after.astimezone(zone), opened.astimezone(zone)
    reasons: list[str] = []
    day = first.date()
    while day <= last.date():
        opening = _day_opening(day, zone, ctx)
        if isinstance(opening, str):
            reasons.append(opening)
        elif day == first.date():
            reasons += _hours_reason(first, opening)
        day += timedelta(days=1)
    return reasons


def _hours_reason(local: datetime, opening: _Opening) -> list[str]:
    label = f"{Weekday.of(local.date()).label} {local.date()}"
    if local.time() < opening.local_start:
        return [f"{opening.start_rule} before {opening.local_start:%H:%M} on {label}"]
    if opening.local_end is not None and local.time() >= opening.local_end:
        return [f"{opening.end_rule} from {opening.local_end:%H:%M} on {label}"]
    return []


# --- frequency: caps, gaps, conversations, holds ---------------------------------------------


def _frequency_blocks(moment: datetime, ctx: _Context) -> list[tuple[datetime, str]]:
    """Each rule that forbids ``moment`` with the earliest instant it could clear."""
    checks: list[tuple[datetime, str] | None] = []
    checks += [
        _hold_block(rule, moment, ctx) for rule in ctx.rules_at(HoldRule, moment)
    ]
    checks += [_cap_block(rule, moment, ctx) for rule in ctx.rules_at(CapRule, moment)]
    checks += [_gap_block(rule, moment, ctx) for rule in ctx.rules_at(GapRule, moment)]
    checks += [
        _conversation_block(rule, moment, ctx)
        for rule in ctx.rules_at(ConversationRule, moment)
    ]
    return [block for block in checks if block is not None]


def _in_scope(
    rule: CapRule | GapRule | ConversationRule, ctx: _Context
) -> list[PastContact]:
    """The past contacts a rule counts against the attempt, earliest first."""
    attempt = ctx.attempt
    if attempt is None:
        return []
    wanted = set(attempt.invoice_ids)
    counted = []
    for past in ctx.history:
        if past.debtor_id != attempt.debtor_id:
            continue
        if (
            rule.scope is not CapScope.DEBTOR
            and past.collector_id != attempt.collector_id
        ):
            continue
        # Per-debt scope: a contact naming no invoice might concern any of them, so it counts.
        shares = (
            not past.invoice_ids or not wanted or bool(wanted & set(past.invoice_ids))
        )
        if rule.scope is CapScope.COLLECTOR_DEBTOR_DEBT and not shares:
            continue
        if rule.governs(past.channel, ctx.profile.channel_class(past.channel)):
            counted.append(past)
    return sorted(counted, key=lambda past: past.at)


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return _to_utc(day, time.min, zone)


def _hold_block(
    rule: HoldRule, moment: datetime, ctx: _Context
) -> tuple[datetime, str] | None:
    received = ctx.debtor.invoice_received_at
    if received is None:
        return None
    # The period runs on the days that follow reception; dunning may start the day after it.
    ends = max(
        _start_of(
            received.astimezone(zone).date() + timedelta(days=rule.days + 1), zone
        )
        for zone in ctx.zones
    )
    if moment >= ends:
        return None
    last_day = ends.date() - timedelta(days=1)
    return ends, (
        f"{rule.id} the buyer may still reclaim the invoice through {last_day}; "
        f"dunning may start on {ends.date()}"
    )


def _cap_block(
    rule: CapRule, moment: datetime, ctx: _Context
) -> tuple[datetime, str] | None:
    times = [past.at for past in _in_scope(rule, ctx)]
    if rule.period is PeriodKind.ROLLING:
        until = _rolling_clear(
            moment, times, timedelta(days=rule.period_days), rule.max_contacts
        )
    else:
        until = _local_days_clear(moment, times, rule, ctx.zones)
    if until is None:
        return None
    what = "/".join(rule.channels) if rule.channels else str(rule.channel_class)
    unit = "days" if rule.period is PeriodKind.ROLLING else "consecutive local days"
    limit = f"at most {rule.max_contacts} {what} contacts in {rule.period_days} {unit}"
    why = f"{rule.id} {limit}"
    return until, why


def _rolling_clear(
    moment: datetime, times: list[datetime], span: timedelta, maximum: int
) -> datetime | None:
    """None if one more contact fits every span holding ``moment``; else when it may."""
    # A fullest span holding ``moment`` can always be slid to start at ``moment`` or at a
    # contact before it, so those starts are the only ones to count.
    starts = [moment, *(t for t in times if moment - span < t <= moment)]
    full = any(sum(s <= t < s + span for t in times) + 1 > maximum for s in starts)
    if not full:
        return None
    # The answer can only change when a contact drops out of reach, span after it was made.
    return min(t + span for t in times if t + span > moment)


def _local_days_clear(
    moment: datetime, times: list[datetime], rule: CapRule, zones: tuple[ZoneInfo, ...]
) -> datetime | None:
    until: datetime | None = None
    length = rule.period_days
    for zone in zones:
        today = moment.astimezone(zone).date()
        days = [t.astimezone(zone).date() for t in times]
        firsts = [today - timedelta(days=back) for back in range(length)]
        full = any(
            sum(s <= d < s + timedelta(days=length) for d in days) + 1
            > rule.max_contacts
            for s in firsts
        )
        if not full:
            continue
        reopen = min(
            d + timedelta(days=length)
            for d in days
            if d + timedelta(days=length) > today
        )
        candidate = _start_of(reopen, zone)
        until = candidate if until is None else max(until, candidate)
    return until


def _gap_block(
    rule: GapRule, moment: datetime, ctx: _Context
) -> tuple[datetime, str] | None:
    until: datetime | None = None
    nearest: date | None = None
    for zone in ctx.zones:
        today = moment.astimezone(zone).date()
        for past in _in_scope(rule, ctx):
            day = past.at.astimezone(zone).date()
            if abs((today - day).days) <= rule.clear_days:
                candidate = _start_of(day + timedelta(days=rule.clear_days + 1), zone)
                if until is None or candidate > until:
                    until, nearest = candidate, day
    if until is None:
        return None
    needed = f"{rule.clear_days} whole days needed"
    return (
        until,
        f"{rule.id} {needed} after the {rule.channel_class} contact of {nearest}",
    )


def _conversation_block(
    rule: ConversationRule, moment: datetime, ctx: _Context
) -> tuple[datetime, str] | None:
    until: datetime | None = None
    for zone in ctx.zones:
        today = moment.astimezone(zone).date()
        for past in _in_scope(rule, ctx):
            if not past.conversation or past.at >= moment:
                continue
            # The conversation's own date is the first of the quiet days.
            reopen = past.at.astimezone(zone).date() + timedelta(days=rule.days)
            if today < reopen:
                candidate = _start_of(reopen, zone)
                until = candidate if until is None else max(until, candidate)
    if until is None:
        return None
    return until, f"{rule.id} no call for {rule.days} days after a conversation"


# --- consolidation ---------------------------------------------------------------------------


def group_for_consolidation(
    attempts: Iterable[ContactAttempt],
    profile: JurisdictionProfile,
    debtors: Mapping[str, DebtorFacts] | None = None,
) -> list[list[ContactAttempt]]:
    """Group written attempts by collector, debtor and local day; voice attempts stay alone."""
    groups: dict[tuple[str, str, date], list[ContactAttempt]] = {}
    ordered: list[list[ContactAttempt]] = []
    for attempt in sorted(attempts, key=lambda a: a.wanted_at):
        if profile.channel_class(attempt.channel) is not ChannelClass.WRITTEN:
            ordered.append([attempt])
            continue
        zone = _grouping_zone(profile, (debtors or {}).get(attempt.debtor_id))
        key = (
            attempt.collector_id,
            attempt.debtor_id,
            attempt.wanted_at.astimezone(zone).date(),
        )
        if key not in groups:
            groups[key] = []
            ordered.append(groups[key])
        groups[key].append(attempt)
    return ordered


def _grouping_zone(
    profile: JurisdictionProfile, debtor: DebtorFacts | None
) -> ZoneInfo:
    # Grouping only saves contacts; with the zone unknown the first candidate names the day.
    if debtor is not None and debtor.time_zone:
        return ZoneInfo(debtor.time_zone)
    if debtor is not None and debtor.candidate_time_zones:
        return ZoneInfo(debtor.candidate_time_zones[0])
    return ZoneInfo(profile.default_time_zones[0])


def consolidate(group: Sequence[ContactAttempt]) -> ContactAttempt:
    """One attempt standing for a group: the earliest one's channel and time, every invoice."""
    if not group:
        raise ValueError("cannot consolidate an empty group")
    first = min(group, key=lambda attempt: attempt.wanted_at)
    invoices = dict.fromkeys(
        invoice for attempt in group for invoice in attempt.invoice_ids
    )
    return ContactAttempt(
        channel=first.channel,
        wanted_at=first.wanted_at,
        collector_id=first.collector_id,
        debtor_id=first.debtor_id,
        invoice_ids=tuple(invoices),
    )
