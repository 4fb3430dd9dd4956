"""A debtor's data rights on both stores: export all of it, erase it once nothing is owed."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select as select_table
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

import starter
from activities.sending import ReminderSender
from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import OutboxChannel
from receivables.commitments import StoredDispute, StoredPromise
from receivables.debtor_data import (
    ERASED,
    ErasureRefused,
    erase_customer,
    erase_settled_before,
    export_customer,
    settled_before,
)
from receivables.deliveries import find_suppressions, suppress
from receivables.governance import (
    GOVERNANCE_FILE,
    PortfolioAssignment,
    SupervisorAction,
    sync_governance,
)
from receivables.importer import ImportReport, import_portfolio
from receivables.kpis import compute_kpis
from receivables.operator_actions import ActionKind, OperatorAction
from receivables.reconciliation import ReconciledMovement
from receivables.store import (
    METADATA,
    ContactAttempt,
    ContactLedgerEntry,
    ContactSuppression,
    Customer,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    StopFactRecord,
    session_scope,
)
from receivables.tasks import HumanTask
from tests.case_helpers import commands_use_store

POLICIES = Path(__file__).resolve().parent.parent / "policies"
TENANT = "test"
LONG_AGO = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
LATELY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Debtor:
    """One seeded customer and the personal data a scan must (or must not) find."""

    customer_id: str
    name: str
    email: str
    phone: str
    folios: tuple[str, str]

    @property
    def personal(self) -> tuple[str, ...]:
        """Every form the name and addresses may take in the store."""
        bare = "".join(char for char in self.phone if char.isdigit())
        return (self.name, self.email, self.email.casefold(), self.phone, "+" + bare)


ERASABLE = Debtor(
    "C-ZUNIGA",
    "Ferretería Quilpué Zúñiga SpA",
    "Cobranza.Zuniga@Ferreteria.invalid",
    "+56 9 8765 4321",
    ("0000001001", "0000001002"),
)
STILL_OWES = Debtor(
    "C-ROJAS",
    "Panadería Rojas Limitada",
    "pagos@panaderia-rojas.invalid",
    "+56 2 2345 6789",
    ("0000002001", "0000002002"),
)
SETTLED_LATELY = Debtor(
    "C-MUNOZ",
    "Transportes Muñoz y Cía.",
    "tesoreria@munoz.invalid",
    "+56 9 5555 0101",
    ("0000003001", "0000003002"),
)


def seed(engine: Engine, debtor: Debtor, *, settled_at: datetime | None) -> None:
    """A debtor with a row in every covered table; None for settled_at leaves one open."""
    paid, written_off = debtor.folios
    with session_scope(engine) as session:
        session.add(
            Customer(
                tenant=TENANT,
                customer_id=debtor.customer_id,
                name=debtor.name,
                email=debtor.email,
                phone=debtor.phone,
            )
        )
        for folio in debtor.folios:
            _seed_invoice(session, debtor, folio, settled_at)
        _seed_contacts(session, debtor, paid)
        _seed_notes(session, debtor, paid, written_off, settled_at or LATELY)


def _seed_invoice(
    session: Session, debtor: Debtor, folio: str, settled_at: datetime | None
) -> None:
    closing = InvoiceStatus.PAID if folio == debtor.folios[0] else "written_off"
    session.add(
        Invoice(
            tenant=TENANT,
            invoice_number=folio,
            customer_id=debtor.customer_id,
            issue_date=date(2025, 1, 6),
            due_date=date(2025, 2, 5),
            amount_minor=480_000,
            currency="CLP",
            balance_minor=0 if settled_at else 480_000,
            status=closing if settled_at else InvoiceStatus.OPEN,
            updated_at=settled_at or LATELY,
        )
    )
    if settled_at and folio == debtor.folios[0]:
        session.add(
            Payment(
                tenant=TENANT,
                invoice_number=folio,
                reference=f"TRX-{folio}",
                amount_minor=480_000,
                currency="CLP",
                received_at=settled_at,
            )
        )


def _seed_contacts(session: Session, debtor: Debtor, folio: str) -> None:
    email = ContactLedgerEntry(
        tenant=TENANT,
        invoice_number=folio,
        step_id="R1",
        channel="email",
        recipient=debtor.email,
        status="sent",
        reason=f"sent to {debtor.email}",
        attempts=1,
        policy_name="cl-b2b",
        policy_version=1,
        planned_at=LONG_AGO,
        decided_at=LONG_AGO,
        provider_message_id=f"msg-{folio}",
    )
    sms = ContactLedgerEntry(
        tenant=TENANT,
        invoice_number=folio,
        step_id="R2",
        channel="sms",
        recipient=debtor.phone,
        status="failed",
        reason=f"twilio refused {debtor.phone}: opted out",
        policy_name="cl-b2b",
        policy_version=1,
        planned_at=LONG_AGO,
    )
    session.add_all([email, sms])
    session.flush()
    assert email.id is not None
    session.add(
        ContactAttempt(
            ledger_entry_id=email.id,
            attempt=1,
            outcome="delivered",
            detail=f"delivered to {debtor.email.upper()}",
            at=LONG_AGO,
        )
    )
    session.add(
        OutboxMessage(
            idempotency_key=f"{TENANT}|{folio}|R1|email|{debtor.email}",
            tenant=TENANT,
            invoice_number=folio,
            step_id="R1",
            channel="email",
            recipient=debtor.email,
            subject=f"Factura {folio} de {debtor.name}",
            body=f"Estimados {debtor.name}: su factura vence.",
            html_body=f"<p>Estimados {debtor.name}</p>",
            policy_name="cl-b2b",
            policy_version=1,
            created_at=LONG_AGO,
        )
    )
    session.add(
        ContactSuppression(
            tenant=TENANT,
            channel="sms",
            address="+" + "".join(c for c in debtor.phone if c.isdigit()),
            reason="opted_out",
            source="twilio inbound opt-out SM1",
            at=LONG_AGO,
        )
    )


def _seed_notes(
    session: Session, debtor: Debtor, paid: str, written_off: str, at: datetime
) -> None:
    note = f"habló con {debtor.name} al {debtor.phone}"
    outcome = {"kind": "payment_promise", "note": note, "task_id": 1}
    session.add(
        HumanTask(
            tenant=TENANT,
            invoice_number=paid,
            workflow_id=f"invoice-{TENANT}-{paid}",
            step_id="CALL1",
            kind="call_debtor",
            role=0,
            assignee_id="exec-01",
            reason=f"call {debtor.phone}",
            time_zone="America/Santiago",
            opened_at=LONG_AGO,
            due_at=LONG_AGO,
            status="done",
            completed_by="exec-01",
            completed_at=LONG_AGO,
            outcome_kind="payment_promise",
            outcome_json=json.dumps(outcome, sort_keys=True),
        )
    )
    common = {"tenant": TENANT, "invoice_number": paid, "currency": "CLP"}
    session.add(
        StoredPromise(
            **common,
            customer_id=debtor.customer_id,
            sequence=1,
            amount_minor=480_000,
            promised_date=date(2025, 3, 1),
            deadline=LONG_AGO,
            recorded_by="exec-01",
            recorded_at=LONG_AGO,
            outcome="kept",
        )
    )
    session.add(
        StoredDispute(
            **common,
            customer_id=debtor.customer_id,
            dispute_id="D1",
            amount_minor=10_000,
            category="other",
            opened_at=LONG_AGO,
            opened_by="exec-01",
            note=note,
            status="rejected",
            resolution_note=f"{debtor.name} aceptó",
        )
    )
    _seed_logs(session, debtor, paid, written_off, at)


def _seed_logs(
    session: Session, debtor: Debtor, paid: str, written_off: str, at: datetime
) -> None:
    session.add(
        StopFactRecord(
            tenant=TENANT,
            customer_id=debtor.customer_id,
            fact="lawsuit_served",
            value="2025-02-20",
            source="operator",
            recorded_by="sup-01",
            reason=f"receptor notificó a {debtor.name}",
        )
    )
    session.add(
        OperatorAction(
            tenant=TENANT,
            invoice_number=written_off,
            customer_id=debtor.customer_id,
            kind=ActionKind.WRITE_OFF,
            person_id="sup-01",
            recorded_at=at,
            reason=f"{debtor.name} sin bienes",
            before_value="open",
            after_value="written_off",
        )
    )
    session.add(
        SupervisorAction(
            tenant=TENANT,
            invoice_number=paid,
            action="pause",
            actor="sup-01",
            reason=f"{debtor.name} pidió una semana",
            at=LONG_AGO,
            detail_json=json.dumps({"contact": debtor.email}),
        )
    )
    session.add(
        ReconciledMovement(
            tenant=TENANT,
            bank_transaction_id=f"BT-{paid}",
            account="CL-001",
            booking_date=date(2025, 3, 10),
            value_date=date(2025, 3, 10),
            amount_minor=480_000,
            currency="CLP",
            direction="credit",
            outcome="matched",
            invoice_numbers=paid,
            remittance=f"PAGO {debtor.name.upper()} FACT {paid}",
            source_file="cartola.csv",
            place="row 3",
            reconciled_by="exec-01",
            reconciled_at=LONG_AGO,
        )
    )
    session.add(
        PortfolioAssignment(
            tenant=TENANT,
            customer_id=debtor.customer_id,
            executive_id="exec-01",
            assigned_at=LONG_AGO,
            assigned_by="sup-01",
        )
    )


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """One debtor settled long ago, one who still owes, one settled lately."""
    sync_governance(engine, TENANT, POLICIES / GOVERNANCE_FILE)
    seed(engine, ERASABLE, settled_at=LONG_AGO)
    seed(engine, STILL_OWES, settled_at=None)
    seed(engine, SETTLED_LATELY, settled_at=LATELY)
    return engine


def every_row(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: a whole-store snapshot."""
    with engine.connect() as connection:
        return {
            table.name: sorted(
                (tuple(row) for row in connection.execute(select_table(table))),
                key=repr,
            )
            for table in METADATA.sorted_tables
        }


