"""Pure planning of a case: which steps happen when, in the debtor's local time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from receivables.policy import Anchor, Policy, PolicyStep, TaskSpec

# How far ahead of this machine's clock a fact's instant may be: the clock of whoever read it
# (the bank's, an operator's) may run a little fast. Beyond it, it has not happened yet.
CLOCK_SKEW_ALLOWED = timedelta(minutes=10)


@dataclass(frozen=True)
class PlannedStep:
    """One occurrence of a policy step, placed on a calendar date and a UTC instant."""

    step_id: str  # "R+8", or "R+8#2" for the second occurrence of a repeating step
    channel: str  # empty for a task step
    template: str  # empty for a task step
    fallback_channels: tuple[str, ...]
    local_date: date
    at: datetime  # aware, UTC
    task: TaskSpec | None = None
    # A reminder counted back from the due date ("vence el 24"): its text names that date.
    announces_due_date: bool = False

    def shifted(self, days: int, time_zone: str) -> PlannedStep:
        """The same step some calendar days later, at the same local wall time."""
        if not days:
            return self
        clock = self.at.astimezone(ZoneInfo(time_zone)).time()
        day = self.local_date + timedelta(days=days)
        return replace(self, local_date=day, at=local_instant(day, clock, time_zone))


def local_instant(day: date, clock: time, time_zone: str) -> datetime:
    """Return the UTC instant of a local wall-clock time, with the offset valid that day."""
    zone = ZoneInfo(time_zone)
    local = datetime.combine(day, clock, tzinfo=zone)
    instant = local.astimezone(UTC)
    wall = local.replace(tzinfo=None)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # A wall time inside a spring-forward gap does not exist; the first one that does is
    # the moment the clocks jump. Read with the offset after the jump, the wall time falls
    # before that moment, so walk forward to it; clocks jump on whole minutes.
    instant = local.replace(fold=1, second=0, microsecond=0).astimezone(UTC)
    while instant.astimezone(zone).replace(tzinfo=None) < wall:
        instant += timedelta(minutes=1)
    return instant


def calendar_date(text: str, what: str) -> date:
    """An operator's calendar date, ``YYYY-MM-DD``; ``what`` names it in the error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{what} {text!r} is not a calendar date; write it as YYYY-MM-DD, "
            "e.g. 2026-12-31"
        ) from None


def local_date_of(instant: datetime, time_zone: str) -> date:
    """Return the calendar date an instant falls on where the debtor is."""
    return instant.astimezone(ZoneInfo(time_zone)).date()


def format_local(instant: datetime, time_zone: str) -> str:
    """Show an instant as the debtor's wall clock: ``2026-04-09 09:00 America/Santiago``."""
    return f"{instant.astimezone(ZoneInfo(time_zone)):%Y-%m-%d %H:%M} {time_zone}"


def within_usual_contact_hours(instant: datetime, time_zone: str) -> bool:
    """Monday to Saturday, 08:00 to 20:00 where the debtor is.

    Limit: a floor for late steps only; the jurisdiction's contact rules (windows, holidays,
    caps) decide every contact once they are wired into the send activity.
    """
    local = instant.astimezone(ZoneInfo(time_zone))
    return local.weekday() < 6 and time(8, 0) <= local.time() < time(20, 0)


def days_past_due(due_date: date, instant: datetime, time_zone: str) -> int:
    """Whole calendar days past the due date at an instant, in the debtor's time zone."""
    return max(0, (local_date_of(instant, time_zone) - due_date).days)


def _occurrences(step: PolicyStep) -> list[tuple[str, int]]:
    every = step.repeat_every_days or 0
    return [
        (step.id if n == 0 else f"{step.id}#{n + 1}", step.offset_days + n * every)
        for n in range(step.repeat_count)
    ]


def spread_offset(spread_key: str, window_minutes: int) -> timedelta:
    """The whole minutes, below the window, that a case's sends come after the send time."""
    if window_minutes <= 0 or not spread_key:
        return timedelta(0)
    # A workflow re-plans from its input on every replay and on every new fact, so the
    # offset must come out the same in every process and every year: a salted hash()
    # would move a timer on replay and fail the workflow as nondeterministic.
    digest = hashlib.sha256(spread_key.encode("utf-8")).digest()
    return timedelta(minutes=int.from_bytes(digest[:8], "big") % window_minutes)


def plan_case(
    policy: Policy,
    *,
    issue_date: date,
    due_date: date,
    time_zone: str,
    spread_key: str = "",
) -> tuple[PlannedStep, ...]:
    """Place every step of a policy for one invoice, earliest first."""
    # spread_key names the invoice (its number or workflow id); without one, a policy's
    # spread is not applied. The spread moves the instant only: the step keeps its
    # calendar date, which says whether its wording (before or after the due date) is
    # true, and the contact rules still decide whether the later instant may be used.
    spread = spread_offset(spread_key, policy.send_spread_minutes)
    planned: list[PlannedStep] = []
    for step in policy.steps:
        anchor = due_date if step.anchor is Anchor.DUE else issue_date
        clock = step.send_time or policy.send_time
        for step_id, offset in _occurrences(step):
            day = anchor + timedelta(days=offset)
            planned.append(
                PlannedStep(
                    step_id=step_id,
                    channel=step.channel.value if step.channel else "",
                    template=step.template or "",
                    fallback_channels=tuple(c.value for c in step.fallback_channels),
                    local_date=day,
                    at=local_instant(day, clock, time_zone) + spread,
                    task=step.task,
                    announces_due_date=(
                        step.anchor is Anchor.DUE
                        and offset < 0
                        and step.channel is not None
                    ),
                )
            )
    return tuple(sorted(planned, key=lambda p: (p.at, p.step_id)))


