"""Why a case holds its reminders, told in the debtor's time like the rest of the case."""

from __future__ import annotations

from datetime import UTC, datetime

from workflows.case_holds import ActivePromise, Pause, silence_reason

SINCE = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def test_a_pause_until_an_instant_names_the_debtors_wall_clock() -> None:
    pause = Pause(
        SINCE, datetime(2026, 12, 9, 3, 0, tzinfo=UTC), "sup-01", "call first"
    )

    reason = silence_reason(
        pause=pause,
        disputes={},
        whole_invoice_disputes=True,
        promise=None,
        contact_under_repair=False,
        time_zone="America/Santiago",
    )

    assert reason == (
        "paused by sup-01 until 2026-12-09 00:00 America/Santiago: call first"
    )


def test_a_promise_holds_reminders_until_its_deadline_in_the_debtors_time() -> None:
    promise = ActivePromise(
        500_000, datetime(2026, 12, 11, 21, 0, tzinfo=UTC), 0, SINCE
    )

    reason = silence_reason(
        pause=None,
        disputes={},
        whole_invoice_disputes=True,
        promise=promise,
        contact_under_repair=False,
        time_zone="America/Santiago",
    )

    assert reason == (
        "payment promised; reminders wait until 2026-12-11 18:00 America/Santiago"
    )
