"""Record a case's history for tests/histories: `python -m tests.record_history OUT.json`.

Run it on the code whose histories must keep replaying (check that commit out first); the
history compatibility test then replays every recorded file on the current code. The case
meets a pause until a date, a payment promise and the payment that ends it; with
`--scenario due-moved-later`, a due date moved a week later after its pre-due reminder.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from receivables.case import (
    DueDateChanged,
    PauseCommand,
    PaymentPromise,
    PaymentReceived,
)
from receivables.cases import report_payment
from receivables.devserver import start_time_skipping_environment
from receivables.schema import migrate
from receivables.store import make_engine
from tests.case_helpers import (
    CaseRun,
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

STEPS = [
    {"id": "R-3", "offset_days": -3, "channel": "email", "template": "reminder"},
    {"id": "R+1", "offset_days": 1, "channel": "email", "template": "reminder"},
    {"id": "R+8", "offset_days": 8, "channel": "email", "template": "reminder"},
]


async def pause_promise_paid(env: WorkflowEnvironment, run: CaseRun, year: int) -> None:
    """A pause until a date, a payment promise, then the payment."""
    await advance_to(env, santiago(date(year, 3, 27), time(11, 0)))
    pause = PauseCommand("sup-01", "llamar primero", date(year, 3, 31))
    await run.handle.execute_update(InvoiceWorkflow.pause, pause)
    await advance_to(env, santiago(date(year, 4, 3), time(11, 0)))
    promise = PaymentPromise(640_000, date(year, 4, 6), "exec-01")
    await run.handle.execute_update(InvoiceWorkflow.record_promise, promise)
    await pay(env, run, santiago(date(year, 4, 12), time(11, 0)))
    await advance_to(env, santiago(date(year, 4, 13), time(11, 0)))


async def due_moved_later(env: WorkflowEnvironment, run: CaseRun, year: int) -> None:
    """R-3 sent, the due date moved a week later, R+1 sent for the new date, paid."""
    await advance_to(env, santiago(date(year, 3, 30), time(11, 0)))
    move = DueDateChanged(date(year, 4, 8), "orden de compra tardía", "exec-01")
    await run.handle.signal(InvoiceWorkflow.change_due_date, move)
    await pay(env, run, santiago(date(year, 4, 10), time(11, 0)))
    await advance_to(env, santiago(date(year, 4, 11), time(11, 0)))


async def pay(env: WorkflowEnvironment, run: CaseRun, paid_at: datetime) -> None:
    """Skip to an instant and pay the whole invoice then."""
    await advance_to(env, paid_at)
    payment = PaymentReceived("T1", 640_000, "CLP", paid_at)
    number = run.case.invoice_number
    await report_payment(env.client, run.engine, "test", number, payment)


Scenario = Callable[[WorkflowEnvironment, CaseRun, int], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    "pause-promise-paid": pause_promise_paid,
    "due-moved-later": due_moved_later,
}


async def record(out: Path, scenario: Scenario) -> int:
    """Run the case on the time-skipping server; write its history; return its events."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'store.sqlite'}"
        migrate(url)
        engine = make_engine(url)
        env = await start_time_skipping_environment()
        try:
            year = (await env.get_current_time()).year + 1
            invoice, customer = add_invoice(
                engine,
                invoice_number=unique_number(),
                issue_date=date(year, 3, 2),
                due_date=date(year, 4, 1),
                amount_minor=640_000,
            )
            async with running_worker(env.client, engine) as (_, queue):
                now = await env.get_current_time()
                policy = policy_with_steps(*STEPS)
                run = await open_case(
                    env.client, engine, invoice, customer, policy, queue, now
                )
                await scenario(env, run, year)
                history = await run.handle.fetch_history()
        finally:
            await env.shutdown()
    out.write_text(history.to_json())
    return len(history.events)


def main() -> None:
    """Command line entry: the file to write."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scenario", choices=SCENARIOS, default="pause-promise-paid")
    args = parser.parse_args()
    events = asyncio.run(record(args.out, SCENARIOS[args.scenario]))
    print(f"{events} events recorded")


if __name__ == "__main__":
    main()
