"""A local Twilio Messages API (2010-04-01), held to the official OpenAPI document."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from tests.fakes.contract import Answer, ContractFake, RecordedRequest

SPEC = Path("specs/twilio/twilio_api_v2010_messages_only_DERIVED.json")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
OUTSIDE_WINDOW = (
    "Failed to send freeform message because you are outside the allowed window. "
    "If you are using WhatsApp, please use a Message Template."
)


def twilio_errors(status: int, code: int, message: str) -> Answer:
    """Twilio's error answer: ``code``, ``message``, ``more_info`` and ``status``."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Answer(status, body)


class FakeTwilio(ContractFake):
    """Creates queued messages; knows which numbers opted out or have a WhatsApp session."""

    provider = "twilio"

    def __init__(self, shared_dir: Path) -> None:
        super().__init__(shared_dir / SPEC)
        self.opted_out: set[str] = set()  # numbers that replied STOP, as "+569..."
        self.whatsapp_sessions: set[str] = set()  # numbers that wrote in the last 24 h
        self.created: list[dict[str, Any]] = []  # every message resource, oldest first

    def messages(self) -> list[dict[str, str]]:
        """The form fields of every message creation received, one value per field."""
        return [
            {name: values[-1] for name, values in request.form().items()}
            for request in self.requests
            if request.method == "POST"
        ]

    def lookups(self) -> list[RecordedRequest]:
        """Every message list request received."""
        return [request for request in self.requests if request.method == "GET"]

    def rule_problems(self, request: RecordedRequest) -> list[str]:
        """What Twilio refuses on every request although the document allows it."""
        problems = _auth_problems(request)
        if request.method != "POST" or request.content_type.endswith("json"):
            return problems
        fields = {name: values[-1] for name, values in request.form().items()}
        if not any(fields.get(name) for name in ("Body", "ContentSid", "MediaUrl")):
            problems.append("21602: one of Body, ContentSid or MediaUrl is required")
        if not {"From", "MessagingServiceSid"} & fields.keys():
            problems.append("21603: From or MessagingServiceSid is required")
        if "ContentVariables" in fields:
            problems.extend(_content_variables_problems(fields))
        to_whatsapp = fields.get("To", "").startswith("whatsapp:")
        # The document asks for E.164 in words only (format: phone-number).
        if not _E164.match(fields.get("To", "").removeprefix("whatsapp:")):
            problems.append("21211: To is not a phone number in E.164 (+56912345678)")
        if "From" in fields and fields["From"].startswith("whatsapp:") != to_whatsapp:
            problems.append("63007: From and To must both be, or both not be, WhatsApp")
        return problems

    def refusal(self, request: RecordedRequest) -> Answer | None:
        """Opted-out recipients, and WhatsApp free text outside a session."""
        if request.method != "POST":
            return None
        fields = {name: values[-1] for name, values in request.form().items()}
        number = fields["To"].removeprefix("whatsapp:")
        if number in self.opted_out:
            return twilio_errors(
                400, 21610, "Attempt to send to unsubscribed recipient"
            )
        is_whatsapp = fields["To"].startswith("whatsapp:")
        free_text = "ContentSid" not in fields
        if is_whatsapp and free_text and number not in self.whatsapp_sessions:
            return twilio_errors(400, 63016, OUTSIDE_WINDOW)
        return None

    def accept(self, request: RecordedRequest) -> Answer:
        """201 with a queued message resource, or an empty page for a list request."""
        account = _account_of(request)
        if request.method == "GET":
            return self._listing(request)
        fields = {name: values[-1] for name, values in request.form().items()}
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        body = {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": None,  # counted by Twilio once the message is encoded
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"
            },
            "to": fields["To"],
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        with self._lock:
            self.created.append(body)
        return Answer(201, body)

    def _listing(self, request: RecordedRequest) -> Answer:
        """One page of messages, newest first, filtered by To and From as Twilio does."""
        wanted = {name: values[-1] for name, values in request.query.items()}
        page_size = int(wanted.get("PageSize", "50"))
        with self._lock:
            matching = [
                message
                for message in reversed(self.created)
                if wanted.get("To", message["to"]) == message["to"]
                and wanted.get("From", message["from"]) == message["from"]
            ]
        page = matching[:page_size]
        return Answer(
            200,
            {
                "messages": page,
                "page": 0,
                "page_size": page_size,
                "start": 0,
                "end": max(len(page) - 1, 0),
                "first_page_uri": request.path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": request.path,
            },
        )

    def invalid(self, problems: list[str]) -> Answer:
        """400 in Twilio's shape, with every problem in the message."""
        return twilio_errors(400, 21000, "Invalid request: " + "; ".join(problems))


def _account_of(request: RecordedRequest) -> str:
    match = _MESSAGES_PATH.match(request.path)
    return match.group("account") if match else ""


def _auth_problems(request: RecordedRequest) -> list[str]:
    """HTTP Basic with the account SID of the path as user name, as Twilio requires."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ["20003: Authorization is not HTTP Basic"]
    try:
        user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ["20003: Authorization is not valid base64 user:password"]
    if not password:
        return ["20003: no auth token in Authorization"]
    if user != _account_of(request):
        return ["20003: the user name is not the account SID of the path"]
    return []


def _content_variables_problems(fields: dict[str, str]) -> list[str]:
    problems = []
    if "ContentSid" not in fields:
        problems.append("ContentVariables given without ContentSid")
    try:
        variables = json.loads(fields["ContentVariables"])
    except ValueError:
        return [*problems, "21656: ContentVariables is not JSON"]
    if not isinstance(variables, dict) or not all(
        isinstance(value, str) for value in variables.values()
    ):
        problems.append("21656: ContentVariables must be a JSON object of strings")
    return problems
