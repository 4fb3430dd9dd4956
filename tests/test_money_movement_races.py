"""Money movements racing other writers of the invoice, odd references, odd amounts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.case import CaseClosed, Stage
from receivables.cases import (
    CaseCommandRefused,
    StoredMoveResult,
    close_in_store,
)
from receivables.store import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    find_invoice,
    session_scope,
)
from tests.case_helpers import FOLIO, move, open_invoice

T = TypeVar("T")


def stored(engine: Engine, folio: str = FOLIO) -> Invoice:
    with session_scope(engine) as session:
        invoice = find_invoice(session, "test", folio)
        assert invoice is not None
        return invoice


def references(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return sorted(p.reference for p in session.exec(select(Payment)))


def racing(engine: Engine, uncommitted_sql: str, call: Callable[[], T]) -> Future[T]:
    """Run ``call`` in a thread while another connection holds an uncommitted write.

    The other connection commits once the racing call has issued its first write, i.e.
    after it read the invoice; the future holds the racing call's outcome.
    """
    writing = threading.Event()
    test_thread = threading.get_ident()

    def note_first_write(*args: object) -> None:
        statement = str(args[2])
        if threading.get_ident() != test_thread and not statement.startswith("SELECT"):
            writing.set()

    event.listen(engine, "before_cursor_execute", note_first_write)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, engine.connect() as other:
            other.execute(text(uncommitted_sql), {"folio": FOLIO})
            future = pool.submit(call)
            assert writing.wait(timeout=60), "the racing call never wrote"
            other.commit()
            future.exception(timeout=60)
            return future
    finally:
        event.remove(engine, "before_cursor_execute", note_first_write)


# -- races ------------------------------------------------------------------------------


def test_a_payment_racing_a_cancellation_is_not_recorded_on_the_cancelled_invoice(
    engine: Engine,
) -> None:
    open_invoice(engine)

    future = racing(
        engine,
        "UPDATE invoice SET status = 'cancelled' WHERE invoice_number = :folio",
        lambda: move(engine, "TRX-1", 300_000),
    )

    # The same payment made a moment later is refused ("it is cancelled"); racing, it must
    # be refused too, or at least not lower a cancelled invoice's balance.
    assert isinstance(future.exception(), CaseCommandRefused), future.result()
    assert references(engine) == []
    assert stored(engine).balance_minor == 900_000


def test_a_payment_racing_the_settling_payment_gets_the_same_answer_as_after_it(
    engine: Engine,
) -> None:
    open_invoice(engine)

    future = racing(
        engine,
        "UPDATE invoice SET balance_minor = 0, status = 'paid' WHERE invoice_number = :folio",
        lambda: move(engine, "TRX-2", 10_000),
    )

    with pytest.raises(CaseCommandRefused, match="it is paid"):
        move(engine, "TRX-3", 10_000)
    assert isinstance(future.exception(), CaseCommandRefused), future.result()
    assert stored(engine).balance_minor == 0


def test_a_cancellation_racing_the_settling_payment_does_not_unpay_the_invoice(
    engine: Engine,
) -> None:
    open_invoice(engine)

    future = racing(
        engine,
        "UPDATE invoice SET balance_minor = 0, status = 'paid' WHERE invoice_number = :folio",
        lambda: close_in_store(
            engine, "test", FOLIO, Stage.CANCELLED, CaseClosed("duplicate", "exec-01")
        ),
    )

    # Sequentially, cancelling a paid invoice is refused; racing, it must not win either.
    assert stored(engine).status == InvoiceStatus.PAID, future.exception()


def test_many_concurrent_partial_payments_lose_no_peso(engine: Engine) -> None:
    open_invoice(engine, amount_minor=1_000_000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: move(engine, f"TRX-{n}", 10_000), range(40)))

    assert all(result.applied for result in results)
    assert stored(engine).balance_minor == 600_000
    assert len(references(engine)) == 40


def test_the_same_reference_from_many_threads_is_applied_once(engine: Engine) -> None:
    open_invoice(engine)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: move(engine, "TRX-1", 100_000), range(16)))

    assert sum(result.applied for result in results) == 1
    assert stored(engine).balance_minor == 800_000
    assert references(engine) == ["TRX-1"]


# -- references -------------------------------------------------------------------------


def test_one_reference_in_two_tenants_is_two_movements(engine: Engine) -> None:
    open_invoice(engine)
    open_invoice(engine, tenant="other")

    first = move(engine, "TRX-1", 100_000)
    second = move(engine, "TRX-1", 100_000, tenant="other")

    assert first.applied and second.applied


def test_a_reference_used_on_another_invoice_is_refused_naming_it(
    engine: Engine,
) -> None:
    open_invoice(engine)
    open_invoice(engine, invoice_number="000124")
    move(engine, "TRX-1", 100_000, invoice_number="000124")

    with pytest.raises(CaseCommandRefused, match="already recorded on invoice 000124"):
        move(engine, "TRX-1", 100_000)


def test_a_reference_of_another_invoice_on_a_paid_one_names_the_holder(
    engine: Engine,
) -> None:
    open_invoice(engine)
    open_invoice(engine, invoice_number="000124")
    move(engine, "TRX-1", 900_000)
    move(engine, "TRX-2", 100_000, invoice_number="000124")

    with pytest.raises(CaseCommandRefused, match="already recorded on invoice 000124"):
        move(engine, "TRX-2", 100_000)


def test_a_known_reference_with_another_amount_is_refused_not_taken_as_repeat(
    engine: Engine,
) -> None:
    open_invoice(engine)
    move(engine, "TRX-1", 100_000)

    with pytest.raises(CaseCommandRefused):
        move(engine, "TRX-1", 500_000)


def test_a_payment_reference_reused_for_a_credit_note_is_refused(
    engine: Engine,
) -> None:
    open_invoice(engine)
    move(engine, "DOC-1", 100_000)

    with pytest.raises(CaseCommandRefused):
        move(engine, "DOC-1", 100_000, kind=PaymentKind.CREDIT_NOTE)


@pytest.mark.parametrize("reference", ["", "   "])
def test_a_blank_reference_is_refused(engine: Engine, reference: str) -> None:
    open_invoice(engine)

    with pytest.raises((CaseCommandRefused, ValueError)):
        move(engine, reference, 100_000)


# -- amounts and kinds ------------------------------------------------------------------


def test_a_negative_adjustment_on_an_open_invoice_raises_its_balance(
    engine: Engine,
) -> None:
    open_invoice(engine)
    move(engine, "TRX-1", 400_000)

    result = move(engine, "REV-1", -400_000, kind=PaymentKind.ADJUSTMENT)

    assert result == StoredMoveResult(True, 900_000, InvoiceStatus.OPEN)


def test_a_bounced_payment_after_settlement_points_to_a_debit_note(
    engine: Engine,
) -> None:
    # The case ended when the cheque settled the invoice; reopening it behind the case's
    # back would leave the debt with nobody following it.
    open_invoice(engine)
    move(engine, "CHQ-1", 900_000)

    with pytest.raises(CaseCommandRefused, match=r"debit note \(nota de débito\)"):
        move(engine, "CHQ-1-REV", -900_000, kind=PaymentKind.ADJUSTMENT)
    assert stored(engine).balance_minor == 0
    assert references(engine) == ["CHQ-1"]


def test_a_zero_adjustment_is_refused(engine: Engine) -> None:
    open_invoice(engine)

    with pytest.raises(CaseCommandRefused):
        move(engine, "ADJ-0", 0, kind=PaymentKind.ADJUSTMENT)


def test_an_overpayment_is_applied_and_reported(engine: Engine) -> None:
    open_invoice(engine)

    result = move(engine, "TRX-1", 1_000_000)

    assert result == StoredMoveResult(True, -100_000, InvoiceStatus.PAID)
    assert result.overpaid_minor == 100_000


def test_an_amount_past_64_bits_is_refused_with_a_clear_error(engine: Engine) -> None:
    open_invoice(engine)

    with pytest.raises(CaseCommandRefused):
        move(engine, "TRX-1", 2**63)
    assert references(engine) == []
