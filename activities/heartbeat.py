"""Heartbeats from a side thread, so the server notices a dead worker within seconds."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

# The send activity's heartbeat timeout is a few of these; a provider call blocks the
# activity's own thread for up to its client timeout, so it cannot heartbeat itself.
HEARTBEAT_EVERY_SECONDS = 2.0


@contextmanager
def heartbeating(every_seconds: float = HEARTBEAT_EVERY_SECONDS) -> Iterator[None]:
    """Heartbeat while the block runs: a beat says the worker lives, not that a call moves.

    The start-to-close timeout still bounds a call that hangs; the heartbeat timeout only
    shortens the wait after the worker process itself died.
    """
    stop = threading.Event()
    # The activity's context lives in a context variable of this thread; the side thread
    # heartbeats in a copy of it. The SDK hands threaded heartbeats to its loop safely.
    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(every_seconds):
            context.run(activity.heartbeat)

    beater = threading.Thread(target=beat, name="send-heartbeat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()
