"""Replaying a real portfolio through real cases: counts agree, no reminder after payment."""

from __future__ import annotations

import csv
import functools
import logging
import shutil
import time as wall_clock
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio import workflow
from temporalio.worker import (
    HandleSignalInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

import receivables.simulation
import worker
from receivables.case import DisputeCategory
from receivables.commitments import StoredDispute
from receivables.kpis import UNNAMED_RULE, deciding_rule
from receivables.settings import PROJECT_ROOT, Settings
from receivables.simulation import (
    REPLAY_TENANT,
    DisputeTiming,
    SimulationError,
    dispute_category,
    in_timeline_order,
    plan_dispute,
    replay_runtime,
    simulate,
)
from receivables.store import as_utc, find_invoice, make_engine, session_scope
from receivables.tasks import HumanTask

IBM_FILE = Path("data/ar/ibm_accounts_receivable.csv")


def first_rows_of(source: Path, target: Path, rows: int) -> Path:
    """A slice of a CSV: its header and first data rows, byte for byte."""
    with source.open("rb") as handle:
        lines = [handle.readline() for _ in range(rows + 1)]
    target.write_bytes(b"".join(lines))
    return target


@pytest.fixture
def settings() -> Settings:
    """The project's own policies and templates."""
    return Settings(
        policies_dir=PROJECT_ROOT / "policies",
        templates_dir=PROJECT_ROOT / "templates" / "messages",
    )


async def test_replay_of_ibm_slice_sends_no_reminder_after_payment(
    shared_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    portfolio = first_rows_of(shared_dir / IBM_FILE, tmp_path / "slice.csv", 150)
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(portfolio, "ibm-ar", settings=settings, work_dir=work)

    assert summary.invoices == summary.cases_opened == summary.payments_reported == 150
    assert summary.reminders_after_payment == 0
    assert summary.reminders_sent == sum(summary.reminders_by_step.values())
    assert summary.reminders_sent == sum(summary.reminders_by_channel.values())
    assert sum(summary.paid_after_step.values()) == 150
    assert summary.reminders_sent > 0
    assert summary.replay_shift_days % 7 == 0


def rows_of(source: Path, target: Path, numbers: list[int]) -> Path:
    """A CSV of the header and the given data rows (1 is the first), byte for byte."""
    with source.open("rb") as handle:
        lines = handle.readlines()
    target.write_bytes(lines[0] + b"".join(lines[n] for n in numbers))
    return target


class _SlowSignalTasks(WorkflowInboundInterceptor):
    async def handle_signal(self, input: HandleSignalInput) -> None:
        # A workflow task that takes this long in real time, as on a loaded machine: the
        # test server's clock runs on meanwhile and fires the timers due in that span.
        with workflow.unsafe.sandbox_unrestricted():
            wall_clock.sleep(0.4)
        await super().handle_signal(input)


class SlowSignalTasks(Interceptor):
    """Holds every workflow task that delivers a signal for 400 ms of wall time."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """The inbound interceptor that sleeps before each signal."""
        return _SlowSignalTasks


def replay_tasks(work: Path) -> list[HumanTask]:
    """The human tasks the replay left in its store."""
    engine = make_engine(f"sqlite:///{work / 'replay.sqlite'}")
    try:
        with session_scope(engine) as session:
            return list(
                session.exec(
                    select(HumanTask).where(HumanTask.tenant == REPLAY_TENANT)
                ).all()
            )
    finally:
        engine.dispose()


async def test_replayed_dispute_task_never_falls_due_as_its_rejection_arrives(
    shared_dir: Path,
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Row 458 alone stalled the time-skipping server: its dispute, raised at 07:30, had
    # its resolve task fall due at 07:30 five business days later, the very morning the
    # replay signalled the rejection. The task's timer fired while the case handled the
    # signal, the case cancelled it, the server refused the cancel and froze its clock.
    portfolio = rows_of(shared_dir / IBM_FILE, tmp_path / "row458.csv", [458])
    monkeypatch.setattr(
        worker,
        "Worker",
        functools.partial(worker.Worker, interceptors=[SlowSignalTasks()]),
    )
    # A stall then fails within minutes instead of the command's quarter of an hour.
    monkeypatch.setattr(
        receivables.simulation, "REPLAY_WALL_LIMIT", timedelta(minutes=3)
    )
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio, "ibm-ar", settings=settings, work_dir=work, disputes=DisputeTiming()
    )

    assert summary.disputes_opened == summary.disputes_resolved == 1
    assert summary.payments_reported == 1
    assert summary.reminders_after_payment == 0
    (task,) = replay_tasks(work)
    assert task.kind == "resolve_dispute" and task.completed_at is not None
    # Closed by the rejection, hours away from the instant its SLA timer would fire.
    assert abs(as_utc(task.due_at) - as_utc(task.completed_at)) >= timedelta(hours=1)


async def test_disputed_row_paid_on_its_issue_day_opens_in_dispute_instead(
    tmp_path: Path, settings: Settings
) -> None:
    # Disputes are raised in the evening; this one would arrive after the money.
    portfolio = tmp_path / "same-day.csv"
    portfolio.write_text(
        "countryCode,customerID,PaperlessDate,invoiceNumber,InvoiceDate,DueDate,"
        "InvoiceAmount,Disputed,SettledDate,PaperlessBill,DaysToSettle,DaysLate\n"
        "391,0379-NEVHP,4/6/2013,0000611365,1/2/2013,2/1/2013,55.94,Yes,1/2/2013,"
        "Paper,0,0\n"
    )
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio, "ibm-ar", settings=settings, work_dir=work, disputes=DisputeTiming()
    )

    assert summary.disputes_opened == summary.disputes_resolved == 0
    assert summary.payments_reported == 1
    engine = make_engine(f"sqlite:///{work / 'replay.sqlite'}")
    with session_scope(engine) as session:
        invoice = find_invoice(session, REPLAY_TENANT, "0000611365")
        assert invoice is not None and invoice.disputed
    engine.dispose()


def disputed_rows_in(portfolio: Path) -> int:
    """How many rows of an IBM-format file say ``Disputed=Yes``."""
    with portfolio.open(newline="", encoding="utf-8") as handle:
        return sum(row["Disputed"] == "Yes" for row in csv.DictReader(handle))


async def test_replay_opens_and_rejects_each_disputed_row_before_its_payment(
    shared_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    portfolio = first_rows_of(shared_dir / IBM_FILE, tmp_path / "slice.csv", 60)
    disputed = disputed_rows_in(portfolio)
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio, "ibm-ar", settings=settings, work_dir=work, disputes=DisputeTiming()
    )

    assert disputed > 0
    assert summary.disputes_opened == summary.disputes_resolved == disputed
    assert summary.payments_reported == 60
    assert summary.reminders_after_payment == 0
    # Every dispute hands a resolve task to a person, so there are at least as many tasks.
    assert summary.tasks_opened >= summary.disputes_opened
    assert summary.tasks_escalated <= summary.tasks_opened
    assert summary.promises == 0
    # The store keeps every replayed dispute for the KPIs: each rejected, none open.
    engine = make_engine(f"sqlite:///{work / 'replay.sqlite'}")
    with session_scope(engine) as session:
        disputes = session.exec(select(StoredDispute)).all()
    engine.dispose()
    assert len(disputes) == disputed
    assert {d.status for d in disputes} == {"rejected"}
    assert all(d.resolved_at is not None and d.owner_id for d in disputes)


async def test_replay_under_another_jurisdiction_names_a_rule_for_every_deferral(
    shared_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    portfolio = first_rows_of(shared_dir / IBM_FILE, tmp_path / "slice.csv", 60)
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio,
        "ibm-ar",
        settings=settings,
        work_dir=work,
        jurisdiction="cl.consumer",
    )

    assert summary.contact_deferrals > 0
    assert sum(summary.contact_deferrals_by_rule.values()) == summary.contact_deferrals
    # The IBM policies name cl.b2b: only consumer rules deferring shows the override held.
    assert all(rule.startswith("CL-C-") for rule in summary.contact_deferrals_by_rule)
    assert summary.reminders_after_payment == 0
    assert "cl.consumer" in summary.to_text()


async def test_replay_refuses_an_unknown_jurisdiction_before_importing(
    tmp_path: Path, settings: Settings
) -> None:
    with pytest.raises(SimulationError, match=r"xx\.nowhere.*cl\.consumer"):
        await simulate(
            tmp_path / "never-read.csv",
            "ibm-ar",
            settings=settings,
            work_dir=tmp_path,
            jurisdiction="xx.nowhere",
        )
    assert not (tmp_path / "replay.sqlite").exists()


def test_replayed_dispute_opens_after_issue_and_ends_days_before_settlement() -> None:
    dispute = plan_dispute(
        "F-1",
        10_000,
        issued=date(2027, 1, 4),
        settled=date(2027, 2, 1),
        timing=DisputeTiming(),
    )

    assert dispute.opens_on == date(2027, 1, 9)
    assert dispute.resolves_on == date(2027, 1, 29)
    assert dispute.amount_minor == 10_000


def test_dispute_close_to_settlement_ends_on_the_settlement_morning() -> None:
    dispute = plan_dispute(
        "F-1",
        10_000,
        issued=date(2027, 1, 4),
        settled=date(2027, 1, 7),
        timing=DisputeTiming(opens_after_days=5, resolves_days_before=3),
    )

    assert dispute.opens_on == date(2027, 1, 6)
    assert dispute.resolves_on == date(2027, 1, 7)


def test_replayed_dispute_of_an_invoice_never_settled_stays_open() -> None:
    dispute = plan_dispute(
        "F-1",
        10_000,
        issued=date(2027, 1, 4),
        settled=None,
        timing=DisputeTiming(opens_after_days=2),
    )

    assert dispute.opens_on == date(2027, 1, 6)
    assert dispute.resolves_on is None


def test_dispute_timing_refuses_negative_offsets() -> None:
    with pytest.raises(SimulationError, match="zero or more"):
        DisputeTiming(opens_after_days=-1)


def test_dispute_category_depends_on_the_invoice_number_alone() -> None:
    numbers = [f"{n:010d}" for n in range(200)]

    first = [dispute_category(n) for n in numbers]

    assert first == [dispute_category(n) for n in numbers]
    assert set(first) == set(DisputeCategory)


def test_deferral_counts_under_the_rule_its_reason_names_first() -> None:
    trace = (
        "defer until 2027-01-23T11:00Z: CL-C-05 2 whole days needed after the written "
        "contact of 2027-01-20; CL-C-01 before 08:00 on Saturday 2027-01-23 "
        "[rules: CL-C-01, CL-C-02, CL-C-05]; flags: region unknown"
    )

    assert deciding_rule(trace) == "CL-C-05"
    assert (
        deciding_rule("defer until 2027-01-04T11:00Z: busy [rules: ]") == UNNAMED_RULE
    )


async def test_replay_refuses_a_portfolio_with_rejected_rows(
    tmp_path: Path, settings: Settings
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "countryCode,customerID,PaperlessDate,invoiceNumber,InvoiceDate,DueDate,"
        "InvoiceAmount,Disputed,SettledDate,PaperlessBill,DaysToSettle,DaysLate\n"
        "391,0379-NEVHP,4/6/2013,0000611365,1/2/2013,2/1/2013,-5,No,1/15/2013,Paper,13,0\n"
    )
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(SimulationError, match="rejected"):
        await simulate(bad, "ibm-ar", settings=settings, work_dir=work)


def test_simulate_writes_a_report_comparing_two_policies_on_the_same_history(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import starter

    portfolio = first_rows_of(shared_dir / IBM_FILE, tmp_path / "slice.csv", 60)
    quieter = tmp_path / "quieter"
    shutil.copytree(PROJECT_ROOT / "policies", quieter)
    b2b = quieter / "preventive-b2b.yaml"
    # The alternative drops the courtesy notice a week before the due date.
    text = b2b.read_text(encoding="utf-8")
    start = text.index("  - id: R-7")
    b2b.write_text(text[:start] + text[text.index("  - id: R-1") :], encoding="utf-8")
    report = tmp_path / "replay.html"

    code = starter.main(
        [
            "simulate",
            str(portfolio),
            "--mapping",
            "ibm-ar",
            "--report",
            str(report),
            "--compare-policies",
            str(quieter),
        ]
    )

    printed = capsys.readouterr().out
    assert code == 0
    sent = [
        int(line.split()[-1])
        for line in printed.splitlines()
        if "reminders sent" in line
    ]
    assert len(sent) == 2 and sent[1] < sent[0]
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and "quieter" in html


def slice_with_stops_and_twins(source: Path, target: Path, rows: int) -> None:
    """A slice where one late payer was served in a lawsuit and another's invoice has twins.

    The twins are the same debt invoiced three times (new folios, same dates): their
    written reminders fall due together and go out as one statement.
    """
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        table = [row for _, row in zip(range(rows), reader, strict=False)]
        header = [*(reader.fieldnames or []), "LawsuitServed"]
    # Late payers get reminders after their due date; disputed rows get none.
    late = [r for r in table if int(r["DaysLate"]) > 0 and r["Disputed"] == "No"]
    twinned = late[0]
    sued = next(
        r["customerID"] for r in late if r["customerID"] != twinned["customerID"]
    )
    twins = [
        {**twinned, "invoiceNumber": f"{twinned['invoiceNumber']}-{n}"} for n in (2, 3)
    ]
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in [*table, *twins]:
            served = "1/2/2012" if row["customerID"] == sued else ""
            writer.writerow({**row, "LawsuitServed": served})


async def test_replay_counts_statements_and_cases_a_stop_rule_ended(
    shared_dir: Path, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(PROJECT_ROOT / "policies", policies)
    mapping = (policies / "mappings" / "ibm-ar.yaml").read_text(encoding="utf-8")
    (policies / "mappings" / "ibm-ar-stops.yaml").write_text(
        mapping.replace("name: ibm-ar", "name: ibm-ar-stops").replace(
            "  disputed: Disputed\n",
            "  disputed: Disputed\n  lawsuit_served_on: LawsuitServed\n",
        ),
        encoding="utf-8",
    )
    portfolio = tmp_path / "slice.csv"
    slice_with_stops_and_twins(shared_dir / IBM_FILE, portfolio, 40)
    settings = Settings(
        policies_dir=policies,
        templates_dir=PROJECT_ROOT / "templates" / "messages",
    )
    work = tmp_path / "work"
    work.mkdir()

    summary = await simulate(
        portfolio,
        "ibm-ar-stops",
        settings=settings,
        work_dir=work,
        jurisdiction="cl.consumer",
    )

    # The served debtor's cases each stopped at their first contact, under CL-C-10.
    assert summary.cases_stopped >= 1
    assert summary.cases_stopped_by_rule == {"CL-C-10": summary.cases_stopped}
    # Each twin rode on the statement of one of its siblings at least once.
    assert summary.contacts_consolidated >= 2
    assert summary.reminders_after_payment == 0
    text = summary.to_text()
    assert f"named in a statement     {summary.contacts_consolidated}" in text
    assert f"cases stopped by a rule  {summary.cases_stopped} (CL-C-10" in text


def test_reminders_by_step_read_in_timeline_order() -> None:
    counts = {"R+1": 4, "R+30": 1, "R+7": 2, "R-1": 5, "R-10": 6, "R-7": 3, "R+8#2": 1}
    counts |= {"CALL": 1, "R+8": 2, "R-1@2026-05-31": 1}

    text = in_timeline_order(counts)

    assert text == (
        "R-10 6, R-7 3, R-1 5, R-1@2026-05-31 1, R+1 4, R+7 2, R+8 2, R+8#2 1, "
        "R+30 1, CALL 1"
    )


def test_replays_keep_the_test_server_capability_warning_out_and_every_other_one_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core_log = logging.getLogger("temporalio.core")
    known = (
        "[sdk_core::temporalio_sdk_core::worker] Temporal Server 1.16.0 or newer is "
        "required to guarantee that the latest heartbeat details are preserved when an "
        "activity fails; the server did not advertise the "
        "activity_failure_include_heartbeat capability, so heartbeat details may be lost"
    )

    assert replay_runtime() is replay_runtime()
    with caplog.at_level(logging.WARNING, logger="temporalio.core"):
        core_log.warning(known)
        core_log.warning("[sdk_core::temporalio_sdk_core::worker] poller failed")

    assert [record.getMessage() for record in caplog.records] == [
        "[sdk_core::temporalio_sdk_core::worker] poller failed"
    ]
