"""Payments told to a running or ended case, repeated and re-delivered."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy.engine import Engine
from temporalio.testing import WorkflowEnvironment

from receivables.case import PaymentReceived, Stage
from receivables.cases import CaseCommandRefused, report_payment
from receivables.planning import local_date_of
from tests.case_helpers import (
    add_invoice,
    open_case,
    policy_with_steps,
    running_worker,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

STEP = {
    "id": "R+30",
    "offset_days": 30,
    "channel": "email",
    "template": "overdue-first",
}


async def test_payments_repeated_before_and_after_the_case_ended(
    time_skipping_env: WorkflowEnvironment, engine: Engine
) -> None:
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    today = local_date_of(now, "America/Santiago")
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today + timedelta(days=30),
        amount_minor=900_000,
    )
    folio = invoice.invoice_number
    at = now.astimezone(UTC)
    async with running_worker(client, engine) as (_, queue):
        run = await open_case(
            client, engine, invoice, customer, policy_with_steps(STEP), queue, now
        )
        part = PaymentReceived("TRX-1", 400_000, "CLP", at)
        first = await report_payment(client, engine, "test", folio, part)
        # A re-delivered signal and a re-read bank file: neither counts twice.
        await run.handle.signal(InvoiceWorkflow.record_payment, part)
        again = await report_payment(client, engine, "test", folio, part)
        state = await run.handle.query(InvoiceWorkflow.state)
        assert (first.applied, again.applied) == (True, False)
        assert state.balance_minor == again.balance_minor == 500_000

        rest = PaymentReceived("TRX-2", 500_000, "CLP", at)
        await report_payment(client, engine, "test", folio, rest)
        final = await run.handle.result()
        # The settling payment told again after the case ended: a quiet repeat.
        repeat = await report_payment(client, engine, "test", folio, rest)
        with pytest.raises(CaseCommandRefused, match="it is paid"):
            await report_payment(
                client, engine, "test", folio, PaymentReceived("TRX-3", 1, "CLP", at)
            )

    assert final.stage is Stage.PAID and final.balance_minor == 0
    assert (repeat.applied, repeat.balance_minor) == (False, 0)
