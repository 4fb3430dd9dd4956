"""Random campaigns through ``decide`` never yield a history that an independent checker faults."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receivables.contact_rules import (
    ContactAttempt,
    DebtorFacts,
    PastContact,
    Verdict,
    decide,
)
from receivables.jurisdictions import (
    CalendarRule,
    CapRule,
    CapScope,
    ConversationRule,
    GapRule,
    HoldRule,
    JurisdictionProfile,
    OptOutRule,
    PeriodKind,
    StopCondition,
    StopRule,
    Weekday,
    WindowRule,
    load_jurisdictions,
)

PROFILES = load_jurisdictions()


@dataclass(frozen=True)
class Setting:
    """Where and when a jurisdiction's random debtors live."""

    zones: tuple[str | None, ...]  # None: the zone is unknown
    candidates: tuple[tuple[str, ...], ...]
    regions: tuple[str | None, ...]
    anchors: tuple[datetime, ...]


CHILE = Setting(
    zones=("America/Santiago", "America/Punta_Arenas", "Pacific/Easter", None),
    candidates=((), ("America/Santiago", "Pacific/Easter"), ("America/Punta_Arenas",)),
    regions=(None, "RM", "AP", "NB", "VS", "MA"),
    # Holy Week with the April clock change, San Pedro y San Pablo, Virgen del Carmen, and
    # the September clock change followed by Fiestas Patrias.
    anchors=(
        datetime(2026, 3, 30, 12, tzinfo=UTC),
        datetime(2026, 6, 22, 12, tzinfo=UTC),
        datetime(2026, 7, 13, 12, tzinfo=UTC),
        datetime(2026, 9, 3, 12, tzinfo=UTC),
    ),
)
UNITED_STATES = Setting(
    zones=("America/New_York", "America/Los_Angeles", "Pacific/Honolulu", None),
    candidates=((), ("America/New_York", "America/Los_Angeles")),
    regions=(None,),
    # The March and November clock changes.
    anchors=(
        datetime(2026, 3, 4, 12, tzinfo=UTC),
        datetime(2026, 10, 28, 12, tzinfo=UTC),
    ),
)
SETTINGS = {"cl.consumer": CHILE, "cl.b2b": CHILE, "us.fdcpa": UNITED_STATES}
STOP_FIELDS = {
    StopCondition.LAWSUIT_SERVED: lambda d: d.lawsuit_served,
    StopCondition.INSOLVENT: lambda d: d.insolvent,
    StopCondition.INVOICE_CEDED: lambda d: d.invoice_ceded,
    StopCondition.INVOICE_RECLAIMED: lambda d: d.invoice_reclaimed,
    StopCondition.PAYMENT_FORM_CASH: lambda d: d.payment_form == 1,
    StopCondition.PAYMENT_FORM_FREE: lambda d: d.payment_form == 3,
    StopCondition.CEASE_REQUESTED: lambda d: d.cease_requested,
}


# --- the independent checker ------------------------------------------------------------------


def zones_of(profile: JurisdictionProfile, debtor: DebtorFacts) -> list[ZoneInfo]:
    """Every zone the debtor may be in."""
    if debtor.time_zone:
        return [ZoneInfo(debtor.time_zone)]
    return [
        ZoneInfo(name)
        for name in debtor.candidate_time_zones or profile.default_time_zones
    ]


def channel_class(profile: JurisdictionProfile, channel: str) -> str:
    """'voice' or 'written', read straight from the profile's lists."""
    return "voice" if channel in profile.channels.voice else "written"


def counts(
    rule: CapRule | GapRule | ConversationRule, profile: JurisdictionProfile, ch: str
) -> bool:
    """Whether a contact on this channel falls under the rule."""
    if rule.channels:
        return ch in rule.channels
    return channel_class(profile, ch) == rule.channel_class.value


def is_holiday(rule: CalendarRule, day: date, region: str | None) -> bool:
    """Holiday in the region, or in any region when the region is unknown."""
    if any(extra.day == day for extra in rule.extra_holidays):
        return True
    if not rule.subdivision_from_debtor:
        return day in holidays.country_holidays(rule.country, years=day.year)
    regions = (
        [region]
        if region
        else list(holidays.country_holidays(rule.country).subdivisions)
    )
    national = day in holidays.country_holidays(rule.country, years=day.year)
    regional = any(
        day in holidays.country_holidays(rule.country, subdiv=r, years=day.year)
        for r in regions
    )
    return national or regional


