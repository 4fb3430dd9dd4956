"""A local SendGrid v3 mail send, held to the official OpenAPI document."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.fakes.contract import Answer, ContractFake, RecordedRequest

SPEC = Path("specs/sendgrid/sendgrid_mail_send_v3_DERIVED_inlined.json")


def sendgrid_errors(status: int, message: str, field: str | None = None) -> Answer:
    """SendGrid's error answer: ``{"errors": [{"message": ..., "field": ...}]}``."""
    error: dict[str, str | None] = {"message": message}
    if field is not None:
        error["field"] = field
    return Answer(status, {"errors": [error]})


class FakeSendGrid(ContractFake):
    """Accepts valid mail with 202 and an ``X-Message-Id``, as SendGrid does."""

    provider = "sendgrid"

    def __init__(self, shared_dir: Path) -> None:
        super().__init__(shared_dir / SPEC)
        self.message_ids: list[str] = []

    def rule_problems(self, request: RecordedRequest) -> list[str]:
        """SendGrid keys travel as a bearer token; the document only says "a header"."""
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or len(authorization) <= len(
            "Bearer "
        ):
            return ["Authorization is not 'Bearer <API key>'"]
        return []

    def accept(self, request: RecordedRequest) -> Answer:
        """202 with no body; the id is what the event webhook later reports."""
        message_id = secrets.token_urlsafe(16)
        self.message_ids.append(message_id)
        return Answer(202, None, {"X-Message-Id": message_id})

    def invalid(self, problems: list[str]) -> Answer:
        """400 with one error per problem, in SendGrid's shape."""
        return Answer(400, {"errors": [{"message": problem} for problem in problems]})
