"""Which channels a replay sends through: its outbox, or providers it may safely reach."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from receivables.channels import MessageChannel
from receivables.providers.endpoints import (
    SENDGRID_HOST,
    TWILIO_API_BASE_URL,
    is_loopback_url,
)
from worker import default_channels

# The settings that make the worker send through a provider, and where each one sends.
SENDGRID_SETTINGS = ("SENDGRID_API_KEY",)
TWILIO_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


class ReplayChannelError(ValueError):
    """A replay asked to send through providers it must not, or cannot, reach."""


@dataclass(frozen=True)
class ProviderReplay:
    """Send a replay's reminders through the providers that ``env`` configures."""

    env: Mapping[str, str]
    # A replay sends a portfolio's whole history in minutes: to real debtors if the
    # providers are real. Only a person who says so explicitly may aim it beyond loopback.
    allow_remote: bool = False


@dataclass(frozen=True)
class ProviderEndpoint:
    """One configured provider and the base URL its requests go to."""

    provider: str
    setting: str
    url: str


def configured_endpoints(env: Mapping[str, str]) -> list[ProviderEndpoint]:
    """The providers ``env`` has credentials for, each with its effective base URL."""
    endpoints = []
    if _any_given(env, SENDGRID_SETTINGS):
        url = env.get("SENDGRID_HOST", "").strip() or SENDGRID_HOST
        endpoints.append(ProviderEndpoint("sendgrid", "SENDGRID_HOST", url))
    if _any_given(env, TWILIO_SETTINGS):
        url = env.get("TWILIO_API_BASE_URL", "").strip() or TWILIO_API_BASE_URL
        endpoints.append(ProviderEndpoint("twilio", "TWILIO_API_BASE_URL", url))
    return endpoints


def check_provider_replay(providers: ProviderReplay) -> list[ProviderEndpoint]:
    """The endpoints a replay will call; refuses none at all, or a remote one not allowed."""
    endpoints = configured_endpoints(providers.env)
    if not endpoints:
        raise ReplayChannelError(
            "--through-providers needs provider settings (SENDGRID_API_KEY and "
            "SENDGRID_FROM, or TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_SMS); "
            "none are set"
        )
    remote = [e for e in endpoints if not is_loopback_url(e.url)]
    if remote and not providers.allow_remote:
        named = ", ".join(f"{e.setting}={e.url}" for e in remote)
        raise ReplayChannelError(
            f"the replay would send real messages through {named}: point them at a local "
            "fake (127.0.0.1), or add --allow-remote-providers if you mean it"
        )
    return endpoints


def replay_channels(
    engine: Engine, providers: ProviderReplay | None
) -> dict[str, MessageChannel]:
    """The outbox for every channel unless providers are asked for and pass the check."""
    if providers is None:
        # Not the process environment: provider settings meant for the worker must not
        # turn an ordinary replay into a campaign.
        return default_channels(engine, env={})
    check_provider_replay(providers)
    return default_channels(engine, env=providers.env)


def _any_given(env: Mapping[str, str], names: tuple[str, ...]) -> bool:
    return any(env.get(name, "").strip() for name in names)
