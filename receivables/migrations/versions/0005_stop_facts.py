"""Add stop facts (lawsuit, insolvency, cession, SII payment form), unknown zones, statements."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the stop-fact columns and their audit table, zone candidates and statement links."""
    # Batch mode: a plain ALTER on PostgreSQL; on SQLite plain added columns need no copy.
    with op.batch_alter_table("customer") as customer:
        customer.add_column(
            sa.Column("time_zone_candidates", sa.String(), nullable=True)
        )
        customer.add_column(sa.Column("lawsuit_served_on", sa.Date(), nullable=True))
        customer.add_column(sa.Column("insolvency_opened_on", sa.Date(), nullable=True))
    with op.batch_alter_table("invoice") as invoice:
        invoice.add_column(sa.Column("payment_form", sa.Integer(), nullable=True))
        invoice.add_column(sa.Column("sii_received_on", sa.Date(), nullable=True))
        invoice.add_column(sa.Column("ceded_on", sa.Date(), nullable=True))
        invoice.add_column(sa.Column("ceded_to", sa.String(), nullable=True))
    with op.batch_alter_table("contactledgerentry") as ledger:
        ledger.add_column(
            sa.Column("consolidated_into_id", sa.Integer(), nullable=True)
        )
    op.create_table(
        "stopfactrecord",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=True),
        sa.Column("fact", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("recorded_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stopfactrecord_tenant", "stopfactrecord", ["tenant"])


def downgrade() -> None:
    """Drop the audit table and every column this revision added."""
    op.drop_table("stopfactrecord")
    # Never a table copy: with foreign keys on, SQLite cannot drop a table others point at.
    with op.batch_alter_table("contactledgerentry", recreate="never") as ledger:
        ledger.drop_column("consolidated_into_id")
    with op.batch_alter_table("invoice", recreate="never") as invoice:
        for column in ("ceded_to", "ceded_on", "sii_received_on", "payment_form"):
            invoice.drop_column(column)
    with op.batch_alter_table("customer", recreate="never") as customer:
        for column in (
            "insolvency_opened_on",
            "lawsuit_served_on",
            "time_zone_candidates",
        ):
            customer.drop_column(column)
