"""Money movements committed to the store before any case hears of them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from receivables.cases import (
    CaseCommandRefused,
    CasesNotOpened,
    StoredMoveResult,
    case_handle,
    open_cases_without_one,
)
from receivables.demo import load_sample_portfolio
from receivables.policy import load_policy_book
from receivables.schema import migrate
from receivables.settings import PROJECT_ROOT, Settings, TemporalSettings
from receivables.store import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    find_invoice,
    make_engine,
    session_scope,
)
from tests.case_helpers import FOLIO, MOVED_AT, move, open_invoice


def stored_invoice(engine: Engine) -> Invoice:
    """The committed invoice row."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, "test", FOLIO)
        assert invoice is not None
        return invoice


def payments(engine: Engine) -> list[tuple[str, str, int]]:
    """(reference, kind, amount) of every movement stored for the invoice."""
    with session_scope(engine) as session:
        rows = session.exec(select(Payment).where(Payment.invoice_number == FOLIO))
        return sorted((row.reference, row.kind, row.amount_minor) for row in rows)


def test_a_partial_then_a_full_payment_settle_the_invoice(engine: Engine) -> None:
    open_invoice(engine)

    partial = move(engine, "TRX-1", 300_000)
    rest = move(engine, "TRX-2", 600_000)

    assert partial == StoredMoveResult(True, 600_000, InvoiceStatus.OPEN)
    assert rest == StoredMoveResult(True, 0, InvoiceStatus.PAID)
    invoice = stored_invoice(engine)
    assert (invoice.balance_minor, invoice.status) == (0, InvoiceStatus.PAID)
    assert invoice.updated_at == MOVED_AT
    assert payments(engine) == [
        ("TRX-1", "payment", 300_000),
        ("TRX-2", "payment", 600_000),
    ]


def test_a_credit_note_down_to_zero_closes_the_invoice_by_credit(
    engine: Engine,
) -> None:
    open_invoice(engine)
    move(engine, "TRX-1", 400_000)

    result = move(engine, "NC-77", 500_000, kind=PaymentKind.CREDIT_NOTE)

    assert result == StoredMoveResult(True, 0, InvoiceStatus.CLOSED_BY_CREDIT)
    assert stored_invoice(engine).status == InvoiceStatus.CLOSED_BY_CREDIT


def test_a_reference_seen_before_changes_nothing(engine: Engine) -> None:
    open_invoice(engine)
    move(engine, "TRX-1", 300_000)

    again = move(engine, "TRX-1", 300_000)

    assert again == StoredMoveResult(False, 600_000, InvoiceStatus.OPEN)
    assert stored_invoice(engine).balance_minor == 600_000
    assert payments(engine) == [("TRX-1", "payment", 300_000)]


def test_the_payment_that_settled_the_invoice_told_again_is_a_repeat_not_a_refusal(
    engine: Engine,
) -> None:
    # A bank file read twice, or a lost signal resent: the case must hear it once more.
    open_invoice(engine)
    move(engine, "TRX-1", 900_000)

    again = move(engine, "TRX-1", 900_000)

    assert again == StoredMoveResult(False, 0, InvoiceStatus.PAID)
    assert payments(engine) == [("TRX-1", "payment", 900_000)]


def test_a_new_payment_on_a_paid_invoice_is_refused_and_nothing_stored(
    engine: Engine,
) -> None:
    open_invoice(engine)
    move(engine, "TRX-1", 900_000)

    with pytest.raises(CaseCommandRefused, match="it is paid"):
        move(engine, "TRX-2", 10_000)
    assert payments(engine) == [("TRX-1", "payment", 900_000)]
    assert stored_invoice(engine).balance_minor == 0


def test_a_movement_in_another_currency_is_refused_and_nothing_stored(
    engine: Engine,
) -> None:
    open_invoice(engine)

    with pytest.raises(ValueError, match=f"invoice {FOLIO} is in CLP, not USD"):
        move(engine, "TRX-1", 1_000, currency="USD")

    assert stored_invoice(engine).balance_minor == 900_000
    assert payments(engine) == []


def test_a_movement_for_an_unknown_invoice_names_the_folio(engine: Engine) -> None:
    with pytest.raises(LookupError, match="no invoice '000999' for tenant test"):
        move(engine, "TRX-1", 1_000, invoice_number="000999")


def test_amounts_beyond_32_bits_are_stored_exactly(engine: Engine) -> None:
    # Five billion pesos: a large B2B invoice, past the 2^31 a 32-bit column holds.
    open_invoice(engine, amount_minor=5_000_000_000)

    result = move(engine, "TRX-1", 2_500_000_001)

    assert result.balance_minor == 2_499_999_999
    invoice = stored_invoice(engine)
    assert (invoice.amount_minor, invoice.balance_minor) == (
        5_000_000_000,
        2_499_999_999,
    )
    assert payments(engine) == [("TRX-1", "payment", 2_500_000_001)]


