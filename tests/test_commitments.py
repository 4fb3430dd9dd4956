"""Promises and disputes in the store: one row per natural key, never reopened once ended."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from sqlalchemy.engine import Engine
from sqlmodel import func, select

from receivables.case import (
    DisputeCategory,
    DisputeRecord,
    DisputeStatus,
    PromiseOutcome,
    PromiseRecord,
)
from receivables.commitments import (
    StoredDispute,
    StoredPromise,
    broken_promise_dates,
    disputes_of,
    promises_of,
    record_dispute,
    record_promise,
)
from receivables.store import as_utc, session_scope

RECORDED = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DEADLINE = datetime(2026, 3, 11, 21, 0, tzinfo=UTC)
PROMISE = PromiseRecord(
    tenant="t",
    invoice_number="0001",
    customer_id="C-1",
    sequence=1,
    amount_minor=250_000,
    currency="CLP",
    promised_date=date(2026, 3, 10),
    deadline=DEADLINE,
    recorded_by="exec-01",
    recorded_at=RECORDED,
    task_id=7,
)
DISPUTE = DisputeRecord(
    tenant="t",
    invoice_number="0001",
    customer_id="C-1",
    dispute_id="T7",
    amount_minor=100_000,
    currency="CLP",
    category=DisputeCategory.ADMINISTRATIVE_DIFFERENCE,
    opened_at=RECORDED,
    opened_by="exec-01",
)


def count(engine: Engine, model: type[StoredPromise] | type[StoredDispute]) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_a_retried_promise_write_leaves_one_row(engine: Engine) -> None:
    record_promise(engine, PROMISE)
    record_promise(engine, PROMISE)
    second = replace(PROMISE, sequence=2, amount_minor=125_000, task_id=None)
    record_promise(engine, second)

    rows = promises_of(engine, "t", "0001")

    assert count(engine, StoredPromise) == 2
    assert [(r.sequence, r.amount_minor, r.outcome) for r in rows] == [
        (1, 250_000, "open"),
        (2, 125_000, "open"),
    ]
    assert (rows[0].task_id, rows[0].recorded_by) == (7, "exec-01")
    assert rows[0].promised_date == date(2026, 3, 10)
    assert as_utc(rows[0].deadline) == DEADLINE


def test_an_ended_promise_is_never_reopened_by_a_late_write(engine: Engine) -> None:
    broken = replace(
        PROMISE, outcome=PromiseOutcome.BROKEN, outcome_at=DEADLINE, paid_minor=50_000
    )
    record_promise(engine, PROMISE)
    record_promise(engine, broken)
    # The first attempt of the opening write, timed out but committed late.
    record_promise(engine, PROMISE)

    [row] = promises_of(engine, "t", "0001")

    assert (row.outcome, row.paid_minor) == ("broken", 50_000)
    assert row.outcome_at is not None and as_utc(row.outcome_at) == DEADLINE


def test_broken_promise_dates_are_by_customer_and_only_broken_ones(
    engine: Engine,
) -> None:
    record_promise(
        engine, replace(PROMISE, outcome=PromiseOutcome.BROKEN, outcome_at=DEADLINE)
    )
    kept = replace(
        PROMISE, sequence=2, outcome=PromiseOutcome.KEPT, outcome_at=RECORDED
    )
    record_promise(engine, kept)
    other = replace(PROMISE, invoice_number="0002", customer_id="C-2")
    record_promise(engine, other)

    with session_scope(engine) as session:
        found = broken_promise_dates(session, "t", ["C-1", "C-2", "C-3"])

    assert {
        customer: [as_utc(at) for at in ats] for customer, ats in found.items()
    } == {"C-1": [DEADLINE]}


def test_a_dispute_keeps_its_owner_and_its_resolution(engine: Engine) -> None:
    record_dispute(engine, DISPUTE)
    owned = replace(DISPUTE, owner_id="exec-02", sla_due_at=DEADLINE)
    record_dispute(engine, owned)
    resolved = replace(
        owned,
        status=DisputeStatus.UPHELD,
        resolved_at=DEADLINE,
        resolved_by="sup-01",
        credit_minor=100_000,
        resolution_note="credit note issued",
    )
    record_dispute(engine, resolved)
    record_dispute(engine, resolved)
    record_dispute(engine, DISPUTE)  # a late retry of the opening write

    [row] = disputes_of(engine, "t", "0001")

    assert count(engine, StoredDispute) == 1
    assert (row.dispute_id, row.category, row.owner_id) == (
        "T7",
        "administrative_difference",
        "exec-02",
    )
    assert (row.status, row.resolved_by, row.credit_minor) == (
        "upheld",
        "sup-01",
        100_000,
    )
    assert row.resolution_note == "credit note issued"
    assert row.sla_due_at is not None and as_utc(row.sla_due_at) == DEADLINE
