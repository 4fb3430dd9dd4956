"""Index the contact ledger by provider message id; keep a fingerprint of the text sent."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

INDEX = "ix_contactledgerentry_tenant_provider_message_id"


def upgrade() -> None:
    """Add the (tenant, provider_message_id) index and the message_sha256 column."""
    # Delivery callbacks look their ledger entry up by message id, once per event.
    op.create_index(
        INDEX, "contactledgerentry", ["tenant", "provider_message_id"], unique=False
    )
    with op.batch_alter_table("contactledgerentry") as ledger:
        ledger.add_column(sa.Column("message_sha256", sa.String(), nullable=True))


def downgrade() -> None:
    """Drop the fingerprint column and the index."""
    # Never a table copy: contact attempts point at the ledger (see 0003's downgrade).
    with op.batch_alter_table("contactledgerentry", recreate="never") as ledger:
        ledger.drop_column("message_sha256")
    op.drop_index(INDEX, table_name="contactledgerentry")