def text_values(engine: Engine) -> list[str]:
    """Every text value anywhere in the store, folded for a case-blind search."""
    return [
        value.casefold()
        for rows in every_row(engine).values()
        for row in rows
        for value in row
        if isinstance(value, str)
    ]


def holds(engine: Engine, debtor: Debtor) -> list[str]:
    """The debtor's personal data forms still found anywhere in the store."""
    values = text_values(engine)
    return [
        form
        for form in debtor.personal
        if any(form.casefold() in value for value in values)
    ]


# -- export --------------------------------------------------------------------------------


def test_export_lists_every_covered_table_and_nothing_of_another_debtor(
    seeded: Engine,
) -> None:
    exported = export_customer(seeded, TENANT, ERASABLE.customer_id)

    assert all(rows for rows in exported["tables"].values()), {
        name: len(rows) for name, rows in exported["tables"].items()
    }
    dumped = json.dumps(exported, ensure_ascii=False).casefold()
    assert ERASABLE.email.casefold() in dumped
    assert ERASABLE.name.casefold() in dumped
    for other in (STILL_OWES, SETTLED_LATELY):
        for value in (*other.personal, other.customer_id, *other.folios):
            assert value.casefold() not in dumped


def test_export_with_a_person_logs_the_access_request_without_the_data(
    seeded: Engine,
) -> None:
    export_customer(seeded, TENANT, ERASABLE.customer_id, requested_by="sup-01")

    with session_scope(seeded) as session:
        [logged] = session.exec(
            select(OperatorAction).where(
                OperatorAction.kind == ActionKind.EXPORT_PERSONAL_DATA
            )
        ).all()
    assert (logged.person_id, logged.customer_id) == ("sup-01", ERASABLE.customer_id)
    assert json.loads(logged.after_value or "")["customer"] == 1


