"""The benchmark: a tiny run on a real dev server reports figures that agree with each other."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from receivables.benchmark import (
    BILLABLE_EVENT_TYPES,
    FIRST_STEP,
    SECOND_STEP,
    BenchmarkReport,
    billable_actions,
    busy_seconds,
    run_benchmark,
    two_step_policy,
)
from receivables.devserver import DB_FILE_NAME
from receivables.planning import plan_case


def test_busy_time_counts_overlapping_work_once() -> None:
    intervals = [(10.0, 12.0), (11.0, 13.0), (20.0, 21.5), (12.5, 12.7)]

    assert busy_seconds(intervals) == 4.5
    assert busy_seconds([]) == 0.0


def test_billable_actions_count_only_the_billed_event_types() -> None:
    counts = {
        "WorkflowExecutionStarted": 1,
        "WorkflowTaskScheduled": 5,
        "TimerStarted": 2,
        "ActivityTaskScheduled": 2,
        "ActivityTaskCompleted": 2,
    }

    assert billable_actions(counts) == 5


def test_the_two_reminders_fall_on_the_chosen_instants_across_midnight() -> None:
    first_at = datetime(2031, 5, 4, 23, 59, 58, tzinfo=UTC)
    second_at = datetime(2031, 5, 5, 0, 0, 7, tzinfo=UTC)

    policy, due = two_step_policy(first_at, second_at)
    plan = plan_case(policy, issue_date=date(2031, 4, 4), due_date=due, time_zone="UTC")

    assert due == date(2031, 5, 4)
    assert [(step.step_id, step.at) for step in plan] == [
        (FIRST_STEP, first_at),
        (SECOND_STEP, second_at),
    ]


@pytest.fixture(scope="module")
async def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, BenchmarkReport]:
    """One small benchmark run, shared by the checks of its figures."""
    work_dir = tmp_path_factory.mktemp("bench")
    return work_dir, await run_benchmark(cases=5, work_dir=work_dir, cached_cases=4)


def test_a_tiny_run_reports_coherent_figures(
    tiny_run: tuple[Path, BenchmarkReport],
) -> None:
    work_dir, report = tiny_run

    assert (work_dir / DB_FILE_NAME).is_file()
    assert report.lifecycles_completed == 5
    assert report.reminders_sent == 10
    assert report.activities_per_lifecycle == 2
    for rate in (
        report.trivial_starts_per_second,
        report.trivial_completions_per_second,
        report.case_starts_per_second,
        report.lifecycles_per_second,
    ):
        assert rate > 0
    assert 0 < report.lifecycle_busy_seconds <= report.lifecycle_wall_seconds
    assert report.lifecycle_activities_per_second == 2 * report.lifecycles_per_second
    # The ceiling is the better of two trivial rounds, one before and one after the cases.
    assert len(report.trivial_rounds) == 2
    assert report.trivial_starts_per_second == max(r[0] for r in report.trivial_rounds)
    assert report.trivial_completions_per_second == max(
        r[1] for r in report.trivial_rounds
    )
    # The case rate is judged the same way: the cached cases' starts, then each round's.
    assert len(report.case_start_rounds) == 3
    assert all(rate > 0 for rate in report.case_start_rounds)
    assert report.case_starts_per_second == max(report.case_start_rounds)
    assert "Invoice case starts/s (best of " in report.to_markdown()
    # And the lifecycle side of its ratio: two rounds, the better one reported.
    assert len(report.lifecycle_rounds) == 2
    assert report.lifecycle_activities_per_second == pytest.approx(
        max(report.lifecycle_rounds)
    )
    assert "Lifecycle activities/s (× 2 per case) (best of " in report.to_markdown()
    assert report.cached_cases == 4
    assert report.rss_before_kib is not None and report.rss_after_kib is not None
    # The waiting workflows were read the same way, beside the cases, for the SDK's floor.
    assert report.waiting_rss_before_kib is not None
    assert report.waiting_rss_after_kib is not None
    # Four runs are within the noise of returning freed heap first: read, not ordered.
    assert report.waiting_rss_after_kib > 0 and report.waiting_rss_before_kib > 0


def test_the_typical_case_is_counted_from_a_real_history(
    tiny_run: tuple[Path, BenchmarkReport],
) -> None:
    _, report = tiny_run

    events = report.typical_case_events
    assert events["WorkflowExecutionStarted"] == 1
    assert events["ActivityTaskScheduled"] == 2
    assert events["WorkflowExecutionSignaled"] == 1
    assert events["WorkflowExecutionCompleted"] == 1
    assert report.history_events == sum(events.values())
    assert report.billable_actions == sum(
        count for name, count in events.items() if name in BILLABLE_EVENT_TYPES
    )


def test_the_report_renders_as_a_table_and_as_json(
    tiny_run: tuple[Path, BenchmarkReport],
) -> None:
    _, report = tiny_run

    table = report.to_markdown()
    assert table.startswith("| Metric | Value | Target | Met? |")
    assert f"| Billable actions, typical case | {report.billable_actions} |" in table
    assert "| ActivityTaskScheduled | 2 | 2 |" in table
    figures = json.loads(json.dumps(report.as_dict()))
    assert figures["billable_actions"] == report.billable_actions
    assert figures["reminders_sent"] == 10
