"""What a jurisdiction forbids a message to say, checked on rendered templates."""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from receivables.jurisdictions import ContentRule, JurisdictionProfile, load_profile
from receivables.policy import PolicyBook

# The profiles a policy folder's policies name live in this subfolder of it.
JURISDICTIONS_FOLDER = "jurisdictions"

_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class BoundRule:
    """A content rule and the policy steps whose messages must obey it."""

    rule: ContentRule
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class ContentFinding:
    """Words of one template file that a content rule forbids."""

    file: Path
    rule: ContentRule
    found: tuple[str, ...]
    line: int | None
    used_by: tuple[str, ...]

    @property
    def problem(self) -> str:
        """What the file says and which rule forbids it."""
        words = ", ".join(f'"{word}"' for word in self.found)
        summary = self.rule.summary.rstrip(".")
        return f"says {words}, which {self.rule.id} forbids ({summary})"

    @property
    def fix(self) -> str:
        """What to do about it."""
        return (
            f"Reword it without those words ({self.rule.source}); wording that only "
            "some segments may read needs a template id that only their policies send"
        )


def fold(text: str) -> tuple[str, list[int]]:
    """Text in lower case without accents, and where each of its characters came from."""
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        decomposed = unicodedata.normalize("NFKD", char)
        bare = "".join(c for c in decomposed if not unicodedata.combining(c))
        for plain in bare.casefold():
            folded.append(plain)
            origin.append(index)
    return "".join(folded), origin


@functools.lru_cache(maxsize=1024)
def _pattern(phrase: str) -> re.Pattern[str]:
    words = fold(phrase.rstrip("*"))[0].split()
    body = r"\s+".join(re.escape(word) for word in words)
    tail = r"\w*" if phrase.endswith("*") else ""
    # Whole words only: "extrajudicial" is not "judicial*", "courtesy" is not "court".
    return re.compile(rf"(?<!\w){body}{tail}(?!\w)")


def _spans(folded: str, phrases: Sequence[str]) -> list[tuple[int, int]]:
    return [m.span() for p in phrases for m in _pattern(p).finditer(folded)]


def find_phrases(text: str, rule: ContentRule) -> tuple[str, ...]:
    """The words of a text that match the rule's phrases, as written, in text order."""
    folded, origin = fold(text)
    allowed = _spans(folded, rule.allowed)
    found: dict[str, None] = {}
    reached = 0
    # Earliest first and longest first, so "orden judicial" hides its own "judicial".
    for start, end in sorted(_spans(folded, rule.phrases), key=lambda s: (s[0], -s[1])):
        if end <= reached or any(a <= start and end <= b for a, b in allowed):
            continue
        reached = end
        written = text[origin[start] : origin[end - 1] + 1]
        found.setdefault(" ".join(written.split()), None)
    return tuple(found)


def visible_text(text: str, is_html: bool) -> str:
    """The words a reader sees: HTML loses its tags and entities, plain text is as is."""
    return html.unescape(_TAG.sub(" ", text)) if is_html else text


def _source_line(file: Path, rule: ContentRule) -> int | None:
    """The first line of the file that says a forbidden word; None when a layout does."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next(
        (number for number, line in enumerate(lines, 1) if find_phrases(line, rule)),
        None,
    )


def check_message(
    file: Path, text: str, bound: Sequence[BoundRule]
) -> list[ContentFinding]:
    """Check one rendered file against every content rule bound to it."""
    visible = visible_text(text, is_html=file.name.endswith(".html.j2"))
    findings = []
    for binding in bound:
        found = find_phrases(visible, binding.rule)
        if found:
            line = _source_line(file, binding.rule)
            findings.append(
                ContentFinding(file, binding.rule, found, line, binding.used_by)
            )
    return findings


def customer_types_by_policy(book: PolicyBook) -> dict[str, frozenset[str] | None]:
    """The customer types segmentation may route to each policy; None when any may come."""
    segmentation = book.segmentation
    routes = [(rule.policy, rule.customer_types) for rule in segmentation.rules]
    routes.append((segmentation.default_policy, None))
    # A policy no route names may still be pinned or replayed on any debt.
    types: dict[str, set[str] | None] = {
        name: set() if name in {policy for policy, _ in routes} else None
        for name in book.policies
    }
    for policy, kinds in routes:
        reached = types[policy]
        if kinds is None:
            types[policy] = None
        elif reached is not None:
            reached.update(kinds)
    return {
        name: None if kinds is None else frozenset(kinds)
        for name, kinds in types.items()
    }


def _binds(rule: ContentRule, kinds: frozenset[str] | None, today: date) -> bool:
    # A rule not yet in force still binds: templates outlive the wait for it.
    ended = rule.effective_to is not None and rule.effective_to <= today
    reaches = (
        not rule.customer_types
        or kinds is None
        or bool(kinds & set(rule.customer_types))
    )
    return bool(rule.phrases) and reaches and not ended


def content_rules_by_policy(
    book: PolicyBook, jurisdictions_dir: Path, today: date
) -> dict[str, tuple[ContentRule, ...]]:
    """The phrase rules each policy's messages must obey, from its jurisdiction profile."""
    # Limit: only rules that list phrases are checked. A check such as
    # no_third_party_disclosure or no_collection_costs_before_day needs the send itself
    # (who is addressed, the day past due), so it is left to the code that sends.
    kinds_of = customer_types_by_policy(book)
    profiles: dict[str, JurisdictionProfile] = {}
    rules: dict[str, tuple[ContentRule, ...]] = {}
    for name, policy in book.policies.items():
        if policy.jurisdiction is None:
            rules[name] = ()
            continue
        if policy.jurisdiction not in profiles:
            profiles[policy.jurisdiction] = load_profile(
                policy.jurisdiction, folder=jurisdictions_dir
            )
        rules[name] = tuple(
            rule
            for rule in profiles[policy.jurisdiction].rules_of(ContentRule)
            if _binds(rule, kinds_of[name], today)
        )
    return rules


def bind_rules(
    users: Sequence[tuple[str, str]], rules_of: Mapping[str, tuple[ContentRule, ...]]
) -> tuple[BoundRule, ...]:
    """The content rules one template use must obey, given its (policy, step) users."""
    bound: dict[str, tuple[ContentRule, list[str]]] = {}
    for policy, label in users:
        for rule in rules_of.get(policy, ()):
            bound.setdefault(rule.id, (rule, []))[1].append(label)
    return tuple(BoundRule(rule, tuple(labels)) for rule, labels in bound.values())
