"""Log output for the worker and the starter: plain text, or one JSON object per line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow

if TYPE_CHECKING:
    from receivables.ledger import ContactKey

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Every attribute a bare LogRecord has; whatever else a record carries came in `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime"}
# Temporal's loggers attach the run's identity as one dict under these keys.
_TEMPORAL_CONTEXTS = ("temporal_workflow", "temporal_activity")
# A field under one of these names would carry a debtor's personal data: it is dropped,
# so a careless `extra=` cannot put it in a log shipped to a shared log store.
_PERSONAL_FIELDS = frozenset(
    {"customer_name", "name", "email", "phone", "address", "recipient", "body"}
)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _TEMPORAL_CONTEXTS and isinstance(value, dict):
                entry.update(
                    (field, item)
                    for field, item in value.items()
                    if field not in _PERSONAL_FIELDS
                )
            elif key not in _RECORD_ATTRIBUTES and key not in _PERSONAL_FIELDS:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_handler(log_format: str, text_format: str = TEXT_FORMAT) -> logging.Handler:
    """A stderr handler writing ``log_format``: "json", or "text" laid out as ``text_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"DUNNING_LOG_FORMAT is {log_format!r}; set it to one of {', '.join(LOG_FORMATS)}"
        )
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLogFormatter() if log_format == "json" else logging.Formatter(text_format)
    )
    return handler


def configure_logging(
    log_format: str, level: int = logging.INFO, *, text_format: str = TEXT_FORMAT
) -> None:
    """Send every log record to stderr in ``log_format``, replacing earlier handlers."""
    handler = log_handler(log_format, text_format)
    if log_format == "json":
        # The run's ids go into fields of their own; repeated in the message they would
        # only make each line longer.
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
    logging.basicConfig(level=level, handlers=[handler], force=True)


def contact_fields(key: ContactKey, outcome: str, **more: Any) -> dict[str, Any]:
    """The structured fields of a log line about one contact: ids, never the recipient."""
    return {
        "tenant": key.tenant,
        "invoice": key.invoice_number,
        "step": key.step_id,
        "channel": key.channel,
        "outcome": outcome,
        **more,
    }
