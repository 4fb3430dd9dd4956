"""The main job on a real dev server: sample portfolio, live cases, outbox, readable UI."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import func, select
from temporalio.testing import WorkflowEnvironment

from receivables import search_attributes as sa
from receivables.case import case_workflow_id
from receivables.demo import load_sample_portfolio, open_every_case
from receivables.governance import GOVERNANCE_FILE, sync_governance
from receivables.schema import migrate
from receivables.settings import PROJECT_ROOT, Settings, TemporalSettings
from receivables.store import ContactLedgerEntry, Customer, make_engine, session_scope
from tests.case_helpers import zone_in_contact_hours
from worker import build_worker


def demo_settings(tmp_path: Path) -> Settings:
    """Settings for one demo run in a scratch folder, on a task queue of its own."""
    return Settings(
        data_dir=tmp_path,
        tenant=f"e2e-{uuid.uuid4().hex[:6]}",
        temporal=TemporalSettings(task_queue=f"demo-{uuid.uuid4().hex[:6]}"),
        policies_dir=PROJECT_ROOT / "policies",
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


def move_debtors_to_daytime(engine: Engine, tenant: str) -> None:
    """Give every customer of the tenant a zone where it is contact hours right now."""
    zone = zone_in_contact_hours(datetime.now(UTC))
    with session_scope(engine) as session:
        for customer in session.exec(select(Customer).where(Customer.tenant == tenant)):
            customer.time_zone = zone
            session.add(customer)


async def test_sample_portfolio_runs_live_cases_that_read_well_in_the_ui(
    local_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = demo_settings(tmp_path)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    # As run_demo does: tasks the policies open need the tenant's executives.
    sync_governance(engine, settings.tenant, settings.policies_dir / GOVERNANCE_FILE)
    assert "rejected rows: 0" in load_sample_portfolio(settings, size=12)
    # Steps found late are sent at once only in usual contact hours, else the next
    # morning; the debtors are moved to a zone where it is daytime now, so that the
    # first contacts are decided within this test whatever the hour CI runs it.
    move_debtors_to_daytime(engine, settings.tenant)
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
