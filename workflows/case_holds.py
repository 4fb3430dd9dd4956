"""What can hold a case's reminders back (pause, dispute, promise, contact repair) and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receivables.planning import format_local


@dataclass
class Pause:
    """A supervisor's pause; ``until`` None means until someone resumes it."""

    since: datetime
    until: datetime | None
    actor: str
    reason: str


@dataclass
class OpenDispute:
    """A contested amount that silences reminders for it (or for the whole invoice)."""

    amount_minor: int
    category: str
    since: datetime
    task_step_id: str


@dataclass
class ActivePromise:
    """A payment promise: reminders wait until its deadline; paid since then counts towards it."""

    amount_minor: int
    deadline: datetime
    paid_before: int  # what had been paid when the promise was made
    since: datetime
    sequence: int = 0  # 1 for the case's first promise: its key in the store


@dataclass
class TaskInFlight:
    """A human task the case waits on, with its SLA and whether it was escalated already."""

    task_id: int
    kind: str
    due_at: datetime
    step_id: str
    escalated: bool = False


def silence_reason(
    *,
    pause: Pause | None,
    disputes: dict[str, OpenDispute],
    whole_invoice_disputes: bool,
    promise: ActivePromise | None,
    contact_under_repair: bool,
    time_zone: str,
) -> str | None:
    """Why reminders are held back now, or None when they may go out.

    Instants read in the debtor's time, as everything a person reads of a case does.
    """
    if pause is not None:
        until = (
            f" until {format_local(pause.until, time_zone)}"
            if pause.until
            else " until resumed"
        )
        return f"paused by {pause.actor}{until}: {pause.reason}"
    if disputes and whole_invoice_disputes:
        categories = ", ".join(sorted({d.category for d in disputes.values()}))
        return f"in dispute ({categories}): the whole invoice waits for its resolution"
    if promise is not None:
        deadline = format_local(promise.deadline, time_zone)
        return f"payment promised; reminders wait until {deadline}"
    if contact_under_repair:
        return "contact data being fixed: nothing goes to that contact meanwhile"
    return None
