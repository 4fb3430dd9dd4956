"""What counts as this machine, for the guard that keeps provider tests off the network."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class LeftThisMachine(AssertionError):
    """A test tried to resolve or reach an address that is not loopback."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback IP address."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
