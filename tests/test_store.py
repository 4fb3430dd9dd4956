"""The committed store's schema on both stores: migrations, natural keys, instants."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, SQLModel, select

from receivables import schema
from receivables.schema import (
    alembic_config,
    current_revision,
    head_revision,
    migrate,
    new_revision,
    schema_drift,
)
from receivables.store import (
    METADATA,
    ContactLedgerEntry,
    Invoice,
    OutboxMessage,
    Payment,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """These tests change the schema itself, so each gets a database of its own."""
    return fresh_database_url


SANTIAGO = ZoneInfo("America/Santiago")
PLANNED = datetime(2026, 4, 6, 8, 0, tzinfo=SANTIAGO)


def test_migrate_is_idempotent(database_url: str, engine: Engine) -> None:
    migrate(database_url)
    migrate(database_url)

    assert current_revision(database_url) == head_revision()
    assert set(inspect(engine).get_table_names()) == set(METADATA.tables) | {
        "alembic_version"
    }


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert schema_drift(database_url) == []


def test_drift_check_notices_a_schema_the_models_do_not_describe(
    database_url: str, engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_invoice_status"))

    drift = schema_drift(database_url)

    assert [(diff[0], diff[1].name) for diff in drift] == [
        ("add_index", "ix_invoice_status")
    ]


def test_downgrade_to_base_then_migrate_restores_every_table(
    database_url: str, engine: Engine
) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    migrate(database_url)

    assert schema_drift(database_url) == []


def test_first_migrations_from_several_processes_at_once_all_succeed(
    database_url: str, engine: Engine
) -> None:
    _blank(engine)
    script = "import sys; from receivables.schema import migrate; migrate(sys.argv[1])"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url],
            cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]

    failures = [run.communicate()[1] for run in runs if run.wait() != 0]

    assert failures == []
    assert current_revision(database_url) == head_revision()
    assert schema_drift(database_url) == []


def test_migrate_works_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{tmp_path / 'store' / 'dunning.sqlite'}"

    migrate(url)

    assert current_revision(url) == head_revision()


def test_current_revision_of_a_missing_sqlite_file_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "absent.sqlite"

    assert current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def _invoice(**changes: object) -> Invoice:
    values: dict[str, object] = {
        "tenant": "acme",
        "invoice_number": "000123",
        "customer_id": "C-1",
        "issue_date": date(2026, 3, 1),
        "amount_minor": 119_000,
        "currency": "CLP",
        "balance_minor": 119_000,
    }
    return Invoice.model_validate(values | changes)


def _payment(**changes: object) -> Payment:
    values: dict[str, object] = {
        "tenant": "acme",
        "invoice_number": "000123",
        "reference": "TRX-9",
        "amount_minor": 50_000,
        "currency": "CLP",
        "received_at": PLANNED,
    }
    return Payment.model_validate(values | changes)


def _ledger_entry(**changes: object) -> ContactLedgerEntry:
    values: dict[str, object] = {
        "tenant": "acme",
        "invoice_number": "000123",
        "step_id": "R2",
        "channel": "email",
        "recipient": "customer",
        "policy_name": "preventive-b2b",
        "policy_version": 1,
        "planned_at": PLANNED,
    }
    return ContactLedgerEntry.model_validate(values | changes)


def _outbox_message(**changes: object) -> OutboxMessage:
    values: dict[str, object] = {
        "idempotency_key": "acme/000123/R2/email/customer",
        "tenant": "acme",
        "invoice_number": "000123",
        "step_id": "R2",
        "channel": "email",
        "recipient": "customer",
        "body": "Recordatorio",
        "policy_name": "preventive-b2b",
        "policy_version": 1,
    }
    return OutboxMessage.model_validate(values | changes)


NATURAL_KEYS = [
    pytest.param(_invoice, {"tenant": "other"}, id="invoice-tenant-number"),
    pytest.param(_payment, {"reference": "TRX-10"}, id="payment-tenant-reference"),
    pytest.param(
        _ledger_entry, {"channel": "sms"}, id="ledger-invoice-step-channel-recipient"
    ),
    pytest.param(_ledger_entry, {"recipient": "guarantor"}, id="ledger-recipient"),
    pytest.param(
        _outbox_message,
        {"idempotency_key": "acme/000123/R3"},
        id="outbox-idempotency-key",
    ),
]


@pytest.mark.parametrize(("make_row", "other_key"), NATURAL_KEYS)
def test_a_second_row_with_the_same_natural_key_is_refused(
    engine: Engine, make_row: Callable[..., SQLModel], other_key: dict[str, object]
) -> None:
    _insert(engine, make_row())
    _insert(engine, make_row(**other_key))

    with pytest.raises(IntegrityError):
        _insert(engine, make_row())


def test_aware_datetimes_come_back_as_the_same_instant_in_utc(engine: Engine) -> None:
    _insert(engine, _payment(received_at=PLANNED))

    with Session(engine) as session:
        received_at = session.exec(select(Payment.received_at)).one()

    assert received_at == PLANNED
    assert received_at.tzinfo is not None
    assert received_at.utcoffset() == UTC.utcoffset(None)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="timezone"):
        _insert(engine, _payment(received_at=datetime(2026, 4, 6, 8, 0)))


def _insert(engine: Engine, row: SQLModel) -> None:
    with Session(engine) as session:
        session.add(row)
        session.commit()


def _blank(engine: Engine) -> None:
    METADATA.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))


def test_a_failed_migration_leaves_the_store_untouched(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _blank(engine)

    def fail(_connection: object) -> None:
        raise RuntimeError("failure after the tables were created")

    monkeypatch.setattr("receivables.schema._check_foreign_keys", fail)
    with pytest.raises(RuntimeError, match="failure after"):
        migrate(database_url)

    assert inspect(engine).get_table_names() == []
    assert current_revision(database_url) is None


def test_a_generated_revision_is_numbered_uses_plain_types_and_applies(
    database_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(
        schema.MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", migrations)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE outboxmessage"))

    following = f"{int(head_revision()) + 1:04d}"

    path = new_revision(database_url, "restore the outbox")
    migrate(database_url)

    assert path.name == f"{following}_restore_the_outbox.py"
    source = path.read_text()
    assert "sa.DateTime(timezone=True)" in source
    assert "sqlmodel" not in source
    assert current_revision(database_url) == following
    assert schema_drift(database_url) == []