def window_problems(
    contact: PastContact, profile: JurisdictionProfile, debtor: DebtorFacts
) -> Iterator[str]:
    """Each zone where the contact's wall-clock time or date was not lawful."""
    kind = channel_class(profile, contact.channel)
    for zone in zones_of(profile, debtor):
        wall = contact.at.astimezone(zone)
        for rule in profile.rules_of(WindowRule):
            if not rule.in_force(wall.date()) or kind not in rule.applies_to:
                continue
            hours = rule.hours[Weekday(wall.strftime("%A").lower())]
            if hours is None or not hours.start <= wall.time() < hours.end:
                yield f"{rule.id}: {contact.channel} at {wall.isoformat()} in {zone}"
        for calendar in profile.rules_of(CalendarRule):
            in_force = calendar.in_force(wall.date()) and kind in calendar.applies_to
            if in_force and is_holiday(calendar, wall.date(), debtor.subdivision):
                yield f"{calendar.id}: {contact.channel} on holiday {wall.date()} in {zone}"


def single_problems(
    contact: PastContact, profile: JurisdictionProfile, debtor: DebtorFacts
) -> Iterator[str]:
    """Stops, opt-outs and the reclaim hold, which need no other contact to judge."""
    day = contact.at.date()
    for rule in profile.rules_of(StopRule):
        if rule.in_force(day) and STOP_FIELDS[rule.condition](debtor):
            yield f"{rule.id}: contact after stop {rule.condition}"
    for opt_out in profile.rules_of(OptOutRule):
        if opt_out.in_force(day) and contact.channel in debtor.opted_out_channels:
            yield f"{opt_out.id}: {contact.channel} after an opt-out"
    received = debtor.invoice_received_at
    for hold in profile.rules_of(HoldRule):
        for zone in zones_of(profile, debtor):
            if received is None:
                continue
            waited = (
                contact.at.astimezone(zone).date() - received.astimezone(zone).date()
            ).days
            if waited <= hold.days:
                yield f"{hold.id}: contact {waited} days after reception"


def scope_groups(
    contacts: Sequence[PastContact], scope: CapScope
) -> dict[tuple[str, ...], list[PastContact]]:
    """Contacts grouped by the key a scope counts them under."""
    groups: dict[tuple[str, ...], list[PastContact]] = defaultdict(list)
    for contact in contacts:
        if scope is CapScope.DEBTOR:
            groups[(contact.debtor_id,)].append(contact)
        elif scope is CapScope.COLLECTOR_DEBTOR:
            groups[(contact.collector_id, contact.debtor_id)].append(contact)
        else:
            for invoice in contact.invoice_ids:
                groups[(contact.collector_id, contact.debtor_id, invoice)].append(
                    contact
                )
    return groups


def cap_problems(
    rule: CapRule, group: list[PastContact], zones: list[ZoneInfo]
) -> Iterator[str]:
    """Too many contacts in one period, measured from each contact."""
    if rule.period is PeriodKind.ROLLING:
        span = timedelta(days=rule.period_days)
        for first in group:
            inside = [c for c in group if first.at <= c.at < first.at + span]
            if len(inside) > rule.max_contacts:
                yield f"{rule.id}: {len(inside)} contacts from {first.at.isoformat()}"
        return
    for zone in zones:
        days = [c.at.astimezone(zone).date() for c in group]
        for start in days:
            run = [d for d in days if 0 <= (d - start).days < rule.period_days]
            if len(run) > rule.max_contacts:
                yield f"{rule.id}: {len(run)} contacts in the run from {start} ({zone})"


def gap_problems(
    rule: GapRule, group: list[PastContact], zones: list[ZoneInfo]
) -> Iterator[str]:
    """Two contacts with fewer than ``clear_days`` whole dates between them."""
    for zone in zones:
        for i, one in enumerate(group):
            for other in group[i + 1 :]:
                apart = abs(
                    (
                        one.at.astimezone(zone).date()
                        - other.at.astimezone(zone).date()
                    ).days
                )
                if apart - 1 < rule.clear_days:
                    yield f"{rule.id}: {one.at.isoformat()} and {other.at.isoformat()} ({zone})"