def test_a_payment_racing_another_writer_of_the_invoice_loses_neither(
    engine: Engine,
) -> None:
    open_invoice(engine)
    writing = threading.Event()
    test_thread = threading.get_ident()

    def note_first_write(*args: object) -> None:
        # By its first write, the racing movement has read the invoice's balance.
        statement = str(args[2])
        if threading.get_ident() != test_thread and not statement.startswith("SELECT"):
            writing.set()

    event.listen(engine, "before_cursor_execute", note_first_write)
    with ThreadPoolExecutor(max_workers=1) as pool, engine.connect() as other:
        # Another writer (a second payment) has lowered the balance, not yet committed.
        other.execute(
            text(
                "UPDATE invoice SET balance_minor = balance_minor - 100000 "
                "WHERE invoice_number = :folio"
            ),
            {"folio": FOLIO},
        )
        racing = pool.submit(move, engine, "TRX-2", 300_000)
        assert writing.wait(timeout=60), "the racing payment never wrote"
        other.commit()
        result = racing.result()

    assert result.balance_minor == 500_000
    assert stored_invoice(engine).balance_minor == 500_000


# -- opening the cases of a whole portfolio ---------------------------------------------


def sample_tenant(tmp_path: Path, size: int) -> tuple[Settings, Engine, list[str]]:
    """A fresh tenant holding the sample portfolio; its settings, store and open folios."""
    settings = Settings(
        data_dir=tmp_path,
        tenant=f"open-{uuid.uuid4().hex[:6]}",
        temporal=TemporalSettings(task_queue=f"open-{uuid.uuid4().hex[:6]}"),
        policies_dir=PROJECT_ROOT / "policies",
    )
    migrate(settings.resolved_database_url)
    load_sample_portfolio(settings, size=size)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(engine) as session:
        numbers = session.exec(
            select(Invoice.invoice_number).where(
                Invoice.tenant == settings.tenant, Invoice.status == InvoiceStatus.OPEN
            )
        ).all()
    return settings, engine, list(numbers)


async def end_cases(client: Client, tenant: str, numbers: list[str]) -> None:
    """Terminate the cases a test opened, so none lingers on the shared server."""
    for number in numbers:
        with contextlib.suppress(RPCError):
            await case_handle(client, tenant, number).terminate(reason="test over")


async def test_two_operators_opening_at_once_open_each_case_exactly_once(
    local_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings, engine, numbers = sample_tenant(tmp_path, size=40)
    book = load_policy_book(settings.policies_dir)

    async def open_all() -> Counter[str]:
        return await open_cases_without_one(
            local_env.client,
            engine,
            book,
            settings.tenant,
            task_queue=settings.temporal.task_queue,
            concurrent_starts=8,
        )

    try:
        # No worker polls the queue: the cases wait on their first task and are ended below.
        first, second = await asyncio.gather(open_all(), open_all())
        described = [
            await case_handle(local_env.client, settings.tenant, number).describe()
            for number in numbers
        ]
    finally:
        await end_cases(local_env.client, settings.tenant, numbers)

    assert len(numbers) >= 20
    assert first["opened"] + second["opened"] == len(numbers)
    assert first["already open"] + second["already open"] == len(numbers)
    assert set(first) | set(second) <= {"opened", "already open"}
    assert all(d.status == WorkflowExecutionStatus.RUNNING for d in described)


async def test_an_invoice_that_cannot_open_is_named_and_the_others_still_open(
    local_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings, engine, numbers = sample_tenant(tmp_path, size=12)
    broken = numbers[0]
    with session_scope(engine) as session:
        invoice = find_invoice(session, settings.tenant, broken)
        assert invoice is not None
        invoice.policy_name = "withdrawn-policy"
        session.add(invoice)

    try:
        with pytest.raises(CasesNotOpened) as refused:
            await open_cases_without_one(
                local_env.client,
                engine,
                load_policy_book(settings.policies_dir),
                settings.tenant,
                task_queue=settings.temporal.task_queue,
            )
    finally:
        await end_cases(local_env.client, settings.tenant, numbers)

    assert list(refused.value.failures) == [broken]
    assert "withdrawn-policy" in refused.value.failures[broken]
    assert refused.value.outcome == {"opened": len(numbers) - 1}
    assert broken in str(refused.value) and "open-cases again" in str(refused.value)