@dataclass(frozen=True)
class SkippedStep:
    """A due step that will not be sent, and why."""

    step: PlannedStep
    reason: str


def next_due_step(
    plan: tuple[PlannedStep, ...],
    done: set[str],
    now: datetime,
    *,
    due_date: date,
    time_zone: str,
    catch_up: timedelta,
    opened_at: datetime | None = None,
) -> tuple[PlannedStep | None, list[SkippedStep]]:
    """Pick the step to act on now, and the due steps that will not be sent.

    When several steps are due at once (a case opened late, a worker that was down), only the
    latest is sent: a debtor gets one reminder reflecting today, not a burst of stale ones. A
    step missed by more than ``catch_up``, or a before-due step once the due date has passed,
    is skipped: its wording would no longer be true. A case opened after some of its steps
    were due still gets the latest of them once: ``catch_up`` is for steps a running case
    missed.
    """
    due_now = [p for p in plan if p.step_id not in done and p.at <= now]
    if not due_now:
        return None, []
    latest = due_now[-1]
    skipped = [
        SkippedStep(p, f"not sent: {latest.step_id}, a later step, was due too")
        for p in due_now[:-1]
    ]
    missed_before_opening = opened_at is not None and latest.at < opened_at
    if now - latest.at > catch_up and not missed_before_opening:
        skipped.append(SkippedStep(latest, f"missed by more than {catch_up.days} days"))
        return None, skipped
    if latest.local_date < due_date < local_date_of(now, time_zone):
        skipped.append(
            SkippedStep(latest, "a before-due step after the due date passed")
        )
        return None, skipped
    return latest, skipped


def announces_a_past_due_date(
    step: PlannedStep, due_date: date, now: datetime, time_zone: str
) -> bool:
    """True for a reminder that names the due date ("vence el 31") once that date passed.

    A pause, dispute or promise shifts the plan, and a contact rule's deferral moves a step,
    either can carry such a reminder past the date it announces; sent then, it would ask the
    debtor to pay by a day already gone.
    """
    return step.announces_due_date and due_date < local_date_of(now, time_zone)


def upcoming_step(
    plan: tuple[PlannedStep, ...], done: set[str], now: datetime
) -> PlannedStep | None:
    """The first step still ahead of now, if any."""
    return next((p for p in plan if p.step_id not in done and p.at > now), None)


def keyed_to_due_date(step: PlannedStep, due_date: date) -> PlannedStep:
    """The step under a key naming the due date it announces: ``R-1@2026-05-31``.

    The ledger and the channels key a contact by its step, so the reminder of a moved due
    date needs a key of its own to be sent at all, and the same key on every retry to be
    sent once. Policy step ids cannot hold an ``@``, so no policy step takes such a key.
    """
    return replace(step, step_id=f"{step.step_id}@{due_date.isoformat()}")


def occurrence_of(step_id: str) -> str:
    """The policy occurrence a step key stands for: ``R-1`` for ``R-1@2026-05-31``."""
    return step_id.partition("@")[0]


@dataclass(frozen=True)
class DueDateReplan:
    """What a due date move does to the before-due reminders already done."""

    still_done: frozenset[str]  # keys of the new plan that count as done
    owed_again: tuple[PlannedStep, ...]  # reminders to send again, for the new date


def replan_after_due_date_move(
    old_plan: tuple[PlannedStep, ...],
    new_plan: tuple[PlannedStep, ...],
    done: set[str],
    now: datetime,
    *,
    moved_later: bool,
) -> DueDateReplan:
    """Decide which reminders announcing the old due date are sent again for the new one.

    A reminder already done for the old date is owed again only when the date moved later
    and its new time is still ahead: the debtor was told a date that is no longer true.
    Moved earlier, or its new time passed, it stays done under its new key, so no step
    repeats. A key already done (the date moved back to one announced before) stays done.
    """
    old_keys = {occurrence_of(p.step_id): p.step_id for p in old_plan}
    still_done: set[str] = set()
    owed_again: list[PlannedStep] = []
    for step in new_plan:
        old_key = old_keys.get(occurrence_of(step.step_id), step.step_id)
        if old_key == step.step_id or old_key not in done or step.step_id in done:
            continue
        if moved_later and step.announces_due_date and step.at > now:
            owed_again.append(step)
        else:
            still_done.add(step.step_id)
    return DueDateReplan(frozenset(still_done), tuple(owed_again))