def conversation_problems(
    rule: ConversationRule, group: list[PastContact], zones: list[ZoneInfo]
) -> Iterator[str]:
    """A call placed within the quiet days that follow a conversation."""
    for zone in zones:
        for talk in (c for c in group if c.conversation):
            talk_day = talk.at.astimezone(zone).date()
            for call in (c for c in group if c.at > talk.at):
                if (call.at.astimezone(zone).date() - talk_day).days < rule.days:
                    yield f"{rule.id}: call {call.at.isoformat()} after a conversation ({zone})"


def grouped(
    history: Sequence[PastContact],
    rule: CapRule | GapRule | ConversationRule,
    profile: JurisdictionProfile,
) -> list[list[PastContact]]:
    """The contacts a rule counts, split by its scope, each group in time order."""
    chosen = [contact for contact in history if counts(rule, profile, contact.channel)]
    return [
        sorted(group, key=lambda c: c.at)
        for group in scope_groups(chosen, rule.scope).values()
    ]


def history_problems(
    history: Sequence[PastContact], profile: JurisdictionProfile, debtor: DebtorFacts
) -> list[str]:
    """Every rule a whole history breaks; empty when it is lawful."""
    problems: list[str] = []
    for contact in history:
        problems += window_problems(contact, profile, debtor)
        problems += single_problems(contact, profile, debtor)
    zones = zones_of(profile, debtor)
    for cap in profile.rules_of(CapRule):
        for group in grouped(history, cap, profile):
            problems += cap_problems(cap, group, zones)
    for gap in profile.rules_of(GapRule):
        for group in grouped(history, gap, profile):
            problems += gap_problems(gap, group, zones)
    for quiet in profile.rules_of(ConversationRule):
        for group in grouped(history, quiet, profile):
            problems += conversation_problems(quiet, group, zones)
    return problems


# --- random campaigns -------------------------------------------------------------------------


@st.composite
def debtors(draw: st.DrawFn, setting: Setting, anchor: datetime) -> DebtorFacts:
    """A debtor in a known or unknown zone, sometimes sued, opted out or freshly invoiced."""
    zone = draw(st.sampled_from(setting.zones))
    received = st.integers(-12, 6).map(lambda days: anchor + timedelta(days=days))
    return DebtorFacts(
        time_zone=zone,
        candidate_time_zones=() if zone else draw(st.sampled_from(setting.candidates)),
        subdivision=draw(st.sampled_from(setting.regions)),
        lawsuit_served=draw(st.integers(0, 9)) == 0,
        invoice_received_at=draw(st.none() | received),
        opted_out_channels=frozenset(
            draw(st.sets(st.sampled_from(["sms", "email"]), max_size=1))
        ),
    )


def rarely_reached(count: int) -> st.SearchStrategy[list[bool]]:
    """Call outcomes; conversations are rare so that the seven-call cap gets its turn."""
    return st.lists(
        st.integers(0, 4).map(lambda n: n == 0), min_size=count, max_size=count
    )


@st.composite
def campaigns(
    draw: st.DrawFn,
) -> tuple[JurisdictionProfile, DebtorFacts, list[ContactAttempt], list[bool]]:
    """A profile, a debtor, attempts around a DST or holiday week, and call outcomes."""
    name = draw(st.sampled_from(sorted(PROFILES)))
    profile, setting = PROFILES[name], SETTINGS[name]
    anchor = draw(st.sampled_from(setting.anchors))
    debtor = draw(debtors(setting, anchor))
    # Short campaigns, sometimes with one collector and one invoice, reach the caps as well as
    # the windows.
    minutes = draw(st.integers(2, 16)) * 24 * 60
    collectors = draw(st.sampled_from([("agency-a",), ("agency-a", "agency-b")]))
    invoices = draw(st.sampled_from([("F-1",), ("F-1", "F-2")]))
    attempt = st.builds(
        ContactAttempt,
        channel=st.sampled_from((*profile.channels.voice, *profile.channels.written)),
        wanted_at=st.integers(0, minutes).map(lambda m: anchor + timedelta(minutes=m)),
        collector_id=st.sampled_from(collectors),
        debtor_id=st.just("debtor-1"),
        invoice_ids=st.lists(
            st.sampled_from(invoices), min_size=1, max_size=2, unique=True
        ).map(tuple),
    )
    attempts = sorted(
        draw(st.lists(attempt, min_size=1, max_size=16)), key=lambda a: a.wanted_at
    )
    return profile, debtor, attempts, draw(rarely_reached(len(attempts)))


