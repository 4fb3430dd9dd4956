"""Create the store: customers, invoices, payments, contact ledger, outbox, imports."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create every table of receivables/store.py as it stood at this revision."""
    _create_import_batch()
    _create_customer()
    _create_invoice()
    _create_payment()
    _create_contact_ledger()
    _create_outbox()


def downgrade() -> None:
    """Drop every table, children before the parents they reference."""
    for table in (
        "outboxmessage",
        "contactattempt",
        "contactledgerentry",
        "payment",
        "invoice",
        "customer",
        "importbatch",
    ):
        op.drop_table(table)


def _create_import_batch() -> None:
    op.create_table(
        "importbatch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("content_sha256", sa.String(), nullable=False),
        sa.Column("mapping", sa.String(), nullable=False),
        sa.Column("accepted_rows", sa.Integer(), nullable=False),
        sa.Column("rejected_rows", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "content_sha256", "mapping"),
    )


def _create_customer() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("customer_type", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("whatsapp", sa.String(), nullable=True),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("time_zone", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=True),
        sa.UniqueConstraint("tenant", "customer_id"),
    )
    op.create_index("ix_customer_tenant", "customer", ["tenant"])


def _create_invoice() -> None:
    op.create_table(
        "invoice",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("due_date_rule", sa.String(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("segment", sa.String(), nullable=True),
        sa.Column("policy_name", sa.String(), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("disputed", sa.Boolean(), nullable=False),
        sa.Column("settled_date", sa.Date(), nullable=True),
        sa.Column(
            "import_batch_id",
            sa.Integer(),
            sa.ForeignKey("importbatch.id"),
            nullable=True,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "invoice_number"),
    )
    op.create_index("ix_invoice_tenant", "invoice", ["tenant"])
    op.create_index("ix_invoice_customer_id", "invoice", ["customer_id"])
    op.create_index("ix_invoice_status", "invoice", ["status"])


def _create_payment() -> None:
    op.create_table(
        "payment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("reference", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "reference"),
    )
    op.create_index("ix_payment_invoice_number", "payment", ["invoice_number"])


def _create_contact_ledger() -> None:
    op.create_table(
        "contactledgerentry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("policy_name", sa.String(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(), nullable=True),
        sa.UniqueConstraint(
            "tenant", "invoice_number", "step_id", "channel", "recipient"
        ),
    )
    op.create_index(
        "ix_contactledgerentry_invoice_number", "contactledgerentry", ["invoice_number"]
    )
    op.create_table(
        "contactattempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "ledger_entry_id",
            sa.Integer(),
            sa.ForeignKey("contactledgerentry.id"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_contactattempt_ledger_entry_id", "contactattempt", ["ledger_entry_id"]
    )


def _create_outbox() -> None:
    op.create_table(
        "outboxmessage",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("idempotency_key", sa.String(), nullable=False, unique=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("html_body", sa.String(), nullable=True),
        sa.Column("policy_name", sa.String(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_outboxmessage_invoice_number", "outboxmessage", ["invoice_number"]
    )
