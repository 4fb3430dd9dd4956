"""Add people in the loop: the team, portfolio assignments, the audit trail, human tasks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the tables of receivables/governance.py and receivables/tasks.py."""
    _create_person()
    _create_portfolio_assignment()
    _create_supervisor_action()
    _create_human_task()


def downgrade() -> None:
    """Drop the tables this revision created; their indexes go with them."""
    for table in ("humantask", "supervisoraction", "portfolioassignment", "person"):
        op.drop_table(table)


def _create_person() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("person_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("supervisor_id", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("tenant", "person_id"),
    )
    op.create_index("ix_person_tenant", "person", ["tenant"])
    op.create_index("ix_person_supervisor_id", "person", ["supervisor_id"])


def _create_portfolio_assignment() -> None:
    op.create_table(
        "portfolioassignment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=True),
        sa.Column("segment", sa.String(), nullable=True),
        sa.Column("executive_id", sa.String(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(), nullable=False),
        sa.CheckConstraint(
            "customer_id IS NULL OR segment IS NULL",
            name="ck_portfolioassignment_one_scope",
        ),
    )
    op.create_index("ix_portfolioassignment_tenant", "portfolioassignment", ["tenant"])
    op.create_index(
        "ix_portfolioassignment_customer_id", "portfolioassignment", ["customer_id"]
    )


def _create_supervisor_action() -> None:
    op.create_table(
        "supervisoraction",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail_json", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.UniqueConstraint("tenant", "request_id"),
    )
    op.create_index("ix_supervisoraction_tenant", "supervisoraction", ["tenant"])
    op.create_index(
        "ix_supervisoraction_invoice_number", "supervisoraction", ["invoice_number"]
    )


def _create_human_task() -> None:
    op.create_table(
        "humantask",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("invoice_number", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("assignee_id", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("script_template", sa.String(), nullable=True),
        sa.Column("time_zone", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_to", sa.String(), nullable=True),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome_kind", sa.String(), nullable=True),
        sa.Column("outcome_json", sa.String(), nullable=True),
        # A retried activity finds the task its first attempt opened.
        sa.UniqueConstraint("tenant", "workflow_id", "step_id"),
    )
    for column in ("tenant", "invoice_number", "assignee_id", "escalated_to", "status"):
        op.create_index(f"ix_humantask_{column}", "humantask", [column])