@st.composite
def call_bursts(
    draw: st.DrawFn,
) -> tuple[JurisdictionProfile, DebtorFacts, list[ContactAttempt], list[bool]]:
    """Many US calls on one debt within a few days, so the seven-call cap is reached."""
    anchor = draw(st.sampled_from(UNITED_STATES.anchors))
    zone = draw(st.sampled_from(UNITED_STATES.zones[:3]))
    minutes = draw(st.integers(1, 9)) * 24 * 60
    offsets = draw(st.lists(st.integers(0, minutes), min_size=8, max_size=20))
    attempts = [
        ContactAttempt(
            "call", anchor + timedelta(minutes=m), "agency-a", "debtor-1", ("F-1",)
        )
        for m in sorted(offsets)
    ]
    outcomes = draw(rarely_reached(len(attempts)))
    return PROFILES["us.fdcpa"], DebtorFacts(time_zone=zone), attempts, outcomes


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(campaigns(), campaigns(), call_bursts()))
def test_decided_contacts_never_break_a_rule(
    campaign: tuple[JurisdictionProfile, DebtorFacts, list[ContactAttempt], list[bool]],
) -> None:
    profile, debtor, attempts, outcomes = campaign
    history: list[PastContact] = []
    for attempt, reached in zip(attempts, outcomes, strict=True):
        decision = decide(attempt, history, profile, debtor)
        if decision.verdict is Verdict.DENY:
            assert decision.at is None
            continue
        assert decision.at is not None and decision.at >= attempt.wanted_at
        assert (decision.verdict is Verdict.ALLOW) == (decision.at == attempt.wanted_at)
        # Asking again at the decided instant must agree: search and check use one rule set.
        again = decide(
            replace(attempt, wanted_at=decision.at), history, profile, debtor
        )
        assert again.verdict is Verdict.ALLOW, again.reason
        # Only the latest call's outcome can be known; an earlier one is already followed.
        latest = all(past.at < decision.at for past in history)
        talk = reached and attempt.channel == "call" and latest
        history.append(
            PastContact(
                attempt.channel,
                decision.at,
                attempt.collector_id,
                attempt.debtor_id,
                attempt.invoice_ids,
                talk,
            )
        )

    assert history_problems(history, profile, debtor) == []


# --- the checker itself catches breaches ------------------------------------------------------


SANTIAGO = ZoneInfo("America/Santiago")
IN_SANTIAGO = DebtorFacts(time_zone="America/Santiago", subdivision="RM")


def sent(
    channel: str, month: int, day: int, hour: int, *, talk: bool = False
) -> PastContact:
    """A contact by one agency to one debtor about one invoice, at Santiago wall time, 2026."""
    at = datetime(2026, month, day, hour, tzinfo=SANTIAGO)
    return PastContact(channel, at, "agency", "debtor-1", ("F-1",), talk)


def test_the_checker_faults_each_kind_of_breach() -> None:
    consumer, fdcpa = PROFILES["cl.consumer"], PROFILES["us.fdcpa"]
    breaches = {
        "CL-C-01": [sent("email", 5, 10, 10)],  # a Sunday
        "CL-C-02": [sent("email", 5, 21, 10)],  # Navy Day
        "CL-C-03": [sent("call", 5, 4, 10), sent("call", 5, 8, 10)],
        "CL-C-04": [
            sent("email", 5, 4, 10),
            sent("sms", 5, 7, 10),
            sent("letter", 5, 11, 9),
        ],
        "CL-C-05": [sent("email", 5, 4, 10), sent("sms", 5, 6, 10)],
    }
    for rule_id, history in breaches.items():
        found = history_problems(history, consumer, IN_SANTIAGO)
        assert any(problem.startswith(rule_id) for problem in found), (rule_id, found)

    calls = [sent("call", 5, 4, 9 + hour) for hour in range(8)]
    assert any(
        p.startswith("US-02") for p in history_problems(calls, fdcpa, IN_SANTIAGO)
    )
    talks = [sent("call", 5, 4, 10, talk=True), sent("call", 5, 6, 10)]
    assert any(
        p.startswith("US-03") for p in history_problems(talks, fdcpa, IN_SANTIAGO)
    )
    lawful = [sent("email", 5, 4, 10), sent("sms", 5, 7, 10)]
    assert history_problems(lawful, consumer, IN_SANTIAGO) == []
