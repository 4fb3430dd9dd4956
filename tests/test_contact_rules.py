"""Lawful-contact decisions: windows, holidays, DST, caps, gaps, stops, zones and overlays."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest

from receivables.contact_rules import (
    ContactAttempt,
    DebtorFacts,
    PastContact,
    PaymentForm,
    Verdict,
    consolidate,
    decide,
    group_for_consolidation,
    next_lawful_instant,
)
from receivables.jurisdictions import (
    JurisdictionError,
    JurisdictionProfile,
    load_jurisdiction,
    load_jurisdictions,
    load_profile,
)

SANTIAGO = ZoneInfo("America/Santiago")
PUNTA_ARENAS = ZoneInfo("America/Punta_Arenas")
NEW_YORK = ZoneInfo("America/New_York")
PROFILES = load_jurisdictions()
CONSUMER = PROFILES["cl.consumer"]
B2B = PROFILES["cl.b2b"]
FDCPA = PROFILES["us.fdcpa"]
IN_SANTIAGO = DebtorFacts(time_zone="America/Santiago", subdivision="RM")
IN_NEW_YORK = DebtorFacts(time_zone="America/New_York")


def local(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    zone: ZoneInfo = SANTIAGO,
) -> datetime:
    """A wall-clock time in a zone, as an aware datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def attempt(
    channel: str, at: datetime, *invoices: str, collector: str = "agency"
) -> ContactAttempt:
    """An attempt by one collector to the one debtor of these tests."""
    return ContactAttempt(channel, at, collector, "debtor-1", invoices or ("F-1",))


def made(
    channel: str, at: datetime, *invoices: str, conversation: bool = False
) -> PastContact:
    """A contact already in the ledger."""
    return PastContact(
        channel, at, "agency", "debtor-1", invoices or ("F-1",), conversation
    )


def write(folder: Path, name: str, text: str) -> Path:
    """Write a YAML file for a loader test."""
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- a Saturday evening before a Sunday and a Monday holiday ----------------------------------


def test_san_pedro_y_san_pablo_2026_is_monday_june_29_in_the_holidays_package() -> None:
    assert date(2026, 6, 29) in holidays.country_holidays("CL", years=2026)


