"""The main job on a real dev server: sample portfolio, live cases, outbox, readable UI."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import col, func, select
from temporalio.testing import WorkflowEnvironment

from receivables import search_attributes as sa
from receivables.case import case_workflow_id
from receivables.demo import load_sample_portfolio, open_every_case
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.schema import migrate
from receivables.settings import PROJECT_ROOT, Settings, TemporalSettings
from receivables.store import (
    ContactLedgerEntry,
    Customer,
    Invoice,
    InvoiceStatus,
    make_engine,
    session_scope,
)
from tests.case_helpers import StepDueNow, step_due_just_now
from worker import build_worker


def demo_settings(tmp_path: Path, slot: StepDueNow) -> Settings:
    """Settings for one demo run in a scratch folder, on a task queue of its own.

    The project's policies are copied with their send time moved to ``slot``'s minute.
    """
    policies = tmp_path / "policies"
    shutil.copytree(PROJECT_ROOT / "policies", policies)
    for path in policies.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        moved = re.sub(
            r'(?m)^send_time: "\d\d:\d\d"$', f'send_time: "{slot.send_time}"', text
        )
        path.write_text(moved, encoding="utf-8")
    return Settings(
        data_dir=tmp_path,
        tenant=f"e2e-{uuid.uuid4().hex[:6]}",
        temporal=TemporalSettings(task_queue=f"demo-{uuid.uuid4().hex[:6]}"),
        policies_dir=policies,
    )


async def wait_for_first_contact(settings: Settings, attempts: int = 120) -> int:
    """Poll the ledger until the first contacts are decided (sent, or deferred at night)."""
    engine = make_engine(settings.resolved_database_url)
    for _ in range(attempts):
        with session_scope(engine) as session:
            count = session.exec(
                select(func.count()).where(ContactLedgerEntry.tenant == settings.tenant)
            ).one()
        if count:
            return count
        await asyncio.sleep(0.25)
    return 0


def place_a_reminder_just_now(engine: Engine, tenant: str, slot: StepDueNow) -> None:
    """Put every debtor in ``slot``'s zone and make one invoice's R+1 fall due a moment ago.

    Every sample policy has an R+1 e-mail; with its send time at ``slot``'s minute, the
    invoice due yesterday reaches the contact rules as soon as its case opens.
    """
    with session_scope(engine) as session:
        for customer in session.exec(select(Customer).where(Customer.tenant == tenant)):
            customer.time_zone = slot.time_zone
            session.add(customer)
        reachable = select(Invoice).join(
            Customer,
            (Customer.tenant == Invoice.tenant)
            & (Customer.customer_id == Invoice.customer_id),
        )
        invoice = session.exec(
            reachable.where(
                Invoice.tenant == tenant,
                Invoice.status == InvoiceStatus.OPEN,
                col(Invoice.due_date).is_not(None),
                col(Invoice.disputed).is_(False),
                col(Customer.email).is_not(None),
            )
        ).first()
        assert invoice is not None, "the sample has no open, undisputed invoice"
        invoice.due_date = slot.today - timedelta(days=1)
        session.add(invoice)


async def test_sample_portfolio_runs_live_cases_that_read_well_in_the_ui(
    local_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    slot = step_due_just_now(datetime.now(UTC))
    settings = demo_settings(tmp_path, slot)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    # As run_demo does: tasks the policies open need the tenant's executives.
    sync_governance(engine, settings.tenant, settings.policies_dir / GOVERNANCE_FILE)
    assert "rejected rows: 0" in load_sample_portfolio(settings, size=12)
    # Steps found late by more than half an hour wait for usual contact hours, which no
    # zone has on a Sunday; one reminder due a moment ago is decided by the contact rules
    # (sent, or deferred to the next lawful instant) within this test, whatever the day.
    place_a_reminder_just_now(engine, settings.tenant, slot)
    worker = build_worker(local_env.client, engine, settings)

    async with worker:
        opened = await open_every_case(local_env.client, settings)
        decided = await wait_for_first_contact(settings)
        reopened = await open_every_case(local_env.client, settings)
        with session_scope(engine) as session:
            contact = session.exec(select(ContactLedgerEntry)).first()
            names = [c.name for c in session.exec(select(Customer)).all()]
        assert contact is not None
        handle = local_env.client.get_workflow_handle(
            case_workflow_id(settings.tenant, contact.invoice_number)
        )
        description = await handle.describe()
        metadata = await handle.query("__temporal_workflow_metadata")

    assert opened["opened"] >= 10 and decided >= 1
    assert reopened == {"already open": opened["opened"]}
    attributes = description.typed_search_attributes
    assert attributes.get(sa.DUNNING_TENANT) == settings.tenant
    assert attributes.get(sa.DUNNING_STAGE) in {"not_due", "overdue"}
    assert attributes.get(sa.DUNNING_POLICY_VERSION, "").endswith("@1")
    summary = await description.static_summary()
    assert summary is not None and contact.invoice_number in summary
    details = metadata.current_details
    assert "**Stage:**" in details and "**Balance:**" in details
    searchable = " ".join(str(pair.value) for pair in attributes) + summary + details
    assert not any(name in searchable for name in names), "personal data in the UI"
