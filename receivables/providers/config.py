"""Provider channels from the environment; a channel without credentials is left out."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from receivables.channels import MessageChannel
from receivables.providers.endpoints import SENDGRID_HOST, TWILIO_API_BASE_URL
from receivables.providers.sendgrid_email import SendGridEmailChannel
from receivables.providers.twilio_messaging import (
    LastInboundLookup,
    TemplateChooser,
    TwilioSmsChannel,
    TwilioWhatsAppChannel,
    template_from_message,
    twilio_client,
)

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")


class ProviderConfigError(ValueError):
    """A provider setting that is missing, half given or malformed: names it and the fix."""


def provider_channels_from_env(
    env: Mapping[str, str],
    *,
    last_inbound_at: LastInboundLookup | None = None,
    choose_template: TemplateChooser | None = None,
) -> dict[str, MessageChannel] | None:
    """The email, sms and whatsapp channels the environment has credentials for, or None."""
    channels: dict[str, MessageChannel] = {}
    email = _sendgrid(env)
    if email is not None:
        channels["email"] = email
    if _given(env, "TWILIO_ACCOUNT_SID") or _given(env, "TWILIO_AUTH_TOKEN"):
        channels.update(_twilio(env, last_inbound_at, choose_template))
    return channels or None


def _sendgrid(env: Mapping[str, str]) -> SendGridEmailChannel | None:
    if not _given(env, "SENDGRID_API_KEY"):
        return None
    sender = _required(env, "SENDGRID_FROM", "the verified sender address")
    return SendGridEmailChannel(
        env["SENDGRID_API_KEY"].strip(),
        sender,
        sender_name=env.get("SENDGRID_FROM_NAME") or None,
        host=env.get("SENDGRID_HOST") or SENDGRID_HOST,
    )


def _twilio(
    env: Mapping[str, str],
    last_inbound_at: LastInboundLookup | None,
    choose_template: TemplateChooser | None,
) -> dict[str, MessageChannel]:
    account_sid = _required(env, "TWILIO_ACCOUNT_SID", "the account SID, AC...")
    if not _ACCOUNT_SID.match(account_sid):
        raise ProviderConfigError(
            "TWILIO_ACCOUNT_SID must be AC followed by 32 hex digits; copy it from the "
            "Twilio console"
        )
    token = _required(env, "TWILIO_AUTH_TOKEN", "the account's auth token")
    client = twilio_client(
        account_sid,
        token,
        base_url=env.get("TWILIO_API_BASE_URL") or TWILIO_API_BASE_URL,
    )
    callback = env.get("TWILIO_STATUS_CALLBACK") or None
    channels: dict[str, MessageChannel] = {}
    if _given(env, "TWILIO_FROM_SMS"):
        sender = env["TWILIO_FROM_SMS"].strip()
        channels["sms"] = TwilioSmsChannel(client, sender, status_callback=callback)
    if _given(env, "TWILIO_FROM_WHATSAPP"):
        channels["whatsapp"] = TwilioWhatsAppChannel(
            client,
            env["TWILIO_FROM_WHATSAPP"].strip(),
            content_sids=whatsapp_templates(env.get("TWILIO_WHATSAPP_TEMPLATES", "")),
            # Unknown inbound history means a closed window: templates only, never text.
            last_inbound_at=last_inbound_at or _never_wrote,
            choose_template=choose_template or template_from_message,
            status_callback=callback,
        )
    return channels


def whatsapp_templates(raw: str) -> dict[str, str]:
    """Parse TWILIO_WHATSAPP_TEMPLATES: a JSON object of template id to ContentSid."""
    if not raw.strip():
        return {}
    try:
        mapping = json.loads(raw)
    except ValueError as error:
        raise ProviderConfigError(
            f"TWILIO_WHATSAPP_TEMPLATES is not JSON ({error}); give an object such as "
            '{"overdue-first": "HX..."}'
        ) from None
    if not isinstance(mapping, dict):
        raise ProviderConfigError("TWILIO_WHATSAPP_TEMPLATES must be a JSON object")
    for template_id, sid in mapping.items():
        if not isinstance(sid, str) or not _CONTENT_SID.match(sid):
            raise ProviderConfigError(
                f"TWILIO_WHATSAPP_TEMPLATES[{template_id!r}] = {sid!r} is not a "
                "ContentSid (HX followed by 32 hex digits); copy it from Content Template "
                "Builder"
            )
    return {str(template_id): sid for template_id, sid in mapping.items()}


def _given(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    if not _given(env, name):
        raise ProviderConfigError(
            f"{name} is missing while other settings of its provider are given; "
            f"set it to {what} or remove the others"
        )
    return env[name].strip()


def _never_wrote(recipient: str) -> None:
    return None
