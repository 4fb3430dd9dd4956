"""Add the reconciled bank movements: each statement line's outcome, who and when."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the table of receivables/reconciliation.py."""
    op.create_table(
        "reconciledmovement",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("bank_transaction_id", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("invoice_numbers", sa.String(), nullable=False),
        sa.Column("matched_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("candidates", sa.String(), nullable=False),
        sa.Column("remittance", sa.String(), nullable=False),
        sa.Column("source_file", sa.String(), nullable=False),
        sa.Column("place", sa.String(), nullable=False),
        sa.Column("reconciled_by", sa.String(), nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=False),
        # A statement run twice finds its lines here instead of applying them again.
        sa.UniqueConstraint("tenant", "bank_transaction_id"),
    )
    for column in ("tenant", "outcome"):
        op.create_index(
            f"ix_reconciledmovement_{column}", "reconciledmovement", [column]
        )


def downgrade() -> None:
    """Drop the table; its indexes go with it."""
    op.drop_table("reconciledmovement")
