"""Where provider requests go: the real hosts, and the check that keeps credentials safe."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SENDGRID_HOST = "https://api.sendgrid.com"
TWILIO_API_BASE_URL = "https://api.twilio.com"


class EndpointError(ValueError):
    """A provider base URL that would leak credentials or cannot be a base URL."""


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback address of this machine, such as 127.0.0.1."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_base_url(url: str, setting: str) -> str:
    """Return the URL without its trailing slash; refuse plain http beyond loopback."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointError(
            f"{setting}={url!r} is not a base URL; give e.g. https://api.example.com"
        )
    if parts.query or parts.fragment:
        raise EndpointError(f"{setting}={url!r} has a query or fragment; remove it")
    # Basic auth and bearer keys travel in headers: in clear text only to this machine.
    if parts.scheme == "http" and not is_loopback_url(url):
        raise EndpointError(
            f"{setting}={url!r} uses plain http to another machine; use https"
        )
    return url.strip().rstrip("/")
