"""Pytest fixtures for the provider fakes, and a guard that keeps tests on this machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.contract import ContractFake
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio
from tests.fakes.loopback import LeftThisMachine, is_loopback_host


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make any name lookup or connection beyond loopback fail the test at once."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        """Resolve loopback names only."""
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not is_loopback_host(name):
            attempts.append(name)
            raise LeftThisMachine(f"a test tried to resolve {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        """Connect internet sockets to loopback addresses only."""
        internet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if internet and not is_loopback_host(str(address[0])):
            attempts.append(str(address[0]))
            raise LeftThisMachine(f"a test tried to connect to {address[0]}")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield attempts
    # Some client code catches every exception: the record still fails the test.
    assert not attempts, f"tests tried to leave this machine: {attempts}"


def _serve(fake: ContractFake) -> Iterator[Any]:
    with fake:
        yield fake
    if fake.violations:
        pytest.fail(
            f"{fake.provider} contract violations:\n" + "\n".join(fake.violations),
            pytrace=False,
        )


@pytest.fixture
def fake_sendgrid(shared_dir: Path, loopback_only: list[str]) -> Iterator[FakeSendGrid]:
    """A SendGrid fake on 127.0.0.1; any request off the contract fails the test."""
    yield from _serve(FakeSendGrid(shared_dir))


@pytest.fixture
def fake_twilio(shared_dir: Path, loopback_only: list[str]) -> Iterator[FakeTwilio]:
    """A Twilio fake on 127.0.0.1; any request off the contract fails the test."""
    yield from _serve(FakeTwilio(shared_dir))
