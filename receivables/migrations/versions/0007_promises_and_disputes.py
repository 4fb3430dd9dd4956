"""Add payment promises and disputes as the cases record them, for KPIs and segmentation."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the tables of receivables/commitments.py."""
    _create_payment_promise()
    _create_dispute()


def downgrade() -> None:
    """Drop the tables this revision created; their indexes go with them."""
    for table in ("dispute", "paymentpromise"):
        op.drop_table(table)


def _create_payment_promise() -> None:
    op.create_table(
        "paymentpromise",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_minor", sa.BigInteger(), nullable=False),
        # A retried activity finds the promise its first attempt wrote.
        sa.UniqueConstraint("tenant", "invoice_number", "sequence"),
    )
    for column in ("tenant", "invoice_number", "customer_id", "outcome"):
        op.create_index(f"ix_paymentpromise_{column}", "paymentpromise", [column])


def _create_dispute() -> None:
    op.create_table(
        "dispute",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("dispute_id", sa.String(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=True),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(), nullable=True),
        sa.Column("credit_minor", sa.BigInteger(), nullable=False),
        sa.Column("resolution_note", sa.String(), nullable=False),
        sa.UniqueConstraint("tenant", "invoice_number", "dispute_id"),
    )
    columns = ("tenant", "invoice_number", "customer_id", "category", "owner_id")
    for column in (*columns, "status"):
        op.create_index(f"ix_dispute_{column}", "dispute", [column])
