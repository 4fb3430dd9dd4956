"""A contact decision as a supervisor reads it: the deciding rule and why, the rest counted."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from receivables.planning import format_local

# The contact gate writes every decision as "<verdict>[ until <UTC instant>]: <reason>
# [rules: <every rule evaluated>]" into the ledger and the case's timeline. Those texts
# stay as written for auditors; only the case view shortens them.
_TRACE = re.compile(
    r"(?P<verdict>allow|defer|deny)"
    r"(?: until (?P<until>\d{4}-\d\d-\d\dT\d\d:\d\dZ))?: "
    r"(?P<reason>.*?) \[rules: (?P<rules>[^\]]*)\]"
)
VERDICT_WORDS = {"allow": "allowed", "defer": "deferred", "deny": "denied"}
# Other rules that also stood in the way are named up to this many, then counted.
MAX_OTHER_RULES_NAMED = 3


def brief_decisions(text: str, time_zone: str) -> str:
    """``text`` with each decision trace in it cut to the deciding rule, times local."""
    return _TRACE.sub(lambda match: _brief(match, time_zone), text)


def _brief(match: re.Match[str], time_zone: str) -> str:
    evaluated = [rule.strip() for rule in match["rules"].split(",") if rule.strip()]
    verdict = VERDICT_WORDS[match["verdict"]]
    if match["until"]:
        instant = datetime.strptime(match["until"], "%Y-%m-%dT%H:%MZ")
        verdict += f" to {format_local(instant.replace(tzinfo=UTC), time_zone)}"
    deciding, *others = _reason_parts(match["reason"], evaluated)
    deciding_rule = _rule_named(deciding, evaluated)
    also = list(
        dict.fromkeys(
            rule
            for part in others
            if (rule := _rule_named(part, evaluated)) and rule != deciding_rule
        )
    )
    notes = []
    if also:
        shown = also[:MAX_OTHER_RULES_NAMED]
        more = len(also) - len(shown)
        notes.append("also " + ", ".join(shown) + (f" and {more} more" if more else ""))
    count = len(evaluated)
    if count:
        notes.append(f"{count} rule{'' if count == 1 else 's'} checked")
    return f"{verdict}: {deciding}" + (f" ({'; '.join(notes)})" if notes else "")


def _reason_parts(reason: str, evaluated: list[str]) -> list[str]:
    """The reason split into one part per rule named; a piece naming none continues one."""
    # A single rule's reason may itself hold "; " (CL-B-05 does), so only a piece that
    # names a rule starts a new part.
    parts: list[str] = []
    for piece in reason.split("; "):
        if parts and _rule_named(piece, evaluated) is None:
            parts[-1] += f"; {piece}"
        else:
            parts.append(piece)
    return parts


def _rule_named(part: str, evaluated: list[str]) -> str | None:
    """The first rule id of ``evaluated`` that ``part`` names, as a word of its own."""
    found = [
        (hit.start(), rule)
        for rule in evaluated
        if (hit := re.search(rf"(?<![\w-]){re.escape(rule)}(?![\w-])", part))
    ]
    return min(found)[1] if found else None