def test_export_of_an_unknown_customer_is_refused_naming_it(seeded: Engine) -> None:
    with pytest.raises(ErasureRefused, match="C-NOBODY"):
        export_customer(seeded, TENANT, "C-NOBODY")


# -- erase ---------------------------------------------------------------------------------


def test_erase_is_refused_while_an_invoice_is_open_naming_the_folios(
    seeded: Engine,
) -> None:
    before = every_row(seeded)

    with pytest.raises(ErasureRefused, match="0000002001, 0000002002"):
        erase_customer(seeded, TENANT, STILL_OWES.customer_id, by="sup-01", reason="r")

    assert every_row(seeded) == before


def test_erase_leaves_no_personal_data_but_every_figure(seeded: Engine) -> None:
    kpis_before = compute_kpis(seeded, tenant=TENANT, as_of=date(2026, 3, 31))
    money_before = _money(seeded)
    assert holds(seeded, ERASABLE) == list(ERASABLE.personal)

    erasure = erase_customer(
        seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="request 2026-17"
    )

    assert holds(seeded, ERASABLE) == []
    assert holds(seeded, STILL_OWES) == list(STILL_OWES.personal)
    assert _money(seeded) == money_before
    kpis_after = compute_kpis(seeded, tenant=TENANT, as_of=date(2026, 3, 31))
    assert kpis_after.overall == kpis_before.overall
    assert erasure.changed["customer"] == 1
    assert erasure.changed["outboxmessage"] == 1
    with session_scope(seeded) as session:
        customer = session.exec(
            select(Customer).where(Customer.customer_id == ERASABLE.customer_id)
        ).one()
        [logged] = session.exec(
            select(OperatorAction).where(
                OperatorAction.kind == ActionKind.ERASE_PERSONAL_DATA
            )
        ).all()
    assert customer.name == ERASED
    assert customer.email is not None and customer.email.startswith("erased:")
    assert (logged.person_id, logged.reason) == ("sup-01", "request 2026-17")
    assert json.loads(logged.after_value or "") == erasure.changed


