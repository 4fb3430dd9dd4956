"""Money movements committed to the store before any case hears of them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.cases import StoredMoveResult, commit_money_movement
from receivables.store import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    find_invoice,
    session_scope,
)
from tests.case_helpers import add_invoice

RECEIVED = datetime(2026, 4, 2, 15, 0, tzinfo=UTC)
FOLIO = "000123"


def open_invoice(engine: Engine, amount_minor: int = 900_000) -> None:
    """Commit an open CLP invoice of folio 000123 for the given amount."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=amount_minor,
    )


def move(
    engine: Engine,
    reference: str,
    amount_minor: int,
    *,
    kind: PaymentKind = PaymentKind.PAYMENT,
    currency: str = "CLP",
    invoice_number: str = FOLIO,
) -> StoredMoveResult:
    """Commit one payment or credit to the invoice."""
    return commit_money_movement(
        engine,
        "test",
        invoice_number,
        kind=kind,
        reference=reference,
        amount_minor=amount_minor,
        currency=currency,
        at=RECEIVED,
    )


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
    assert invoice.updated_at == RECEIVED
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
