"""Structured logs: one JSON object per line, carrying ids and never a debtor's personal data."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from temporalio.testing import WorkflowEnvironment

from receivables.case import CaseClosed, case_workflow_id
from receivables.logs import JsonLogFormatter, log_handler
from receivables.settings import load_settings
from receivables.store import make_engine
from tests.case_helpers import add_sunday_reminder, open_case, running_worker
from workflows.invoice import InvoiceWorkflow


@contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """Every INFO record of the process, written as JSON lines into the yielded buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_deferred_then_sent_reminder_logs_ids_and_no_personal_data(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str
) -> None:
    env, engine = time_skipping_env, make_engine(sqlite_url)
    reminder = add_sunday_reminder(engine, await env.get_current_time())
    invoice, customer = reminder.invoice, reminder.customer

    with json_logs() as buffer:
        async with running_worker(env.client, engine) as (_, queue):
            run = await open_case(
                env.client,
                engine,
                invoice,
                customer,
                reminder.policy,
                queue,
                await env.get_current_time(),
            )
            await env.sleep(reminder.monday_noon - await env.get_current_time())
            await run.handle.signal(
                InvoiceWorkflow.cancel, CaseClosed("the test is over", "test")
            )
            # The case ends while its worker runs, so nothing is left on the shared server.
            await run.handle.result()

    lines = buffer.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    about_the_case = [e for e in entries if e.get("invoice") == invoice.invoice_number]
    outcomes = {e["outcome"]: e for e in about_the_case if "outcome" in e}
    assert {"defer", "sent"} <= set(outcomes)
    sent = outcomes["sent"]
    assert sent["tenant"] == "test" and sent["step"] == "R+1"
    assert sent["channel"] == "email" and sent["level"] == "INFO"
    assert sent["workflow_id"] == case_workflow_id("test", invoice.invoice_number)
    assert sent["time"] and sent["logger"] and sent["message"]
    assert "CL-C" in outcomes["defer"]["reason"]
    personal = [customer.name, customer.email, customer.phone]
    assert all(value for value in personal)
    leaked = [line for line in lines if any(str(v) in line for v in personal)]
    assert leaked == []


def test_fields_that_would_carry_personal_data_are_dropped() -> None:
    record = logging.LogRecord(
        "receivables.test", logging.WARNING, __file__, 1, "sent %s", ("R1",), None
    )
    record.__dict__.update(
        invoice="F-1",
        email="pagos@example.invalid",
        recipient="+56911112222",
        temporal_activity={"workflow_id": "invoice/t/F-1", "attempt": 2},
    )

    entry = json.loads(JsonLogFormatter().format(record))

    assert entry["message"] == "sent R1" and entry["level"] == "WARNING"
    assert entry["invoice"] == "F-1" and entry["workflow_id"] == "invoice/t/F-1"
    assert entry["attempt"] == 2
    assert "email" not in entry and "recipient" not in entry
    assert "temporal_activity" not in entry


def test_an_error_is_logged_with_its_traceback_in_one_line() -> None:
    try:
        raise LookupError("no invoice F-9")
    except LookupError:
        record = logging.LogRecord(
            "receivables.test",
            logging.ERROR,
            __file__,
            1,
            "failed",
            None,
            sys.exc_info(),
        )

    line = JsonLogFormatter().format(record)

    assert "\n" not in line
    assert "LookupError: no invoice F-9" in json.loads(line)["error"]


def test_the_log_format_comes_from_the_environment_and_is_checked() -> None:
    assert load_settings({"DUNNING_LOG_FORMAT": "JSON"}).log_format == "json"
    assert load_settings({}).log_format == "text"
    assert isinstance(log_handler("json").formatter, JsonLogFormatter)
    with pytest.raises(ValueError, match="DUNNING_LOG_FORMAT"):
        log_handler("xml")
