"""SLA ends in business days: weekends, Chilean holidays, regions, DST and the local calendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receivables.business_days import (
    CalendarError,
    add_business_days,
    is_business_day,
    public_holidays,
)

SANTIAGO = "America/Santiago"


def santiago(day: date, clock: time = time(10, 0)) -> datetime:
    """An aware instant from a Santiago wall-clock time."""
    return datetime.combine(day, clock, tzinfo=ZoneInfo(SANTIAGO))


def sla_end(
    start: datetime,
    days: int,
    *,
    country: str = "CL",
    subdivision: str | None = None,
    extra_holidays: Iterable[date] = (),
) -> datetime:
    """The SLA end on Santiago's calendar."""
    return add_business_days(
        start,
        days,
        time_zone=SANTIAGO,
        country=country,
        subdivision=subdivision,
        extra_holidays=extra_holidays,
    )


def test_the_chilean_2026_calendar_has_the_holidays_these_tests_rely_on() -> None:
    chile = public_holidays("CL", None, 2026)

    assert {
        date(2026, 4, 3),  # Viernes Santo
        date(2026, 6, 29),  # San Pedro y San Pablo, a Monday
        date(2026, 9, 18),  # Independencia, a Friday
        date(2026, 9, 19),  # Glorias del Ejército
    } <= chile
    assert date(2026, 3, 13) not in chile


def test_two_business_days_from_thursday_end_on_monday_at_the_same_time() -> None:
    thursday = santiago(date(2026, 3, 12))

    end = sla_end(thursday, 2)

    assert end == santiago(date(2026, 3, 16))
    assert end.tzinfo is UTC


def test_a_friday_holiday_and_the_weekend_after_it_are_skipped() -> None:
    # Fiestas Patrias 2026: Friday 18 and Saturday 19 of September.
    assert sla_end(santiago(date(2026, 9, 17)), 2) == santiago(date(2026, 9, 22))


def test_a_monday_holiday_after_the_weekend_is_skipped() -> None:
    assert sla_end(santiago(date(2026, 6, 26)), 1) == santiago(date(2026, 6, 30))


def test_a_regional_holiday_counts_only_in_its_region() -> None:
    # 20 August 2026 is a holiday in Chillán (Ñuble, NB), a Thursday.
    wednesday = santiago(date(2026, 8, 19))

    assert sla_end(wednesday, 1) == santiago(date(2026, 8, 20))
    assert sla_end(wednesday, 1, subdivision="NB") == santiago(date(2026, 8, 21))


def test_extra_holidays_of_the_creditor_are_skipped() -> None:
    closed = [date(2026, 3, 13)]

    assert sla_end(santiago(date(2026, 3, 12)), 1, extra_holidays=closed) == (
        santiago(date(2026, 3, 16))
    )


def test_the_end_keeps_the_wall_time_when_clocks_go_forward() -> None:
    # Santiago moves from -04 to -03 on Sunday 6 September 2026.
    friday = santiago(date(2026, 9, 4))

    end = sla_end(friday, 2)

    assert end.astimezone(ZoneInfo(SANTIAGO)).time() == time(10, 0)
    assert end == datetime(2026, 9, 8, 13, 0, tzinfo=UTC)
    assert end - friday == timedelta(days=4, hours=-1)


def test_the_end_keeps_the_wall_time_when_clocks_go_back_across_easter() -> None:
    # Good Friday 3 April 2026, then Santiago moves from -03 to -04 on Sunday 5 April.
    thursday = santiago(date(2026, 4, 2))

    end = sla_end(thursday, 2)

    assert end == datetime(2026, 4, 7, 14, 0, tzinfo=UTC)
    assert end - thursday == timedelta(days=5, hours=1)


def test_days_are_counted_on_the_local_calendar_not_in_utc() -> None:
    # 22:30 on Thursday in Santiago is already Friday in UTC.
    late_thursday = santiago(date(2026, 3, 12), time(22, 30))

    assert sla_end(late_thursday, 1) == santiago(date(2026, 3, 13), time(22, 30))


def test_a_task_opened_on_saturday_counts_from_monday() -> None:
    assert sla_end(santiago(date(2026, 3, 14)), 1) == santiago(date(2026, 3, 16))


def test_zero_days_end_at_the_start() -> None:
    start = santiago(date(2026, 3, 12))

    assert sla_end(start, 0) == start


@pytest.mark.parametrize(
    ("start", "days", "message"),
    [
        (datetime(2026, 3, 12, 10, 0), 1, "no time zone"),
        (santiago(date(2026, 3, 12)), -1, "zero or more"),
    ],
)
def test_a_naive_start_or_negative_days_are_refused(
    start: datetime, days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sla_end(start, days)


def test_an_unknown_country_is_refused_by_name() -> None:
    with pytest.raises(CalendarError, match="'XX'"):
        sla_end(santiago(date(2026, 3, 12)), 1, country="XX")


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(date(2025, 1, 1), date(2027, 12, 31)),
    clock=st.times(),
    days=st.integers(min_value=1, max_value=30),
)
def test_the_end_is_a_business_day_exactly_days_ahead_at_the_same_wall_time(
    day: date, clock: time, days: int
) -> None:
    start = santiago(day, clock.replace(microsecond=0))
    local_start = start.astimezone(ZoneInfo(SANTIAGO))

    end = sla_end(start, days).astimezone(ZoneInfo(SANTIAGO))

    between = [
        local_start.date() + timedelta(days=n)
        for n in range(1, (end.date() - local_start.date()).days + 1)
    ]
    assert sum(is_business_day(d) for d in between) == days
    assert is_business_day(end.date())
    assert end.time() == local_start.time()
