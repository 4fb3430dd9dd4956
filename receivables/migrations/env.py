"""Alembic's entry point: runs the packaged revisions on the connection it is handed."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from receivables.store import METADATA


def render_item(
    type_: str, obj: Any, _autogen_context: AutogenContext
) -> str | Literal[False]:
    """Write SQLModel's column types as plain SQLAlchemy ones in generated revisions."""
    # A revision must outlive the models it was made from, so it names no sqlmodel type.
    if type_ == "type" and isinstance(obj, AutoString):
        length = getattr(obj.impl, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    """Apply the pending revisions on ``connection`` inside the caller's transaction."""
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        # Batch operations are plain ALTERs on PostgreSQL and table copies on SQLite,
        # so one generated revision runs on both stores.
        render_as_batch=True,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _given_connection() -> Connection:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError(
            "these revisions run only through receivables.schema.migrate(url), which "
            "hands Alembic a locked connection; the alembic command is not set up"
        )
    return connection


run_migrations(_given_connection())