def _money(engine: Engine) -> list[tuple[Any, ...]]:
    """Ids, amounts, dates and outcomes: what accounting keeps."""
    with engine.connect() as connection:
        invoices = connection.execute(
            text(
                "SELECT invoice_number, customer_id, amount_minor, balance_minor, status, "
                "issue_date, due_date FROM invoice ORDER BY invoice_number"
            )
        ).all()
        payments = connection.execute(
            text("SELECT reference, amount_minor, received_at FROM payment ORDER BY id")
        ).all()
        ledger = connection.execute(
            text(
                "SELECT invoice_number, step_id, channel, status, planned_at "
                "FROM contactledgerentry ORDER BY id"
            )
        ).all()
    return [*map(tuple, invoices), *map(tuple, payments), *map(tuple, ledger)]


def test_an_opt_out_still_closes_the_address_after_erase(seeded: Engine) -> None:
    erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")
    # The same number comes back with a new customer in a later import, written anew.
    routes = [("sms", ERASABLE.phone), ("sms", STILL_OWES.phone)]

    closed = find_suppressions(seeded, TENANT, routes)

    assert set(closed) == {("sms", ERASABLE.phone), ("sms", STILL_OWES.phone)}
    assert closed[("sms", ERASABLE.phone)].reason == "opted_out"
    # A new opt-out of that number finds the erased row: no second row for one address.
    again = suppress(
        seeded,
        tenant=TENANT,
        channel="sms",
        address=ERASABLE.phone,
        reason="opted_out",
        source="twilio inbound opt-out SM2",
        at=LATELY,
    )
    assert not again
    assert holds(seeded, ERASABLE) == []


def test_a_second_erase_changes_nothing_and_logs_nothing(seeded: Engine) -> None:
    erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")
    after_first = every_row(seeded)

    second = erase_customer(
        seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r"
    )

    assert second.rows_changed == 0
    assert every_row(seeded) == after_first


