"""Real delivery: email through SendGrid, SMS and WhatsApp through Twilio."""

from receivables.providers.config import ProviderConfigError, provider_channels_from_env
from receivables.providers.errors import Failure, ProviderError
from receivables.providers.sendgrid_email import SendGridEmailChannel
from receivables.providers.sms_encoding import SmsCost, analyse_sms, transliterate
from receivables.providers.twilio_messaging import (
    TemplateCall,
    TwilioSmsChannel,
    TwilioWhatsAppChannel,
    twilio_client,
)

__all__ = [
    "Failure",
    "ProviderConfigError",
    "ProviderError",
    "SendGridEmailChannel",
    "SmsCost",
    "TemplateCall",
    "TwilioSmsChannel",
    "TwilioWhatsAppChannel",
    "analyse_sms",
    "provider_channels_from_env",
    "transliterate",
    "twilio_client",
]
