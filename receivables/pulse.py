"""A one-line pulse of a tenant's portfolio for whoever watches `make run`, when it changes."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from receivables.importer import counted
from receivables.kpis import DEFAULT_TIME_ZONE
from receivables.money import format_amount
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    Invoice,
    InvoiceStatus,
    as_utc,
    session_scope,
    utc_now,
)
from receivables.tasks import OPEN_STATUSES, HumanTask

log = logging.getLogger(__name__)
_NOT_CLOSED = (InvoiceStatus.OPEN, InvoiceStatus.NEEDS_DUE_DATE)

# Reminders go out at send times, tasks change at human speed: a minute reads as live
# without a line per workflow task.
PULSE_SECONDS = 60.0
# What went out first, then what waits, failed or was decided against.
CONTACT_ORDER = (
    ContactStatus.SENT,
    *(status for status in ContactStatus if status is not ContactStatus.SENT),
)


def check_pulse_interval(seconds: float) -> float:
    """The interval between two reads of the portfolio, refused unless a second or more.

    Each read counts the whole tenant in the store: zero or a negative number would read
    it in a loop as fast as the machine goes, starving the worker beside it.
    """
    if not (math.isfinite(seconds) and seconds >= 1):
        raise ValueError(
            f"--pulse-every {seconds:g}: give the seconds between two lines, 1 or more "
            f"(default {PULSE_SECONDS:g})"
        )
    return seconds


@dataclass(frozen=True)
class Pulse:
    """Counts an operator follows: cases open and their balance, contacts, tasks."""

    open_cases: int
    balances: tuple[tuple[str, int], ...]  # (currency, minor units) of the open cases
    closed_cases: (
        int  # paid, closed by credit, written off or cancelled (imported so too)
    )
    contacts: tuple[tuple[str, int], ...]  # (ledger status, entries)
    open_tasks: int
    late_tasks: int  # open past their SLA
    # Attempts a channel took, ever: a bounce later turns its entry from sent to failed,
    # so the entries' statuses cannot say how many went out since the last line.
    sends: int = 0


def read_pulse(engine: Engine, tenant: str, at: datetime) -> Pulse:
    """Read the tenant's counts from the committed store, as of ``at`` for task SLAs."""
    with session_scope(engine) as session:
        by_status = session.exec(
            select(
                Invoice.status,
                Invoice.currency,
                func.count(),
                func.sum(col(Invoice.balance_minor)),
            )
            .where(Invoice.tenant == tenant)
            .group_by(col(Invoice.status), col(Invoice.currency))
        ).all()
        contacts = dict(
            session.exec(
                select(ContactLedgerEntry.status, func.count())
                .where(ContactLedgerEntry.tenant == tenant)
                .group_by(col(ContactLedgerEntry.status))
            ).all()
        )
        sends = session.exec(
            select(func.count())
            .select_from(ContactAttempt)
            .join(
                ContactLedgerEntry,
                col(ContactAttempt.ledger_entry_id) == col(ContactLedgerEntry.id),
            )
            .where(
                ContactLedgerEntry.tenant == tenant,
                ContactAttempt.outcome == ContactStatus.SENT,
            )
        ).one()
        tasks = session.exec(
            select(col(HumanTask.due_at)).where(
                HumanTask.tenant == tenant, col(HumanTask.status).in_(OPEN_STATUSES)
            )
        ).all()
    open_rows = [row for row in by_status if row[0] == InvoiceStatus.OPEN]
    # An invoice waiting for a due date has no case yet: neither open nor closed.
    closed = [row for row in by_status if row[0] not in _NOT_CLOSED]
    return Pulse(
        open_cases=sum(count for _, _, count, _ in open_rows),
        balances=tuple(
            sorted((currency, int(total or 0)) for _, currency, _, total in open_rows)
        ),
        closed_cases=sum(count for _, _, count, _ in closed),
        contacts=tuple(
            (status.value, contacts[status])
            for status in CONTACT_ORDER
            if contacts.get(status)
        ),
        open_tasks=len(tasks),
        late_tasks=sum(1 for due_at in tasks if as_utc(due_at) < at),
        sends=int(sends),
    )


def pulse_line(
    pulse: Pulse,
    previous: Pulse | None,
    at: datetime,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> str | None:
    """The line to print, or None when nothing changed since the previous one.

    The time reads in ``time_zone`` with the zone named, as the report's dates do: the
    machine's own clock may be in another zone than the creditor's.
    """
    if pulse == previous:
        return None
    balance = " + ".join(format_amount(total, cur) for cur, total in pulse.balances)
    cases = f"{counted(pulse.open_cases, 'case')} open" + (
        f" ({balance} due)" if balance else ""
    )
    if pulse.closed_cases:
        cases += f", {pulse.closed_cases} paid or closed"
    new_sends = pulse.sends - (previous.sends if previous else 0)
    contacts = ", ".join(f"{count} {status}" for status, count in pulse.contacts)
    if previous is not None and new_sends > 0:
        contacts += f" ({new_sends} sent since the last line)"
    tasks = f"{pulse.open_tasks} open" + (
        f", {pulse.late_tasks} past their SLA" if pulse.late_tasks else ""
    )
    clock = f"{at.astimezone(ZoneInfo(time_zone)):%H:%M:%S} {time_zone}"
    return f"{clock} · {cases} · contacts: {contacts or 'none yet'} · tasks: {tasks}"


async def report_pulse(
    engine: Engine,
    tenant: str,
    write: Callable[[str], None],
    *,
    every: float = PULSE_SECONDS,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> None:
    """Every ``every`` seconds, write the pulse line if it changed; run until cancelled."""
    previous: Pulse | None = None
    while True:
        await asyncio.sleep(every)
        at = utc_now()
        try:
            pulse = await asyncio.to_thread(read_pulse, engine, tenant, at)
        except Exception:  # the store may be briefly busy; the demo goes on
            log.exception("could not read the portfolio pulse")
            continue
        line = pulse_line(pulse, previous, at, time_zone)
        if line is not None:
            write(line)
            previous = pulse
