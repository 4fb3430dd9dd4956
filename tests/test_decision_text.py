"""The case view's short form of a contact decision, from traces the gate really writes."""

from __future__ import annotations

from datetime import UTC, datetime

from receivables.contact_gate import trace
from receivables.contact_rules import ContactDecision, Verdict
from receivables.decision_text import brief_decisions

CONSUMER_RULES = tuple(f"CL-C-{n:02d}" for n in range(1, 11))
SANTIAGO = "America/Santiago"


def test_a_deferral_names_its_deciding_rule_the_local_instant_and_counts_the_rest() -> (
    None
):
    decision = ContactDecision(
        Verdict.DEFER,
        datetime(2027, 1, 23, 11, 0, tzinfo=UTC),
        "CL-C-05 2 whole days needed after the written contact of 2027-01-20; "
        "CL-C-01 before 08:00 on Saturday 2027-01-23",
        CONSUMER_RULES,
        ("region unknown: the holidays of every CL region avoided",),
    )

    shown = brief_decisions(f"R+1 by email: {trace(decision)}", SANTIAGO)

    assert shown == (
        "R+1 by email: deferred to 2027-01-23 08:00 America/Santiago: CL-C-05 2 whole "
        "days needed after the written contact of 2027-01-20 (also CL-C-01; 10 rules "
        "checked); flags: region unknown: the holidays of every CL region avoided"
    )
    # The rules that were only evaluated are counted, not listed one by one.
    assert "CL-C-02" not in shown and "CL-C-10" not in shown


def test_a_denial_and_an_allowance_keep_their_reason_and_drop_the_rule_list() -> None:
    denied = ContactDecision(
        Verdict.DENY,
        None,
        "CL-C-10 lawsuit served: no contact after notice",
        (*CONSUMER_RULES[:3], "CL-C-10"),
    )
    allowed = ContactDecision(
        Verdict.ALLOW,
        datetime(2027, 1, 25, 13, 0, tzinfo=UTC),
        "lawful at the wanted instant",
        ("CL-B-01",),
    )

    assert brief_decisions(trace(denied), SANTIAGO) == (
        "denied: CL-C-10 lawsuit served: no contact after notice (4 rules checked)"
    )
    assert brief_decisions(trace(allowed), SANTIAGO) == (
        "allowed: lawful at the wanted instant (1 rule checked)"
    )


def test_a_reason_holding_a_semicolon_stays_whole_and_many_others_are_cut_short() -> (
    None
):
    others = "; ".join(f"{rule} blocked" for rule in CONSUMER_RULES[1:6])
    decision = ContactDecision(
        Verdict.DEFER,
        datetime(2026, 3, 9, 12, 0, tzinfo=UTC),
        "CL-C-01 the buyer may reclaim through 2026-03-08; dunning may start on "
        f"2026-03-09; {others}",
        CONSUMER_RULES,
    )

    shown = brief_decisions(trace(decision), SANTIAGO)

    assert shown.startswith(
        "deferred to 2026-03-09 09:00 America/Santiago: CL-C-01 the buyer may reclaim "
        "through 2026-03-08; dunning may start on 2026-03-09 (also CL-C-02, CL-C-03, "
        "CL-C-04 and 2 more; 10 rules checked)"
    )


def test_text_without_a_decision_is_left_as_it_is() -> None:
    for text in ("R+1 by email: sent", "quiet hours", "paused by sup-01 [rules]"):
        assert brief_decisions(text, SANTIAGO) == text
