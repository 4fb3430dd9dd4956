"""Heartbeats from a side thread, so the server notices a dead worker within seconds."""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

# The send activity's heartbeat timeout is a few of these; a provider call blocks the
# activity's own thread for up to its client timeout, so it cannot heartbeat itself.
HEARTBEAT_EVERY_SECONDS = 2.0


class SharedHeartbeats:
    """One daemon thread that heartbeats every activity inside a ``heartbeating`` block.

    Most sends finish in milliseconds, long before a first beat is due; a thread of their
    own, started and joined for each, cost more CPU than the send's store writes (about
    0.1 ms each, measured). Registering in a dict costs next to nothing.
    """

    def __init__(self, every_seconds: float) -> None:
        self._every_seconds = every_seconds
        self._running: dict[int, contextvars.Context] = {}
        self._tickets = itertools.count()
        # Held while beating and while leaving, so no beat reaches an activity that has
        # left its block (the SDK would be told of an activity that already finished).
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def enter(self, context: contextvars.Context) -> int:
        with self._lock:
            ticket = next(self._tickets)
            self._running[ticket] = context
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat_forever, name="activity-heartbeats", daemon=True
                )
                self._thread.start()
        return ticket

    def leave(self, ticket: int) -> None:
        with self._lock:
            del self._running[ticket]

    def _beat_forever(self) -> None:
        # A block entered just before a beat is beaten early: a beat says the worker
        # lives, so an early one is as true as a late one.
        while True:
            time.sleep(self._every_seconds)
            with self._lock:
                for context in self._running.values():
                    context.run(activity.heartbeat)


_HEARTBEATS = SharedHeartbeats(HEARTBEAT_EVERY_SECONDS)


@contextmanager
def heartbeating() -> Iterator[None]:
    """Heartbeat while the block runs: a beat says the worker lives, not that a call moves.

    The start-to-close timeout still bounds a call that hangs; the heartbeat timeout only
    shortens the wait after the worker process itself died.
    """
    # The activity's context lives in a context variable of this thread; the side thread
    # heartbeats in a copy of it. The SDK hands threaded heartbeats to its loop safely.
    ticket = _HEARTBEATS.enter(contextvars.copy_context())
    try:
        yield
    finally:
        _HEARTBEATS.leave(ticket)
