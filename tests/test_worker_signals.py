"""worker.py stops on SIGINT and SIGTERM, promptly and cleanly, even with Temporal gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

import worker

REPO = Path(__file__).resolve().parents[1]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@asynccontextmanager
async def closable_port(target: str) -> AsyncIterator[str]:
    """A loopback port forwarding to ``target``, closed when the block ends.

    Closing it drops every connection and refuses new ones: to the worker, Temporal is gone.
    """
    host, _, port = target.rpartition(":")
    writers: list[asyncio.StreamWriter] = []

    async def forward(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            host, int(port)
        )
        writers.extend([writer, upstream_writer])
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
        )

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()


async def wait_for_text(log: Path, text: str, seconds: float) -> None:
    """Wait until the worker's output holds ``text``; fail with the output if it never does."""
    for _ in range(int(seconds * 4)):
        if text in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{text!r} never appeared; worker said:\n{log.read_text()}")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_the_worker_stops_on_a_signal_while_temporal_is_unreachable(
    local_env: WorkflowEnvironment, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    frontend = local_env.client.service_client.config.target_host
    log = tmp_path / "worker.log"
    async with closable_port(frontend) as address:
        env = os.environ | {
            "TEMPORAL_ADDRESS": address,
            "DUNNING_DATA_DIR": str(tmp_path),
            "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite'}",
            "DUNNING_TASK_QUEUE": f"signals-{uuid.uuid4().hex[:8]}",
        }
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            await wait_for_text(log, "worker polling", 60)
        except BaseException:
            process.kill()
            raise
    # The port is closed now: the worker's polls are refused and retried.
    try:
        await wait_for_text(log, "Connection refused", 60)
        process.send_signal(stop_signal)
        status = await asyncio.to_thread(
            process.wait, timeout=worker.SHUTDOWN_WAIT_SECONDS + 5
        )
    finally:
        if process.poll() is None:
            process.kill()
    said = log.read_text(errors="replace")

    assert status in (0, 1), said
    assert f"{stop_signal.name} received: the worker stops" in said
    assert "Traceback" not in said and "Fatal Python error" not in said, said


class StuckWorker:
    """A worker whose shutdown never completes, as when its polls retry a gone Temporal."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def shutdown(self) -> None:
        await asyncio.Event().wait()


async def test_a_stop_that_temporal_never_acknowledges_ends_after_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "SHUTDOWN_WAIT_SECONDS", 0.2)
    stop = asyncio.Event()
    stop.set()

    with pytest.raises(worker.WorkerStopTimedOut, match="did not answer within"):
        await asyncio.wait_for(worker._poll_until(StuckWorker(), stop), 5)  # type: ignore[arg-type]


async def test_a_stop_while_temporal_is_still_being_connected_ends_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A server that accepts the connection and never answers holds the SDK's connect for
    # about 30 s: longer than a service manager waits after its SIGTERM.
    async def never_answers(_: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(worker, "connect", never_answers)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_DATABASE_URL", f"sqlite:///{tmp_path / 'store.sqlite'}")
    stop = asyncio.Event()
    stop.set()

    await asyncio.wait_for(worker.run_worker(worker.load_settings(), stop), 5)
