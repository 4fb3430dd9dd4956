"""Replaying a real portfolio through real cases: counts agree, no reminder after payment."""

from __future__ import annotations

from pathlib import Path

import pytest

from receivables.settings import PROJECT_ROOT, Settings
from receivables.simulation import SimulationError, simulate

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
    import shutil

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
