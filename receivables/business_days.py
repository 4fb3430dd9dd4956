"""Business-day arithmetic for task SLAs: weekdays that are not holidays, in local time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from receivables.planning import local_instant

SATURDAY = 5  # date.weekday(): Monday is 0


class CalendarError(ValueError):
    """A holiday calendar the ``holidays`` package cannot provide."""


@lru_cache(maxsize=64)
def public_holidays(
    country: str, subdivision: str | None, year: int
) -> frozenset[date]:
    """The public holidays of one country (and region) in one year, from ``holidays``."""
    try:
        calendar = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError as error:
        # The package says "not available" without naming what to do about it.
        raise CalendarError(
            f"no holiday calendar for country {country!r}, subdivision "
            f"{subdivision!r}: {error}; use an ISO 3166 code the holidays package knows"
        ) from None
    # A frozen copy: the package's calendars fill in lazily and are not safe to share.
    # Limit: public holidays only; a bank holiday (31 December in Chile) or a company
    # closure is passed as ``extra_holidays`` by the caller.
    return frozenset(calendar.keys())


def is_business_day(
    day: date,
    *,
    country: str = "CL",
    subdivision: str | None = None,
    extra_holidays: Iterable[date] = (),
) -> bool:
    """True for a Monday to Friday that is neither a public nor an extra holiday."""
    return _is_open(day, country, subdivision, frozenset(extra_holidays))


def _is_open(
    day: date, country: str, subdivision: str | None, closed: frozenset[date]
) -> bool:
    if day.weekday() >= SATURDAY or day in closed:
        return False
    return day not in public_holidays(country, subdivision, day.year)


def add_business_days(
    start: datetime,
    days: int,
    *,
    time_zone: str,
    country: str = "CL",
    subdivision: str | None = None,
    extra_holidays: Iterable[date] = (),
) -> datetime:
    """The end of an SLA of ``days`` business days from ``start``, as a UTC instant."""
    # The day ``start`` falls on in ``time_zone`` is day zero. The end keeps the local
    # wall time, so across a daylight-saving change the elapsed time is an hour longer
    # or shorter: "due Monday 10:00" means 10:00 on the debtor's and the team's clock.
    if start.utcoffset() is None:
        raise ValueError(
            f"start {start.isoformat()} has no time zone; pass an aware instant"
        )
    if days < 0:
        raise ValueError(f"days is {days}; an SLA counts zero or more business days")
    if days == 0:
        return start.astimezone(UTC)
    closed = frozenset(extra_holidays)
    local = start.astimezone(ZoneInfo(time_zone))
    day = local.date()
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if _is_open(day, country, subdivision, closed):
            remaining -= 1
    # The wall time may not exist on the end day (a spring-forward gap); local_instant
    # then gives the first instant that does.
    return local_instant(day, local.time(), time_zone)
