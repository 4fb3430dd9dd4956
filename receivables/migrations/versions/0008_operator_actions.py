"""Add the operator actions log: hand-entered changes with who, when, why, before and after."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the table of receivables/operator_actions.py."""
    op.create_table(
        "operatoraction",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=True),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("person_id", sa.String(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("before_value", sa.String(), nullable=True),
        sa.Column("after_value", sa.String(), nullable=True),
    )
    for column in ("tenant", "invoice_number", "customer_id"):
        op.create_index(f"ix_operatoraction_{column}", "operatoraction", [column])


def downgrade() -> None:
    """Drop the table; its indexes go with it."""
    op.drop_table("operatoraction")
