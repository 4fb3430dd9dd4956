"""Planning in the debtor's local time: DST changes, day counts, due steps and repeats."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from receivables.planning import (
    PlannedStep,
    days_past_due,
    format_local,
    keyed_to_due_date,
    local_instant,
    next_due_step,
    occurrence_of,
    plan_case,
    replan_after_due_date_move,
    spread_offset,
    upcoming_step,
)
from receivables.policy import Policy

SANTIAGO = "America/Santiago"
EASTER = "Pacific/Easter"
PUNTA_ARENAS = "America/Punta_Arenas"
ISSUED = date(2026, 3, 1)
DUE = date(2026, 3, 31)
CATCH_UP = timedelta(days=3)


def utc(*parts: int) -> datetime:
    """An aware UTC instant."""
    return datetime(*parts, tzinfo=UTC)


def step(step_id: str, offset_days: int, **extra: object) -> dict[str, object]:
    """One policy step as a YAML file would state it, e-mail by default."""
    return {
        "id": step_id,
        "offset_days": offset_days,
        "channel": "email",
        "template": "overdue-first",
        **extra,
    }


def policy(*steps: dict[str, object], send_time: str = "09:00") -> Policy:
    """A validated policy in Santiago with the given steps."""
    return Policy.model_validate(
        {
            "name": "planning-test",
            "version": 1,
            "description": "planning scenarios",
            "send_time": send_time,
            "time_zone": SANTIAGO,
            "steps": list(steps),
        }
    )


def santiago_plan(
    *steps: dict[str, object], due_date: date = DUE, send_time: str = "09:00"
) -> tuple[PlannedStep, ...]:
    """The plan of an invoice issued on ISSUED for a debtor in Santiago."""
    return plan_case(
        policy(*steps, send_time=send_time),
        issue_date=ISSUED,
        due_date=due_date,
        time_zone=SANTIAGO,
    )


def by_id(plan: tuple[PlannedStep, ...], step_id: str) -> PlannedStep:
    """The planned occurrence with this id."""
    return next(p for p in plan if p.step_id == step_id)


def test_weekly_reminders_keep_nine_local_across_the_april_dst_change() -> None:
    # Chile leaves summer time on 2026-04-05: -03 before, -04 after.
    plan = santiago_plan(step("R+2", 2, repeat_every_days=7, repeat_count=2))

    assert [(p.step_id, p.local_date, p.at) for p in plan] == [
        ("R+2", date(2026, 4, 2), utc(2026, 4, 2, 12, 0)),
        ("R+2#2", date(2026, 4, 9), utc(2026, 4, 9, 13, 0)),
    ]
    assert format_local(plan[1].at, SANTIAGO) == "2026-04-09 09:00 America/Santiago"


@pytest.mark.parametrize(
    ("time_zone", "due_date", "instant", "expected"),
    [
        # Santiago on summer time (-03) at the end of March.
        pytest.param(SANTIAGO, DUE, utc(2026, 4, 1, 1, 30), 0, id="santiago-22:30"),
        pytest.param(SANTIAGO, DUE, utc(2026, 4, 1, 3, 30), 1, id="santiago-00:30"),
        # Easter Island is -05 in summer and -06 in winter.
        pytest.param(
            EASTER,
            date(2026, 1, 15),
            utc(2026, 1, 16, 4, 30),
            0,
            id="easter-summer-23:30",
        ),
        pytest.param(
            EASTER,
            date(2026, 1, 15),
            utc(2026, 1, 16, 5, 30),
            1,
            id="easter-summer-00:30",
        ),
        pytest.param(
            EASTER,
            date(2026, 7, 15),
            utc(2026, 7, 16, 5, 30),
            0,
            id="easter-winter-23:30",
        ),
        pytest.param(
            EASTER,
            date(2026, 7, 15),
            utc(2026, 7, 16, 6, 30),
            1,
            id="easter-winter-00:30",
        ),
        # Magallanes stays on -03 all year, while Santiago is on -04 in July.
        pytest.param(
            PUNTA_ARENAS,
            date(2026, 1, 15),
            utc(2026, 1, 16, 2, 30),
            0,
            id="punta-arenas-summer-23:30",
        ),
        pytest.param(
            PUNTA_ARENAS,
            date(2026, 1, 15),
            utc(2026, 1, 16, 3, 30),
            1,
            id="punta-arenas-summer-00:30",
        ),
        pytest.param(
            PUNTA_ARENAS,
            date(2026, 7, 15),
            utc(2026, 7, 16, 2, 30),
            0,
            id="punta-arenas-winter-23:30",
        ),
        pytest.param(
            PUNTA_ARENAS,
            date(2026, 7, 15),
            utc(2026, 7, 16, 3, 30),
            1,
            id="punta-arenas-winter-00:30",
        ),
        pytest.param(
            SANTIAGO,
            date(2026, 7, 15),
            utc(2026, 7, 16, 3, 30),
            0,
            id="santiago-winter",
        ),
    ],
)
def test_days_past_due_counts_calendar_days_where_the_debtor_is(
    time_zone: str, due_date: date, instant: datetime, expected: int
) -> None:
    assert days_past_due(due_date, instant, time_zone) == expected


def test_days_past_due_is_zero_before_the_due_date() -> None:
    assert days_past_due(DUE, utc(2026, 3, 20, 15, 0), SANTIAGO) == 0


@pytest.mark.parametrize(
    ("day", "clock", "time_zone", "expected"),
    [
        # Santiago jumps from 00:00 -04 to 01:00 -03 on 2026-09-06.
        pytest.param(
            date(2026, 9, 6),
            time(0, 0),
            SANTIAGO,
            utc(2026, 9, 6, 4),
            id="santiago-00:00",
        ),
        pytest.param(
            date(2026, 9, 6),
            time(0, 30),
            SANTIAGO,
            utc(2026, 9, 6, 4),
            id="santiago-00:30",
        ),
        # Easter Island jumps from 22:00 -06 to 23:00 -05 the evening before.
        pytest.param(
            date(2026, 9, 5),
            time(22, 30),
            EASTER,
            utc(2026, 9, 6, 4),
            id="easter-22:30",
        ),
    ],
)
def test_a_wall_time_in_the_spring_forward_gap_moves_to_the_first_existing_time(
    day: date, clock: time, time_zone: str, expected: datetime
) -> None:
    assert local_instant(day, clock, time_zone) == expected


def test_other_times_of_the_spring_forward_day_keep_their_wall_clock() -> None:
    assert local_instant(date(2026, 9, 6), time(9, 0), SANTIAGO) == utc(2026, 9, 6, 12)


def test_a_wall_time_repeated_at_fall_back_takes_its_first_occurrence() -> None:
    # 23:30 happens twice on 2026-04-04 in Santiago: at -03, then again at -04.
    assert local_instant(date(2026, 4, 4), time(23, 30), SANTIAGO) == utc(
        2026, 4, 5, 2, 30
    )


def test_a_policy_step_at_midnight_on_the_dst_start_day_is_planned_at_one() -> None:
    plan = santiago_plan(step("R+1", 1), due_date=date(2026, 9, 5), send_time="00:30")

    assert plan[0].local_date == date(2026, 9, 6)
    assert format_local(plan[0].at, SANTIAGO) == "2026-09-06 01:00 America/Santiago"


def test_steps_count_from_their_anchor_issue_or_due() -> None:
    plan = santiago_plan(step("I+5", 5, anchor="issue"), step("R+5", 5))

    assert [(p.step_id, p.local_date) for p in plan] == [
        ("I+5", date(2026, 3, 6)),
        ("R+5", date(2026, 4, 5)),
    ]


def test_repeats_are_numbered_from_the_second_occurrence() -> None:
    plan = santiago_plan(step("R+8", 8, repeat_every_days=7, repeat_count=3))

    assert [(p.step_id, p.local_date) for p in plan] == [
        ("R+8", date(2026, 4, 8)),
        ("R+8#2", date(2026, 4, 15)),
        ("R+8#3", date(2026, 4, 22)),
    ]


def test_a_step_send_time_overrides_the_policy_send_time() -> None:
    plan = santiago_plan(step("R+1", 1, send_time="15:30"))

    assert format_local(plan[0].at, SANTIAGO) == "2026-04-01 15:30 America/Santiago"


def test_the_plan_is_ordered_by_instant_whatever_the_order_of_the_steps() -> None:
    plan = santiago_plan(step("R+7", 7), step("R-3", -3), step("R+1", 1))

    assert [p.step_id for p in plan] == ["R-3", "R+1", "R+7"]
    assert [p.at for p in plan] == sorted(p.at for p in plan)


def test_a_step_keeps_its_channel_template_and_fallbacks() -> None:
    plan = santiago_plan(step("R+1", 1, channel="sms", fallback_channels=["whatsapp"]))

    assert (plan[0].channel, plan[0].template, plan[0].fallback_channels) == (
        "sms",
        "overdue-first",
        ("whatsapp",),
    )


DUNNING = (step("R-3", -3), step("R+1", 1), step("R+8", 8))


def test_of_several_due_steps_only_the_latest_is_sent() -> None:
    plan = santiago_plan(*DUNNING)
    now = by_id(plan, "R+8").at + timedelta(hours=1)

    chosen, skipped = next_due_step(
        plan, set(), now, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    )

    assert chosen == by_id(plan, "R+8")
    assert [(s.step.step_id, s.reason) for s in skipped] == [
        ("R-3", "not sent: R+8, a later step, was due too"),
        ("R+1", "not sent: R+8, a later step, was due too"),
    ]


def test_a_step_missed_by_more_than_the_catch_up_is_skipped() -> None:
    plan = santiago_plan(*DUNNING)
    now = by_id(plan, "R+1").at + CATCH_UP + timedelta(minutes=1)

    chosen, skipped = next_due_step(
        plan, {"R-3"}, now, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    )

    assert chosen is None
    assert [(s.step.step_id, s.reason) for s in skipped] == [
        ("R+1", "missed by more than 3 days")
    ]


def test_a_step_found_due_within_the_catch_up_is_still_sent() -> None:
    plan = santiago_plan(*DUNNING)
    now = by_id(plan, "R+1").at + CATCH_UP

    chosen, skipped = next_due_step(
        plan, {"R-3"}, now, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    )

    assert chosen == by_id(plan, "R+1")
    assert skipped == []


def test_a_before_due_step_is_skipped_once_the_due_date_has_passed() -> None:
    plan = santiago_plan(step("R-1", -1), step("R+8", 8))
    # 2026-04-01 08:00 in Santiago: the day after the due date, within the catch-up.
    now = utc(2026, 4, 1, 11, 0)

    chosen, skipped = next_due_step(
        plan, set(), now, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    )

    assert chosen is None
    assert [(s.step.step_id, s.reason) for s in skipped] == [
        ("R-1", "a before-due step after the due date passed")
    ]


def test_a_before_due_step_found_on_the_due_date_is_still_sent() -> None:
    plan = santiago_plan(step("R-1", -1), step("R+8", 8))
    # 2026-03-31 23:00 in Santiago: still the due date.
    now = utc(2026, 4, 1, 2, 0)

    chosen, _ = next_due_step(
        plan, set(), now, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    )

    assert chosen == by_id(plan, "R-1")


def test_nothing_is_due_before_the_first_step_or_once_every_due_step_is_done() -> None:
    plan = santiago_plan(*DUNNING)
    before = by_id(plan, "R-3").at - timedelta(seconds=1)
    after_r1 = by_id(plan, "R+1").at + timedelta(hours=1)

    assert next_due_step(
        plan, set(), before, due_date=DUE, time_zone=SANTIAGO, catch_up=CATCH_UP
    ) == (None, [])
    assert next_due_step(
        plan,
        {"R-3", "R+1"},
        after_r1,
        due_date=DUE,
        time_zone=SANTIAGO,
        catch_up=CATCH_UP,
    ) == (None, [])


def test_the_upcoming_step_is_the_first_one_ahead_that_is_not_done() -> None:
    plan = santiago_plan(*DUNNING)
    now = by_id(plan, "R-3").at + timedelta(hours=1)

    assert upcoming_step(plan, set(), now) == by_id(plan, "R+1")
    assert upcoming_step(plan, {"R+1"}, now) == by_id(plan, "R+8")
    assert upcoming_step(plan, set(), by_id(plan, "R+8").at) is None


def spread_policy(minutes: int) -> Policy:
    """A two-step Santiago policy whose sends spread over ``minutes``."""
    return Policy.model_validate(
        {
            "name": "planning-test",
            "version": 1,
            "description": "spread send times",
            "time_zone": SANTIAGO,
            "send_spread_minutes": minutes,
            "steps": [step("R-1", -1), step("R+1", 1)],
        }
    )


def spread_plan(minutes: int, key: str) -> tuple[PlannedStep, ...]:
    """The plan of an invoice due on DUE under a policy spread over ``minutes``."""
    return plan_case(
        spread_policy(minutes),
        issue_date=ISSUED,
        due_date=DUE,
        time_zone=SANTIAGO,
        spread_key=key,
    )


def test_the_same_invoice_always_gets_the_same_minute_of_the_spread() -> None:
    first = spread_plan(120, "acme/F-1001")

    assert spread_plan(120, "acme/F-1001") == first
    # The offset is the same for every step of a case, and keeps its calendar dates.
    offsets = {p.at - local_instant(p.local_date, time(9, 0), SANTIAGO) for p in first}
    assert len(offsets) == 1
    assert [p.local_date for p in first] == [date(2026, 3, 30), date(2026, 4, 1)]


def test_the_spread_minute_is_the_same_in_every_process() -> None:
    # Pinned: a replay on another worker, or after an upgrade, must place the same timer.
    assert spread_offset("acme/F-1001", 120) == timedelta(minutes=109)
    assert spread_offset("acme/F-1001", 240) == timedelta(minutes=229)


def test_invoices_spread_over_whole_minutes_within_the_window() -> None:
    nine = local_instant(date(2026, 3, 30), time(9, 0), SANTIAGO)

    offsets = {spread_plan(30, f"acme/F-{n}")[0].at - nine for n in range(300)}

    assert offsets == {timedelta(minutes=m) for m in range(30)}


def test_no_spread_or_no_key_plans_as_before() -> None:
    unspread = santiago_plan(step("R-1", -1), step("R+1", 1))

    assert spread_plan(0, "acme/F-1001") == unspread
    assert spread_plan(120, "") == unspread
    assert [p.at for p in unspread] == [utc(2026, 3, 30, 12, 0), utc(2026, 4, 1, 12, 0)]


def test_a_spread_beyond_four_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="send_spread_minutes"):
        spread_policy(241)


# -- a moved due date ---------------------------------------------------------------------

BEFORE_DUE = (step("R-7", -7), step("R-1", -1), step("R+1", 1))


def keyed_plan(due_date: date) -> tuple[PlannedStep, ...]:
    """The plan for another due date, its before-due reminders keyed by that date."""
    return tuple(
        keyed_to_due_date(p, due_date) if p.announces_due_date else p
        for p in santiago_plan(*BEFORE_DUE, due_date=due_date)
    )


def test_only_reminders_counted_back_from_the_due_date_announce_it() -> None:
    plan = santiago_plan(
        step("R-7", -7),
        step("I+3", 3, anchor="issue"),
        step("R0", 0),
        {"id": "CALL-3", "offset_days": -3, "task": {"kind": "review_case"}},
    )

    announcing = {p.step_id for p in plan if p.announces_due_date}

    assert announcing == {"R-7"}


def test_a_key_names_the_due_date_and_still_tells_its_occurrence() -> None:
    keyed = keyed_to_due_date(by_id(santiago_plan(step("R-1", -1)), "R-1"), DUE)

    assert keyed.step_id == "R-1@2026-03-31"
    assert occurrence_of(keyed.step_id) == "R-1"
    assert occurrence_of("R+8#2") == "R+8#2"


def test_moved_later_the_reminders_still_ahead_are_owed_again() -> None:
    old = santiago_plan(*BEFORE_DUE)
    new = keyed_plan(DUE + timedelta(days=7))
    # 2026-03-30 15:00 in Santiago: went out for the 31st.
    now = utc(2026, 3, 30, 18, 0)

    replan = replan_after_due_date_move(old, new, {"R-7", "R-1"}, now, moved_later=True)

    assert [s.step_id for s in replan.owed_again] == [
        "R-7@2026-04-07",
        "R-1@2026-04-07",
    ]
    assert replan.still_done == frozenset()


def test_moved_later_a_reminder_whose_new_time_passed_stays_done() -> None:
    old = santiago_plan(*BEFORE_DUE)
    new = keyed_plan(DUE + timedelta(days=3))
    now = utc(2026, 3, 30, 18, 0)

    replan = replan_after_due_date_move(old, new, {"R-7", "R-1"}, now, moved_later=True)

    assert [s.step_id for s in replan.owed_again] == ["R-1@2026-04-03"]
    assert replan.still_done == {"R-7@2026-04-03"}


def test_moved_earlier_every_reminder_done_stays_done() -> None:
    old = keyed_plan(DUE + timedelta(days=7))
    new = santiago_plan(*BEFORE_DUE)
    now = utc(2026, 3, 28, 18, 0)

    replan = replan_after_due_date_move(
        old, new, {"R-7@2026-04-07"}, now, moved_later=False
    )

    assert replan.owed_again == ()
    assert replan.still_done == {"R-7"}


def test_a_reminder_not_yet_done_is_simply_planned_for_the_new_date() -> None:
    old = santiago_plan(*BEFORE_DUE)
    new = keyed_plan(DUE + timedelta(days=7))
    now = utc(2026, 3, 20, 18, 0)

    replan = replan_after_due_date_move(old, new, set(), now, moved_later=True)

    assert replan == replan_after_due_date_move(old, new, set(), now, moved_later=False)
    assert replan.owed_again == () and replan.still_done == frozenset()
