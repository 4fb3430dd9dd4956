"""One shared thread heartbeats every activity inside a block, and none that has left it."""

from __future__ import annotations

import contextvars
import time

from temporalio.testing import ActivityEnvironment

from activities.heartbeat import SharedHeartbeats

EVERY_SECONDS = 0.05


def test_an_activity_is_heartbeaten_while_inside_and_never_after_it_left() -> None:
    beats = SharedHeartbeats(EVERY_SECONDS)
    env = ActivityEnvironment()
    received: list[float] = []
    env.on_heartbeat = lambda *details: received.append(time.monotonic())

    def long_provider_call() -> tuple[int, float]:
        ticket = beats.enter(contextvars.copy_context())
        time.sleep(8 * EVERY_SECONDS)  # blocked in a provider call: cannot beat itself
        beats.leave(ticket)
        return len(received), time.monotonic()

    beaten_inside, left_at = env.run(long_provider_call)
    time.sleep(4 * EVERY_SECONDS)

    assert beaten_inside >= 4
    assert received and all(instant <= left_at for instant in received)


def test_two_activities_at_once_are_each_heartbeaten() -> None:
    beats = SharedHeartbeats(EVERY_SECONDS)
    first, second = ActivityEnvironment(), ActivityEnvironment()
    counts = {"first": 0, "second": 0}

    def counter(name: str) -> object:
        return lambda *details: counts.__setitem__(name, counts[name] + 1)

    first.on_heartbeat = counter("first")
    second.on_heartbeat = counter("second")

    def inside(env: ActivityEnvironment) -> int:
        return beats.enter(contextvars.copy_context())

    tickets = [first.run(inside, first), second.run(inside, second)]
    time.sleep(6 * EVERY_SECONDS)
    for ticket in tickets:
        beats.leave(ticket)

    assert counts["first"] >= 3 and counts["second"] >= 3