def test_a_dry_run_counts_what_the_erase_changes_and_changes_nothing(
    seeded: Engine,
) -> None:
    before = every_row(seeded)

    dry = erase_customer(
        seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r", dry_run=True
    )

    assert every_row(seeded) == before
    real = erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")
    assert dry.changed == real.changed and dry.rows_changed > 10


# -- retention -----------------------------------------------------------------------------


def test_retention_picks_only_customers_fully_closed_before_the_date(
    seeded: Engine,
) -> None:
    cutoff = date(2026, 1, 1)

    assert settled_before(seeded, TENANT, cutoff) == [ERASABLE.customer_id]
    run = erase_settled_before(seeded, TENANT, cutoff, by="sup-01", reason="monthly")

    assert [e.customer_id for e in run.erasures] == [ERASABLE.customer_id]
    assert holds(seeded, ERASABLE) == []
    assert holds(seeded, SETTLED_LATELY) == list(SETTLED_LATELY.personal)
    later = settled_before(seeded, TENANT, date(2026, 4, 1))
    assert later == sorted([ERASABLE.customer_id, SETTLED_LATELY.customer_id])


def test_a_hand_closing_counts_as_the_last_activity_of_the_debtor(
    seeded: Engine,
) -> None:
    # SETTLED_LATELY's write-off was logged lately; its payment and rows look old.
    with session_scope(seeded) as session:
        for payment in session.exec(select(Payment)).all():
            payment.received_at = LONG_AGO
            session.add(payment)
        for invoice in session.exec(select(Invoice)).all():
            invoice.updated_at = LONG_AGO
            session.add(invoice)

    assert settled_before(seeded, TENANT, date(2026, 1, 1)) == [ERASABLE.customer_id]


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def command_store(
    database_url: str, seeded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The seeded store, as starter.py finds it; Temporal is a closed loopback port."""
    commands_use_store(monkeypatch, database_url, tmp_path, TENANT)
    return database_url


def test_the_command_refuses_an_open_debtor_with_exit_2(
    command_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = starter.main(
        [
            "debtor-data",
            "erase",
            STILL_OWES.customer_id,
            "--by",
            "sup-01",
            "--reason",
            "r",
        ]
    )

    assert code == 2
    assert "0000002001, 0000002002" in capsys.readouterr().err


def test_the_command_exports_to_a_file_then_erases_once(
    command_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export.json"
    assert (
        starter.main(["debtor-data", "export", ERASABLE.customer_id, "--out", str(out)])
        == 0
    )
    assert (
        json.loads(out.read_text(encoding="utf-8"))["customer_id"]
        == ERASABLE.customer_id
    )

    erase = [
        "debtor-data",
        "erase",
        ERASABLE.customer_id,
        "--by",
        "sup-01",
        "--reason",
        "r",
    ]
    assert starter.main([*erase, "--dry-run"]) == 0
    assert "would change" in capsys.readouterr().out
    assert starter.main(erase) == 0
    assert starter.main(erase) == 0
    assert "already erased, nothing changed" in capsys.readouterr().out


# -- after an erase ------------------------------------------------------------------------

PORTFOLIO_HEADER = (
    "Folio;Código Cliente;Razón Social;Tipo Cliente;Fecha Emisión;Fecha Vencimiento;"
    "Monto;Fecha Pago;En Disputa;Email;Teléfono;WhatsApp;Zona Horaria;Región;Plazo Días"
)


def import_new_debt(
    database_url: str, folder: Path, folio: str, *, email: str = "", phone: str = ""
) -> ImportReport:
    """A later file with one new open invoice of the erased debtor, in the sample layout."""
    cells = [folio, ERASABLE.customer_id, ERASABLE.name, "Empresa", "01/03/2026"]
    cells += ["31/03/2026", "85.000", "", "No", email, phone, "", "America/Santiago"]
    cells += ["Valparaíso", ""]
    path = folder / f"portfolio-{folio}.csv"
    path.write_bytes(f"{PORTFOLIO_HEADER}\n{';'.join(cells)}\n".encode("latin-1"))
    return import_portfolio(
        path, "sample", database_url=database_url, tenant=TENANT, policies_dir=POLICIES
    )


def reminder_of(engine: Engine, folio: str) -> SendOutcome:
    """The first e-mail reminder of the folio, SMS as fallback, sent as the worker would."""
    outbox = OutboxChannel(engine)
    sender = ReminderSender(
        engine,
        {"email": outbox, "sms": outbox},
        POLICIES.parent / "templates" / "messages",
    )
    reminder = SendReminderRequest(
        tenant=TENANT,
        invoice_number=folio,
        step_id="R+1",
        channel="email",
        template="overdue-first",
        fallback_channels=("sms",),
        policy_name="preventive-b2b",
        policy_version=1,
        planned_at=datetime(2026, 4, 1, 13, 0, tzinfo=UTC),
        language="es-CL",
    )
    environment = ActivityEnvironment()
    environment.info = replace(
        environment.info,
        activity_type="send_reminder",
        current_attempt_scheduled_time=reminder.planned_at,
    )
    return environment.run(sender.send_reminder, reminder)


def test_an_erased_debtor_is_never_written_to_at_a_pseudonym(
    seeded: Engine, database_url: str, tmp_path: Path
) -> None:
    erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")

    report = import_new_debt(database_url, tmp_path, "0000001003")
    outcome = reminder_of(seeded, "0000001003")

    assert report.notes == {
        "0000001003": f"customer {ERASABLE.customer_id}'s data had been erased: "
        "the case has no contact until a file gives it"
    }
    assert "the case has no contact until a file gives it" in report.summary()
    assert outcome.status == SendStatus.BLOCKED
    assert outcome.reason == "no reachable contact: no usable address on email, sms"
    with session_scope(seeded) as session:
        sent = session.exec(
            select(OutboxMessage).where(OutboxMessage.invoice_number == "0000001003")
        ).all()
    assert sent == []


def test_a_new_file_restores_an_erased_debtors_name_and_addresses(
    seeded: Engine, database_url: str, tmp_path: Path
) -> None:
    erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")

    report = import_new_debt(
        database_url, tmp_path, "0000001003", email="nueva@zuniga.invalid"
    )
    outcome = reminder_of(seeded, "0000001003")

    assert report.notes == {
        "0000001003": f"customer {ERASABLE.customer_id}'s data had been erased: "
        "restored from this file"
    }
    assert (outcome.status, outcome.channel) == (SendStatus.SENT, "email")
    with session_scope(seeded) as session:
        customer = session.exec(
            select(Customer).where(Customer.customer_id == ERASABLE.customer_id)
        ).one()
        [message] = session.exec(
            select(OutboxMessage).where(OutboxMessage.invoice_number == "0000001003")
        ).all()
    assert (customer.name, customer.email) == (ERASABLE.name, "nueva@zuniga.invalid")
    assert message.recipient == "nueva@zuniga.invalid"
    assert ERASED not in (message.body or "")


# -- a customer with many invoices ---------------------------------------------------------

MANY = 2_000


def seed_many_invoices(engine: Engine, customer_id: str) -> list[str]:
    """One settled customer with MANY paid invoices, each written to once."""
    folios = [f"9{number:09d}" for number in range(MANY)]
    with session_scope(engine) as session:
        session.add(
            Customer(
                tenant=TENANT, customer_id=customer_id, name="Distribuidora Larga Ltda."
            )
        )
        session.add_all(
            Invoice(
                tenant=TENANT,
                invoice_number=folio,
                customer_id=customer_id,
                issue_date=date(2025, 1, 6),
                due_date=date(2025, 2, 5),
                amount_minor=1_000,
                currency="CLP",
                balance_minor=0,
                status=InvoiceStatus.PAID,
                updated_at=LONG_AGO,
            )
            for folio in folios
        )
        session.add_all(
            ContactLedgerEntry(
                tenant=TENANT,
                invoice_number=folio,
                step_id="R1",
                channel="email",
                recipient="tesoreria@larga.invalid",
                status="sent",
                policy_name="cl-b2b",
                policy_version=1,
                planned_at=LONG_AGO,
            )
            for folio in folios
        )
    return folios


def test_a_customer_with_thousands_of_invoices_is_exported_and_erased(
    engine: Engine,
) -> None:
    folios = seed_many_invoices(engine, "C-LARGA")
    with session_scope(engine) as session:
        session.add(
            ReconciledMovement(
                tenant=TENANT,
                bank_transaction_id="BT-LAST",
                account="CL-001",
                booking_date=date(2025, 3, 10),
                value_date=date(2025, 3, 10),
                amount_minor=1_000,
                currency="CLP",
                direction="credit",
                outcome="matched",
                invoice_numbers=folios[-1],
                remittance="PAGO DISTRIBUIDORA LARGA",
                source_file="cartola.csv",
                place="row 9",
                reconciled_by="exec-01",
                reconciled_at=LONG_AGO,
            )
        )

    exported = export_customer(engine, TENANT, "C-LARGA")
    erasure = erase_customer(engine, TENANT, "C-LARGA", by="sup-01", reason="r")

    tables = exported["tables"]
    assert (len(tables["invoice"]), len(tables["contactledgerentry"])) == (MANY, MANY)
    assert len(tables["reconciledmovement"]) == 1
    assert erasure.changed["contactledgerentry"] == MANY
    assert erasure.changed["reconciledmovement"] == 1


# -- bank lines never applied to a folio ---------------------------------------------------


def unmatched_line(transaction_id: str, **texts: str) -> ReconciledMovement:
    """A statement line reconciliation could not apply, waiting for a person."""
    return ReconciledMovement(
        tenant=TENANT,
        bank_transaction_id=transaction_id,
        account="CL-001",
        booking_date=date(2025, 3, 12),
        value_date=date(2025, 3, 12),
        amount_minor=480_000,
        currency="CLP",
        direction="credit",
        outcome="unmatched",
        source_file="cartola.csv",
        place="row 7",
        reconciled_by="exec-01",
        reconciled_at=LONG_AGO,
        **texts,
    )


def test_bank_lines_resolved_by_hand_or_naming_the_customer_are_exported_and_erased(
    seeded: Engine,
) -> None:
    paid = ERASABLE.folios[0]
    remittance = f"TRANSF {ERASABLE.name.upper()} {ERASABLE.phone}"
    with session_scope(seeded) as session:
        session.add(unmatched_line("CL-001:HAND", remittance=remittance))
        session.add(
            Payment(
                tenant=TENANT,
                invoice_number=paid,
                reference="BANK:CL-001:HAND",
                amount_minor=1,
                currency="CLP",
                received_at=LONG_AGO,
            )
        )
        session.add(
            unmatched_line(
                "CL-001:NAMED",
                remittance=remittance,
                candidates=f"{ERASABLE.customer_id} {ERASABLE.name}",
                reason=f"payer {ERASABLE.name} owes on several folios",
            )
        )
        session.add(
            unmatched_line("CL-001:OTHER", candidates=f"{ERASABLE.customer_id}-2")
        )

    exported = export_customer(seeded, TENANT, ERASABLE.customer_id)
    erase_customer(seeded, TENANT, ERASABLE.customer_id, by="sup-01", reason="r")

    lines = {
        row["bank_transaction_id"] for row in exported["tables"]["reconciledmovement"]
    }
    assert lines == {f"BT-{paid}", "CL-001:HAND", "CL-001:NAMED"}
    assert holds(seeded, ERASABLE) == []


def test_a_retention_cut_off_after_today_is_refused(
    command_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    erase = ["debtor-data", "erase", "--by", "sup-01", "--reason", "r"]

    code = starter.main([*erase, "--settled-before", "2999-01-01"])

    assert code == 2
    assert "--settled-before 2999-01-01 is after today" in capsys.readouterr().err
    assert starter.main(erase) == 2
    assert "neither given: name one CUSTOMER_ID" in capsys.readouterr().err
