"""Add closed addresses (bounces, opt-outs) and the SMS encoding and segments of a contact."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create contactsuppression and add the SMS cost columns to the contact ledger."""
    op.create_table(
        "contactsuppression",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "channel", "address"),
    )
    # Batch mode: a plain ALTER on PostgreSQL, a table copy on SQLite.
    with op.batch_alter_table("contactledgerentry") as ledger:
        ledger.add_column(sa.Column("sms_encoding", sa.String(), nullable=True))
        ledger.add_column(sa.Column("sms_segments", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop the SMS cost columns and the suppression table."""
    # Never a table copy: on SQLite with foreign keys on, dropping the old ledger table
    # fails while contact attempts point at it. SQLite 3.35+ drops a column in place.
    with op.batch_alter_table("contactledgerentry", recreate="never") as ledger:
        ledger.drop_column("sms_segments")
        ledger.drop_column("sms_encoding")
    op.drop_table("contactsuppression")
