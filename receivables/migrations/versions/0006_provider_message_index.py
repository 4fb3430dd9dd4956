"""Index the ledger by provider message id; fingerprint texts sent; reopen opt-outs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ix_contactledgerentry_tenant_provider_message_id"


def upgrade() -> None:
    """Add the message id index, the message_sha256 column and the reopening columns."""
    # Delivery callbacks look their ledger entry up by message id, once per event.
    op.create_index(
        INDEX, "contactledgerentry", ["tenant", "provider_message_id"], unique=False
    )
    with op.batch_alter_table("contactledgerentry") as ledger:
        ledger.add_column(sa.Column("message_sha256", sa.String(), nullable=True))
    with op.batch_alter_table("contactsuppression") as closed:
        closed.add_column(
            sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True)
        )
        closed.add_column(sa.Column("reopened_by", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop the reopening columns, the fingerprint column and the index."""
    with op.batch_alter_table("contactsuppression", recreate="never") as closed:
        closed.drop_column("reopened_by")
        closed.drop_column("reopened_at")
    # Never a table copy: contact attempts point at the ledger (see 0003's downgrade).
    with op.batch_alter_table("contactledgerentry", recreate="never") as ledger:
        ledger.drop_column("message_sha256")
    op.drop_index(INDEX, table_name="contactledgerentry")
