"""The scale benchmark: a tiny run on real dev servers reports figures that agree."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from receivables.devserver import DB_FILE_NAME
from receivables.planning import plan_case
from receivables.scale_benchmark import (
    BURST_STEP,
    ScaleReport,
    burst_policy,
    run_scale_benchmark,
    write_replica,
)

SIZES = (3, 6)


def test_the_replica_repeats_the_portfolio_with_new_numbers_open_and_due(
    shared_dir: Path, tmp_path: Path
) -> None:
    source = shared_dir / "data" / "ar" / "ibm_accounts_receivable.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        originals = sum(1 for _ in csv.DictReader(handle))

    replica = write_replica(
        source, originals + 2, tmp_path / "replica.csv", due=date(2031, 5, 4)
    )

    with replica.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == originals + 2
    assert len({row["invoiceNumber"] for row in rows}) == originals + 2
    assert rows[originals]["invoiceNumber"] == rows[0]["invoiceNumber"][:-2] + "-1"
    assert rows[originals]["customerID"] != rows[0]["customerID"]
    assert {row["DueDate"] for row in rows} == {"5/4/2031"}
    assert {row["SettledDate"] for row in rows} == {""}


def test_the_burst_step_falls_on_the_chosen_instant_for_every_invoice() -> None:
    at = datetime(2031, 5, 4, 3, 30, 5, tzinfo=UTC)  # 23:30 the day before in Santiago
    policy = burst_policy(
        at, due=date(2031, 6, 3), zone="America/Santiago", spread_minutes=0
    )

    plan = plan_case(
        policy,
        issue_date=date(2031, 5, 4),
        due_date=date(2031, 6, 3),
        time_zone="America/Santiago",
        spread_key="0000611365-0",
    )

    assert [(step.step_id, step.at) for step in plan] == [(BURST_STEP, at)]


@pytest.fixture(scope="module")
async def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, ScaleReport]:
    """Two tiny sizes, measured once and shared by the checks of their figures."""
    work_dir = tmp_path_factory.mktemp("scale")
    report = await run_scale_benchmark(
        sizes=SIZES, work_dir=work_dir, spread_minutes=1, trivial_runs=5
    )
    return work_dir, report


def test_every_size_imports_opens_and_reminds_each_invoice_once_per_tenant(
    tiny_run: tuple[Path, ScaleReport],
) -> None:
    work_dir, report = tiny_run

    assert [size.invoices for size in report.sizes] == list(SIZES)
    for size in report.sizes:
        assert (work_dir / f"n{size.invoices}" / DB_FILE_NAME).is_file()
        assert size.rows_imported == size.cases_opened == 2 * size.invoices
        for burst in (size.unspread, size.spread):
            assert burst.cases == burst.sends == size.invoices
            # Every case was open before its step fell due, and no send came early.
            assert burst.slack_seconds > 0
            assert 0 <= burst.median_lateness_seconds <= burst.max_lateness_seconds
            assert burst.span_seconds <= burst.drain_seconds


def test_rates_memory_and_sizes_are_measured_and_agree(
    tiny_run: tuple[Path, ScaleReport],
) -> None:
    _, report = tiny_run

    for size in report.sizes:
        for rate in (
            size.import_rows_per_second,
            size.case_starts_per_second,
            size.trivial_starts_per_second,
            size.trivial_completions_per_second,
        ):
            assert rate > 0
        assert size.cached_cases == size.invoices
        assert size.rss_before_kib is not None and size.rss_after_kib is not None
        assert size.store_bytes > 0 and size.server_db_bytes > 0
        assert size.server_bytes_per_case == size.server_db_bytes / size.cases_opened
    smaller, larger = report.sizes
    assert larger.store_bytes >= smaller.store_bytes


def test_the_report_renders_as_a_table_and_as_json(
    tiny_run: tuple[Path, ScaleReport],
) -> None:
    _, report = tiny_run

    table = report.to_markdown()
    assert table.startswith("| Figure | N = 3 | N = 6 |")
    assert "| Burst, no spread: sends | 3 of 3 | 6 of 6 |" in table
    assert "| Burst, spread 1 min: sends | 3 of 3 | 6 of 6 |" in table
    figures = json.loads(json.dumps(report.as_dict()))
    assert [d["invoices"] for d in figures["derived"]] == list(SIZES)
    assert figures["sizes"][1]["spread"]["sends"] == 6
    assert figures["derived"][0]["case_starts_per_second"] == pytest.approx(
        report.sizes[0].case_starts_per_second
    )


async def test_sizes_must_be_above_zero(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sizes"):
        await run_scale_benchmark(sizes=[0], work_dir=tmp_path)


async def test_a_size_run_unspread_only_imports_opens_and_reminds_one_tenant(
    tmp_path: Path,
) -> None:
    report = await run_scale_benchmark(
        sizes=[4], work_dir=tmp_path, trivial_runs=3, spread_burst=False
    )

    (size,) = report.sizes
    assert size.rows_imported == size.cases_opened == size.unspread.sends == 4
    assert size.spread is None
    assert "| Burst, spread 5 min: sends | not run |" in report.to_markdown()
    assert report.as_dict()["derived"][0]["spread_sends_per_second"] is None
