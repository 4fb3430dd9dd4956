"""The operator actions log on both stores: written with the change, shown in the case file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from receivables.case import CaseClosed, DueDateChanged, Stage
from receivables.cases import (
    CaseCommandRefused,
    change_due_date,
    close_in_store,
    commit_money_movement,
)
from receivables.operator_actions import ActionKind, OperatorAction
from receivables.policy import load_policy_book
from receivables.store import InvoiceStatus, PaymentKind, find_invoice, session_scope
from receivables.tasks import case_view
from tests.case_helpers import add_invoice

POLICIES = Path(__file__).resolve().parent.parent / "policies"
FOLIO = "0000000077"
CUSTOMER = "C-77"


@pytest.fixture
def invoice(engine: Engine) -> str:
    """One open invoice of 300.000 CLP due 2026-02-04, of a debtor in Santiago."""
    add_invoice(
        engine,
        invoice_number=FOLIO,
        issue_date=date(2026, 1, 5),
        due_date=date(2026, 2, 4),
        amount_minor=300_000,
        customer_id=CUSTOMER,
    )
    return FOLIO


def logged(engine: Engine) -> list[OperatorAction]:
    with session_scope(engine) as session:
        return list(session.exec(select(OperatorAction).order_by("id")))


def test_a_write_off_is_logged_with_who_why_and_the_status_it_ended(
    engine: Engine, invoice: str
) -> None:
    closing = CaseClosed("debtor dissolved, no assets", "sup-01")

    close_in_store(engine, "test", invoice, Stage.WRITTEN_OFF, closing)
    again = close_in_store(engine, "test", invoice, Stage.WRITTEN_OFF, closing)

    assert again.repeat
    [action] = logged(engine)  # the repeat changed nothing, so it logs nothing
    assert (action.kind, action.person_id, action.reason) == (
        ActionKind.WRITE_OFF,
        "sup-01",
        "debtor dissolved, no assets",
    )
    assert (action.invoice_number, action.customer_id) == (invoice, CUSTOMER)
    assert (action.before_value, action.after_value) == ("open", "written_off")
    assert action.recorded_at is not None


def test_a_refused_cancel_logs_nothing(engine: Engine, invoice: str) -> None:
    commit_money_movement(
        engine,
        "test",
        invoice,
        kind=PaymentKind.PAYMENT,
        reference="TRX-1",
        amount_minor=300_000,
        currency="CLP",
        at=datetime(2026, 2, 1, 13, 0, tzinfo=UTC),
    )

    with pytest.raises(CaseCommandRefused):
        close_in_store(
            engine, "test", invoice, Stage.CANCELLED, CaseClosed("dup", "exec-01")
        )

    assert logged(engine) == []


def test_a_payment_entered_by_hand_is_logged_with_the_balance_it_moved(
    engine: Engine, invoice: str
) -> None:
    received = datetime(2026, 2, 1, 13, 5, tzinfo=UTC)

    for _ in range(2):  # the same reference twice: stored and logged once
        commit_money_movement(
            engine,
            "test",
            invoice,
            kind=PaymentKind.PAYMENT,
            reference="TRX-881",
            amount_minor=100_000,
            currency="CLP",
            at=received,
            entered_by="exec-01",
        )
    commit_money_movement(
        engine,
        "test",
        invoice,
        kind=PaymentKind.CREDIT_NOTE,
        reference="NC-12",
        amount_minor=50_000,
        currency="CLP",
        at=received,
        entered_by="exec-02",
    )

    payment, credit = logged(engine)
    assert (payment.kind, payment.person_id, payment.reason) == (
        ActionKind.PAYMENT,
        "exec-01",
        "TRX-881",
    )
    assert (payment.before_value, payment.after_value) == ("300.000 CLP", "200.000 CLP")
    assert payment.effective_at is not None
    assert payment.effective_at.replace(tzinfo=UTC) == received
    assert (credit.kind, credit.person_id) == (ActionKind.CREDIT_NOTE, "exec-02")
    assert (credit.before_value, credit.after_value) == ("200.000 CLP", "150.000 CLP")


def test_a_bank_movement_names_nobody_and_logs_nothing(
    engine: Engine, invoice: str
) -> None:
    commit_money_movement(
        engine,
        "test",
        invoice,
        kind=PaymentKind.PAYMENT,
        reference="CARTOLA-1",
        amount_minor=100_000,
        currency="CLP",
        at=datetime(2026, 2, 1, 13, 5, tzinfo=UTC),
    )

    assert logged(engine) == []


class _Case:
    """A running case as change_due_date reaches it: it only hears the signal."""

    def __init__(self) -> None:
        self.signals: list[Any] = []

    async def signal(self, _signal: object, change: DueDateChanged) -> None:
        self.signals.append(change)


class _Client:
    def __init__(self) -> None:
        self.case = _Case()

    def get_workflow_handle_for(self, *_: object) -> _Case:
        return self.case


async def test_every_due_date_move_is_kept_not_only_the_last(
    engine: Engine, invoice: str
) -> None:
    client = _Client()
    moves = [
        DueDateChanged(date(2026, 2, 20), "orden de compra recibida tarde", "exec-01"),
        DueDateChanged(date(2026, 3, 6), "acuerdo con tesorería", "sup-01"),
    ]

    for change in moves:
        await change_due_date(
            client,  # type: ignore[arg-type]
            engine,
            load_policy_book(POLICIES),
            "test",
            invoice,
            change,
            task_queue="unused",
        )

    assert client.case.signals == moves
    first, second = logged(engine)
    assert (first.before_value, first.after_value, first.person_id) == (
        "2026-02-04",
        "2026-02-20",
        "exec-01",
    )
    assert (second.before_value, second.after_value, second.reason) == (
        "2026-02-20",
        "2026-03-06",
        "acuerdo con tesorería",
    )
    assert second.effective_on == date(2026, 3, 6)
    with session_scope(engine) as session:
        stored = find_invoice(session, "test", invoice)
    assert stored is not None and stored.due_date == date(2026, 3, 6)
    assert stored.status == InvoiceStatus.OPEN


def test_the_case_file_lists_the_log_in_order_in_the_debtors_time(
    engine: Engine, invoice: str
) -> None:
    commit_money_movement(
        engine,
        "test",
        invoice,
        kind=PaymentKind.PAYMENT,
        reference="TRX-881",
        amount_minor=100_000,
        currency="CLP",
        at=datetime(2026, 2, 1, 13, 5, tzinfo=UTC),
        entered_by="exec-01",
    )
    close_in_store(
        engine, "test", invoice, Stage.CANCELLED, CaseClosed("duplicate", "sup-01")
    )

    view = case_view(engine, "test", invoice)
    entries = [(entry.kind, entry.detail) for entry in view.timeline()]

    assert entries == [
        (
            "payment",
            "by exec-01: TRX-881 (300.000 CLP → 200.000 CLP), effective "
            "2026-02-01 10:05 America/Santiago",
        ),
        ("cancel", "by sup-01: duplicate (open → cancelled)"),
    ]


async def test_moving_a_due_date_to_the_one_it_has_logs_nothing_and_tells_the_case(
    engine: Engine, invoice: str
) -> None:
    client = _Client()
    same = DueDateChanged(date(2026, 2, 4), "confirmado con el cliente", "exec-01")

    said = await change_due_date(
        client,  # type: ignore[arg-type]
        engine,
        load_policy_book(POLICIES),
        "test",
        invoice,
        same,
        task_queue="unused",
    )

    assert "already 2026-02-04; nothing moved" in said
    assert client.case.signals == [same]
    assert logged(engine) == []
    with session_scope(engine) as session:
        stored = find_invoice(session, "test", invoice)
    assert stored is not None and "confirmado" not in (stored.due_date_rule or "")