def test_saturday_1959_is_lawful_when_nothing_else_forbids_it() -> None:
    # Art. 37 with art. 59 CPC allows Saturdays until 20:00, so the bare case is an ALLOW.
    decision = decide(
        attempt("email", local(2026, 6, 27, 19, 59)), [], CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.ALLOW
    assert decision.at == local(2026, 6, 27, 19, 59)


def test_saturday_1959_after_a_thursday_letter_waits_for_tuesday_0800() -> None:
    thursday_email = made("email", local(2026, 6, 25, 10, 0))

    decision = decide(
        attempt("sms", local(2026, 6, 27, 19, 59)),
        [thursday_email],
        CONSUMER,
        IN_SANTIAGO,
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == utc(2026, 6, 30, 12, 0)
    assert decision.at.astimezone(SANTIAGO) == local(2026, 6, 30, 8, 0)
    assert "CL-C-05" in decision.reason
    assert "CL-C-01 Sunday 2026-06-28" in decision.reason
    assert "CL-C-02 holiday 2026-06-29" in decision.reason


def test_caps_are_checked_again_at_the_slot_the_window_search_found() -> None:
    # 20:30 on Saturday is outside hours; Tuesday 08:00 is the next window, but the week's one
    # call was made Tuesday the 23rd at 09:00, so the call waits until 09:00.
    last_call = made("call", local(2026, 6, 23, 9, 0))

    decision = decide(
        attempt("call", local(2026, 6, 27, 20, 30)), [last_call], CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == local(2026, 6, 30, 9, 0)
    assert "CL-C-03" in decision.reason


# --- Holy Week and the end of daylight saving time --------------------------------------------


@pytest.mark.parametrize("profile", [CONSUMER, B2B], ids=["cl.consumer", "cl.b2b"])
def test_holy_week_and_the_clock_change_lead_to_monday_0800_minus_four(
    profile: JurisdictionProfile,
) -> None:
    thursday_night = local(2026, 4, 2, 21, 0)
    # Thursday is still on summer time, UTC-3; Monday is on winter time, UTC-4.
    assert thursday_night.utcoffset() == local(2026, 4, 4, 12).utcoffset()

    decision = decide(attempt("email", thursday_night), [], profile, IN_SANTIAGO)

    assert decision.verdict is Verdict.DEFER
    assert decision.at == utc(2026, 4, 6, 12, 0)
    assert decision.at.astimezone(SANTIAGO).isoformat() == "2026-04-06T08:00:00-04:00"
    assert "holiday 2026-04-03" in decision.reason
    assert (
        "2026-04-04" in decision.reason
    )  # a holiday, and a closed day for cl.b2b anyway
    assert next_lawful_instant(thursday_night, profile, IN_SANTIAGO) == decision.at


# --- two written contacts a week, two clear days apart ----------------------------------------


MONDAY_EMAIL = made("email", local(2026, 5, 4, 10, 0))


def test_tuesday_whatsapp_after_monday_email_waits_for_thursday_0800() -> None:
    decision = decide(
        attempt("whatsapp", local(2026, 5, 5, 9, 0)),
        [MONDAY_EMAIL],
        CONSUMER,
        IN_SANTIAGO,
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == local(2026, 5, 7, 8, 0)
    assert decision.reason.startswith("CL-C-05")


def test_thursday_sms_after_monday_email_is_allowed() -> None:
    decision = decide(
        attempt("sms", local(2026, 5, 7, 9, 0)), [MONDAY_EMAIL], CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.ALLOW
    assert decision.at == local(2026, 5, 7, 9, 0)


def test_the_deferred_whatsapp_and_thursday_sms_become_one_contact() -> None:
    # Thursday is only allowed for one written contact: the deferred WhatsApp joins the SMS.
    deferred = attempt("whatsapp", local(2026, 5, 7, 8, 0), "F-1")
    sms = attempt("sms", local(2026, 5, 7, 9, 0), "F-2")

    groups = group_for_consolidation(
        [sms, deferred], CONSUMER, {"debtor-1": IN_SANTIAGO}
    )

    assert groups == [[deferred, sms]]
    merged = consolidate(groups[0])
    assert merged.invoice_ids == ("F-1", "F-2")
    decision = decide(merged, [MONDAY_EMAIL], CONSUMER, IN_SANTIAGO)
    assert decision.verdict is Verdict.ALLOW


def test_thursday_sms_is_deferred_if_the_whatsapp_was_sent_apart_that_morning() -> None:
    history = [MONDAY_EMAIL, made("whatsapp", local(2026, 5, 7, 8, 0))]

    decision = decide(
        attempt("sms", local(2026, 5, 7, 9, 0)), history, CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == local(2026, 5, 11, 10, 0)
    assert "CL-C-05" in decision.reason and "CL-C-04" in decision.reason


def test_next_monday_letter_waits_until_last_mondays_email_is_seven_days_old() -> None:
    history = [MONDAY_EMAIL, made("sms", local(2026, 5, 7, 9, 0))]

    decision = decide(
        attempt("letter", local(2026, 5, 11, 9, 0)), history, CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == local(2026, 5, 11, 10, 0)
    assert decision.reason.startswith("CL-C-04")


# --- one collector, two creditors, four invoices ----------------------------------------------


CLINIC = ("clinic-1", "clinic-2", "clinic-3")
SCHOOL = ("school-1",)


def test_one_call_a_week_in_total_across_the_clinic_and_school_debts() -> None:
    wanted = local(2026, 5, 4, 10, 0)
    history: list[PastContact] = []
    slots = []
    for invoice in (*CLINIC, *SCHOOL):
        decision = decide(
            attempt("call", wanted, invoice), history, CONSUMER, IN_SANTIAGO
        )
        assert decision.at is not None
        slots.append(decision.at)
        history.append(made("call", decision.at, invoice))

    assert slots == [local(2026, 5, day, 10, 0) for day in (4, 11, 18, 25)]


def test_the_four_written_reminders_of_one_day_go_out_as_one() -> None:
    reminders = [
        attempt("email", local(2026, 5, 4, 9, 0), invoice) for invoice in CLINIC
    ]
    reminders.append(attempt("letter", local(2026, 5, 4, 11, 0), *SCHOOL))

    groups = group_for_consolidation(reminders, CONSUMER, {"debtor-1": IN_SANTIAGO})

    assert len(groups) == 1
    merged = consolidate(groups[0])
    assert merged.invoice_ids == (*CLINIC, *SCHOOL)
    assert decide(merged, [], CONSUMER, IN_SANTIAGO).verdict is Verdict.ALLOW
    sent = [made("email", local(2026, 5, 4, 9, 0), *merged.invoice_ids)]
    second = decide(reminders[-1], sent, CONSUMER, IN_SANTIAGO)
    assert second.verdict is Verdict.DEFER  # sent apart, the fourth would break CL-C-05


def test_calls_are_never_grouped() -> None:
    calls = [attempt("call", local(2026, 5, 4, 9, 0), invoice) for invoice in CLINIC]

    assert group_for_consolidation(calls, CONSUMER) == [[call] for call in calls]


# --- Punta Arenas keeps UTC-3 in winter -------------------------------------------------------


def test_1930_in_santiago_is_2030_in_punta_arenas_so_the_campaign_waits() -> None:
    campaign = local(2026, 7, 15, 19, 30)
    debtor = DebtorFacts(time_zone="America/Punta_Arenas", subdivision="MA")

    decision = decide(attempt("email", campaign), [], CONSUMER, debtor)

    assert campaign.astimezone(PUNTA_ARENAS).hour == 20
    assert decision.verdict is Verdict.DEFER
    # July 16 (Virgen del Carmen) is a national holiday, so the first slot is Friday the 17th.
    assert decision.at == local(2026, 7, 17, 8, 0, zone=PUNTA_ARENAS)
    assert decision.at == utc(2026, 7, 17, 11, 0)
    assert "CL-C-01 from 20:00" in decision.reason
    assert "CL-C-02 holiday 2026-07-16" in decision.reason


def test_the_same_campaign_instant_is_lawful_in_santiago() -> None:
    decision = decide(
        attempt("email", local(2026, 7, 15, 19, 30)), [], CONSUMER, IN_SANTIAGO
    )

    assert decision.verdict is Verdict.ALLOW


# --- unknown time zone ------------------------------------------------------------------------


VALPARAISO_UNKNOWN_ZONE = DebtorFacts(
    time_zone=None,
    candidate_time_zones=("America/Santiago", "Pacific/Easter"),
    subdivision="VS",
)


def test_unknown_zone_uses_the_intersection_of_the_candidate_windows_and_says_so() -> (
    None
):
    decision = decide(
        attempt("email", local(2026, 5, 6, 9, 0)), [], CONSUMER, VALPARAISO_UNKNOWN_ZONE
    )

    assert decision.verdict is Verdict.DEFER
    assert decision.at == local(2026, 5, 6, 10, 0)  # 08:00 on Easter Island
    assert decision.flags == (
        "time zone unknown: intersection of America/Santiago, Pacific/Easter windows used",
    )
    assert "Pacific/Easter: CL-C-01 before 08:00" in decision.reason


def test_unknown_zone_allows_an_instant_lawful_in_every_candidate() -> None:
    decision = decide(
        attempt("email", local(2026, 5, 6, 19, 30)),
        [],
        CONSUMER,
        VALPARAISO_UNKNOWN_ZONE,
    )

    assert decision.verdict is Verdict.ALLOW
    assert decision.flags


def test_no_zone_and_no_region_falls_back_to_every_zone_and_region_and_says_so() -> (
    None
):
    decision = decide(
        attempt("email", local(2026, 5, 6, 9, 0)), [], CONSUMER, DebtorFacts(None)
    )

    assert decision.at == local(2026, 5, 6, 10, 0)
    assert any("all cl.consumer zones" in flag for flag in decision.flags)
    assert any(flag.startswith("region unknown") for flag in decision.flags)


# --- stop conditions and the US call cap ------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "facts", "rule_id"),
    [
        (CONSUMER, replace(IN_SANTIAGO, lawsuit_served=True), "CL-C-10"),
        (CONSUMER, replace(IN_SANTIAGO, insolvent=True), "CL-C-11"),
        (B2B, replace(IN_SANTIAGO, invoice_reclaimed=True), "CL-B-10"),
        (B2B, replace(IN_SANTIAGO, payment_form=PaymentForm.CASH), "CL-B-11"),
        (B2B, replace(IN_SANTIAGO, payment_form=PaymentForm.FREE), "CL-B-12"),
        (B2B, replace(IN_SANTIAGO, invoice_ceded=True), "CL-B-13"),
        (B2B, replace(IN_SANTIAGO, insolvent=True), "CL-B-14"),
        (FDCPA, replace(IN_NEW_YORK, cease_requested=True), "US-10"),
        (FDCPA, replace(IN_NEW_YORK, insolvent=True), "US-11"),
        (FDCPA, replace(IN_NEW_YORK, opted_out_channels=frozenset({"email"})), "US-04"),
    ],
)
def test_stop_conditions_deny_with_the_rule_id(
    profile: JurisdictionProfile, facts: DebtorFacts, rule_id: str
) -> None:
    decision = decide(attempt("email", local(2026, 5, 6, 10, 0)), [], profile, facts)

    assert decision.verdict is Verdict.DENY
    assert decision.at is None
    assert decision.reason.startswith(rule_id)
    assert rule_id in decision.rules_evaluated


def test_b2b_credit_invoice_is_dunned() -> None:
    facts = replace(IN_SANTIAGO, payment_form=PaymentForm.CREDIT)

    decision = decide(attempt("email", local(2026, 5, 6, 10, 0)), [], B2B, facts)

    assert decision.verdict is Verdict.ALLOW


def test_an_opt_out_closes_only_the_medium_refused() -> None:
    facts = replace(IN_NEW_YORK, opted_out_channels=frozenset({"sms"}))
    wanted = local(2026, 5, 6, 10, 0, zone=NEW_YORK)

    assert decide(attempt("sms", wanted), [], FDCPA, facts).verdict is Verdict.DENY
    assert decide(attempt("email", wanted), [], FDCPA, facts).verdict is Verdict.ALLOW


def test_an_eighth_call_on_the_same_debt_within_seven_days_is_deferred() -> None:
    calls = [
        made("call", local(2026, 5, 4, 9 + hour, 0, zone=NEW_YORK)) for hour in range(7)
    ]

    decision = decide(
        attempt("call", local(2026, 5, 5, 10, 0, zone=NEW_YORK)),
        calls,
        FDCPA,
        IN_NEW_YORK,
    )

    assert decision.verdict is Verdict.DEFER
    # Monday the 4th leaves the seven-day run when Monday the 11th begins.
    assert decision.at == local(2026, 5, 11, 8, 0, zone=NEW_YORK)
    assert decision.reason.startswith("US-02")


def test_one_call_a_day_for_seven_days_defers_the_eighth_to_the_next_morning() -> None:
    calls = [
        made("call", local(2026, 5, day, 10, 0, zone=NEW_YORK)) for day in range(4, 11)
    ]

    decision = decide(
        attempt("call", local(2026, 5, 10, 11, 0, zone=NEW_YORK)),
        calls,
        FDCPA,
        IN_NEW_YORK,
    )

    assert decision.at == local(2026, 5, 11, 8, 0, zone=NEW_YORK)


def test_the_call_cap_counts_each_debt_apart() -> None:
    calls = [
        made("call", local(2026, 5, 4, 9 + hour, 0, zone=NEW_YORK)) for hour in range(7)
    ]

    decision = decide(
        attempt("call", local(2026, 5, 5, 10, 0, zone=NEW_YORK), "F-2"),
        calls,
        FDCPA,
        IN_NEW_YORK,
    )

    assert decision.verdict is Verdict.ALLOW


def test_no_call_for_seven_days_after_a_conversation() -> None:
    talk = made("call", local(2026, 5, 4, 10, 0, zone=NEW_YORK), conversation=True)

    decision = decide(
        attempt("call", local(2026, 5, 8, 10, 0, zone=NEW_YORK)),
        [talk],
        FDCPA,
        IN_NEW_YORK,
    )

    assert decision.at == local(2026, 5, 11, 8, 0, zone=NEW_YORK)
    assert decision.reason.startswith("US-03")


def test_b2b_waits_out_the_eight_day_reclaim_period() -> None:
    facts = replace(IN_SANTIAGO, invoice_received_at=local(2026, 5, 4, 15, 0))

    decision = decide(attempt("email", local(2026, 5, 6, 10, 0)), [], B2B, facts)

    # Reception on the 4th: the buyer may reclaim from the 5th to the 12th inclusive.
    assert decision.at == local(2026, 5, 13, 8, 0)
    assert decision.reason.startswith("CL-B-05")
    # The reason names the last reclaim day, then the first day dunning may start.
    assert "reclaim the invoice through 2026-05-12" in decision.reason
    assert "dunning may start on 2026-05-13" in decision.reason


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        attempt("email", datetime(2026, 5, 6, 10, 0))


# --- overlays and the loader ------------------------------------------------------------------


TIGHTER = """\
overlay_for: cl.consumer
tenant: clinica-sur
rules:
  - id: CL-C-01
    hours:
      monday: "09:00-19:00"
      saturday: closed
  - id: CL-C-04
    max_contacts: 1
  - id: SUR-01
    kind: gap
    summary: Ten clear days between calls, the clinic's own rule.
    source: Tenant policy
    effective_from: 2026-01-01
    channel_class: voice
    clear_days: 10
"""


def test_an_overlay_that_tightens_is_merged_and_changes_decisions(
    tmp_path: Path,
) -> None:
    overlay = write(tmp_path, "clinica-sur.yaml", TIGHTER)

    profile = load_profile("cl.consumer", [overlay])

    assert profile.overlays == ("clinica-sur",)
    saturday = decide(
        attempt("email", local(2026, 5, 9, 10, 0)), [], profile, IN_SANTIAGO
    )
    assert saturday.at == local(2026, 5, 11, 9, 0)
    second = decide(
        attempt("email", local(2026, 5, 8, 10, 0)), [MONDAY_EMAIL], profile, IN_SANTIAGO
    )
    assert second.at == local(2026, 5, 11, 10, 0)
    monday_call = made("call", local(2026, 5, 4, 10, 0))
    call = decide(
        attempt("call", local(2026, 5, 11, 10)), [monday_call], profile, IN_SANTIAGO
    )
    assert call.at == local(2026, 5, 15, 8, 0)
    assert call.reason.startswith("SUR-01")


@pytest.mark.parametrize(
    ("entry", "field", "why"),
    [
        (
            "  - id: CL-C-04\n    max_contacts: 3\n",
            "rules[CL-C-04].max_contacts",
            "raises",
        ),
        (
            "  - id: CL-C-01\n    hours:\n      sunday: '10:00-14:00'\n",
            "rules[CL-C-01].hours",
            "opens",
        ),
        ("  - id: CL-C-05\n    clear_days: 1\n", "rules[CL-C-05].clear_days", "lowers"),
        (
            "  - id: CL-C-03\n    scope: collector_debtor_debt\n",
            "rules[CL-C-03].scope",
            "narrows",
        ),
        ("  - id: CL-C-10\n    enabled: false\n", "rules[CL-C-10].enabled", "switches"),
    ],
    ids=["max_contacts", "hours", "clear_days", "scope", "enabled"],
)
def test_an_overlay_that_loosens_a_non_relaxable_rule_is_refused(
    tmp_path: Path, entry: str, field: str, why: str
) -> None:
    path = write(
        tmp_path,
        "loose.yaml",
        "overlay_for: cl.consumer\ntenant: loose\nrules:\n" + entry,
    )

    with pytest.raises(JurisdictionError) as raised:
        load_profile("cl.consumer", [path])

    assert raised.value.file == str(path)
    assert raised.value.field == field
    assert why in raised.value.reason
    assert "loosens non-relaxable rule" in str(raised.value)


def test_an_overlay_may_loosen_a_relaxable_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "saturdays.yaml",
        """\
        overlay_for: cl.b2b
        tenant: saturdays
        rules:
          - id: CL-B-01
            hours:
              saturday: "09:00-13:00"
        """,
    )

    profile = load_profile("cl.b2b", [path])

    saturday = decide(
        attempt("email", local(2026, 5, 9, 10, 0)), [], profile, IN_SANTIAGO
    )
    assert saturday.verdict is Verdict.ALLOW


def test_an_overlay_cannot_rewrite_a_rules_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "source.yaml",
        "overlay_for: cl.consumer\ntenant: x\nrules:\n  - id: CL-C-04\n    source: none\n",
    )

    with pytest.raises(JurisdictionError, match="cannot be changed by an overlay"):
        load_profile("cl.consumer", [path])


def test_a_profile_error_names_the_file_the_rule_and_the_field(tmp_path: Path) -> None:
    text = (
        Path(__file__).parents[1] / "policies/jurisdictions/cl.consumer.yaml"
    ).read_text()
    path = tmp_path / "cl.consumer.yaml"
    path.write_text(
        text.replace("max_contacts: 2", "max_contacts: 0"), encoding="utf-8"
    )

    with pytest.raises(JurisdictionError) as raised:
        load_jurisdiction(path)

    assert raised.value.file == str(path)
    assert raised.value.field == "rules[3] (CL-C-04).max_contacts"
    assert "greater than or equal to 1" in raised.value.reason


def test_every_shipped_rule_cites_a_source_and_a_start_date() -> None:
    for profile in PROFILES.values():
        for rule in profile.rules:
            assert rule.source.strip(), rule.id
            assert rule.effective_from <= date(2026, 1, 1), rule.id
