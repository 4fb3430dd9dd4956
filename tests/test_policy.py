"""Policy files and segmentation: the shipped folder, errors that point at the fix, rules."""

from __future__ import annotations

import shutil
import textwrap
from datetime import time
from pathlib import Path

import pytest

from receivables.policy import (
    PolicyError,
    Segmentation,
    SegmentFacts,
    UnknownOutcome,
    choose_segment,
    load_policy_book,
    load_policy_file,
)

POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"

VALID_POLICY = """\
name: {name}
version: 1
description: A small policy for loader tests.
send_time: "09:00"
time_zone: America/Santiago
steps:
  - id: R-3
    offset_days: -3
    channel: email
    template: courtesy-before-due
  - id: R+1
    offset_days: 1
    channel: email
    template: overdue-first
"""

VALID_SEGMENTS = """\
version: 1
rules:
  - segment: b2b-large
    policy: basic
    min_amount: "5000000 CLP"
default_segment: b2b-standard
default_policy: basic
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write one YAML file of a policy folder."""
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def policy_folder(tmp_path: Path, segments: str | None = VALID_SEGMENTS) -> Path:
    """A folder with one valid policy named ``basic`` and, unless None, segments.yaml."""
    write(tmp_path, "basic.yaml", VALID_POLICY.format(name="basic"))
    if segments is not None:
        write(tmp_path, "segments.yaml", segments)
    return tmp_path


def policy_error(path: Path) -> PolicyError:
    """The error loading one policy file raises."""
    with pytest.raises(PolicyError) as raised:
        load_policy_file(path)
    return raised.value


def book_error(folder: Path) -> PolicyError:
    """The error loading a whole policy folder raises."""
    with pytest.raises(PolicyError) as raised:
        load_policy_book(folder)
    return raised.value


def test_the_shipped_policy_folder_loads() -> None:
    book = load_policy_book(POLICIES_DIR)

    assert set(book.policies) == {
        "consumer-health-education",
        "high-risk",
        "preventive-b2b",
    }
    assert book.segmentation.default_policy in book.policies
    assert {rule.policy for rule in book.segmentation.rules} <= set(book.policies)


def test_a_copy_of_the_shipped_folder_loads_from_anywhere(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, copy)

    assert load_policy_book(copy).policies == load_policy_book(POLICIES_DIR).policies


def test_a_policy_file_that_is_not_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "broken.yaml",
        """\
        name: broken
        steps:
          - id: R+1
           offset_days: 1
        """,
    )

    error = policy_error(path)

    assert error.file == str(path)
    assert error.field == "line 4"
    assert "not valid YAML" in error.reason


def test_an_unknown_time_zone_is_refused_with_its_name(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="zone").replace(
        "America/Santiago", "America/Santiagoo"
    )

    error = policy_error(write(tmp_path, "zone.yaml", text))

    assert error.field == "time_zone"
    assert "unknown IANA time zone 'America/Santiagoo'" in error.reason


def test_duplicate_step_ids_are_refused(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="twice").replace("id: R-3", "id: R+1")

    error = policy_error(write(tmp_path, "twice.yaml", text))

    assert error.field == "steps"
    assert "step id 'R+1' appears twice" in error.reason


def test_a_repeat_count_without_a_repeat_interval_names_the_step(
    tmp_path: Path,
) -> None:
    text = VALID_POLICY.format(name="repeat") + "    repeat_count: 3\n"

    error = policy_error(write(tmp_path, "repeat.yaml", text))

    assert error.field == "steps[1]"
    assert "repeat_count above 1 needs repeat_every_days" in error.reason


def test_an_out_of_range_offset_names_the_field_path(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="far").replace("offset_days: 1", "offset_days: 999")

    error = policy_error(write(tmp_path, "far.yaml", text))

    assert error.field == "steps[1].offset_days"
    assert "less than or equal to 730" in error.reason
    assert str(error) == f"{error.file}: steps[1].offset_days: {error.reason}"


def test_a_misspelt_field_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="typo") + "    fallback_chanels: [sms]\n"

    error = policy_error(write(tmp_path, "typo.yaml", text))

    assert error.field == "steps[1].fallback_chanels"
    assert "Extra inputs are not permitted" in error.reason


def test_a_field_written_twice_is_refused_rather_than_the_last_one_kept(
    tmp_path: Path,
) -> None:
    # A step edited by adding a line below the old one: YAML would keep 70 silently.
    text = VALID_POLICY.format(name="twice") + "    offset_days: 70\n"

    error = policy_error(write(tmp_path, "twice.yaml", text))

    assert error.field == "line 15"
    assert "key 'offset_days' appears twice (lines 12 and 15)" in error.reason


def test_a_policy_named_unlike_its_file_is_refused(tmp_path: Path) -> None:
    error = policy_error(
        write(tmp_path, "gentle.yaml", VALID_POLICY.format(name="strict"))
    )

    assert error.field == "name"
    assert error.reason == "is 'strict' but the file is gentle.yaml"


@pytest.mark.parametrize(
    ("original", "unquoted", "field"),
    [
        pytest.param(
            'send_time: "09:00"', "send_time: 10:00", "send_time", id="policy"
        ),
        pytest.param(
            "offset_days: 1\n",
            "offset_days: 1\n    send_time: 10:30\n",
            "steps[1].send_time",
            id="step",
        ),
    ],
)
def test_an_unquoted_send_time_is_refused_not_read_as_seconds(
    tmp_path: Path, original: str, unquoted: str, field: str
) -> None:
    # YAML 1.1 reads 10:00 as the number 600; taken as seconds it would be 00:10.
    text = VALID_POLICY.format(name="clock").replace(original, unquoted)

    error = policy_error(write(tmp_path, "clock.yaml", text))

    assert error.field == field
    assert "write it in quotes" in error.reason


def test_a_quoted_send_time_is_a_local_wall_clock(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="clock").replace('"09:00"', '"10:00"')

    policy = load_policy_file(write(tmp_path, "clock.yaml", text))

    assert policy.send_time == time(10, 0)
    assert policy.send_time.tzinfo is None


def test_segments_pointing_at_an_unknown_policy_name_the_rule(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path, VALID_SEGMENTS.replace("policy: basic", "policy: basik")
    )

    error = book_error(folder)

    assert error.file == str(folder / "segments.yaml")
    assert error.field == "rules[0].policy"
    assert error.reason == "no policy 'basik' (known: basic)"


def test_a_default_policy_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path, VALID_SEGMENTS.replace("default_policy: basic", "default_policy: x")
    )

    assert book_error(folder).field == "default_policy"


def test_a_folder_without_segments_yaml_is_refused(tmp_path: Path) -> None:
    folder = policy_folder(tmp_path, segments=None)

    error = book_error(folder)

    assert error.file == str(folder / "segments.yaml")
    assert error.field == "(file)"
    assert "missing" in error.reason


def test_an_amount_threshold_without_currency_is_refused(tmp_path: Path) -> None:
    folder = policy_folder(
        tmp_path, VALID_SEGMENTS.replace('"5000000 CLP"', '"5000000"')
    )

    error = book_error(folder)

    assert error.field == "rules[0].min_amount"
    assert "must be an amount and a currency" in error.reason


def test_an_invalid_policy_in_a_folder_names_its_own_file(tmp_path: Path) -> None:
    folder = policy_folder(tmp_path)
    bad = write(folder, "other.yaml", VALID_POLICY.format(name="another"))

    error = book_error(folder)

    assert error.file == str(bad)
    assert error.field == "name"


def segmentation(*rules: dict[str, object]) -> Segmentation:
    """Segmentation rules as segments.yaml would state them, with a default."""
    return Segmentation.model_validate(
        {
            "version": 1,
            "rules": list(rules),
            "default_segment": "standard",
            "default_policy": "standard-policy",
        }
    )


def facts(
    amount_minor: int = 1_000_000,
    currency: str = "CLP",
    customer_type: str = "company",
    average_days_late: float | None = 0.0,
    broken_promises: int = 0,
) -> SegmentFacts:
    """What segmentation knows about one invoice."""
    return SegmentFacts(
        amount_minor, currency, customer_type, average_days_late, broken_promises
    )


def test_the_first_matching_rule_wins() -> None:
    rules = segmentation(
        {"segment": "late", "policy": "p-late", "min_average_days_late": 10},
        {"segment": "company", "policy": "p-company", "customer_types": ["company"]},
    )

    assert choose_segment(rules, facts(average_days_late=12)) == ("late", "p-late")
    assert choose_segment(rules, facts(average_days_late=3)) == (
        "company",
        "p-company",
    )


def test_nothing_matching_falls_back_to_the_default() -> None:
    rules = segmentation(
        {"segment": "care", "policy": "p-care", "customer_types": ["health"]}
    )

    assert choose_segment(rules, facts()) == ("standard", "standard-policy")


@pytest.mark.parametrize(
    ("amount_minor", "segment"),
    [
        (4_999_999, "standard"),
        (5_000_000, "large"),
        (9_999_999, "large"),
        (10_000_000, "standard"),
    ],
)
def test_the_lower_amount_bound_is_inclusive_and_the_upper_exclusive(
    amount_minor: int, segment: str
) -> None:
    rules = segmentation(
        {
            "segment": "large",
            "policy": "p-large",
            "min_amount": "5000000 CLP",
            "max_amount": "10000000 CLP",
        }
    )

    assert choose_segment(rules, facts(amount_minor))[0] == segment


def test_an_amount_bound_never_matches_another_currency() -> None:
    rules = segmentation(
        {"segment": "large", "policy": "p-large", "min_amount": "5000 USD"}
    )

    assert choose_segment(rules, facts(600_000, "USD"))[0] == "large"
    assert choose_segment(rules, facts(600_000_000, "CLP"))[0] == "standard"


def test_a_customer_without_history_matches_no_days_late_bound() -> None:
    rules = segmentation(
        {"segment": "late", "policy": "p-late", "min_average_days_late": 10},
        {"segment": "punctual", "policy": "p-ok", "max_average_days_late": 2},
    )

    assert choose_segment(rules, facts(average_days_late=None))[0] == "standard"
    assert choose_segment(rules, facts(average_days_late=1.5))[0] == "punctual"


def test_broken_promises_count_from_the_rule_s_minimum() -> None:
    rules = segmentation(
        {"segment": "unreliable", "policy": "p-late", "min_broken_promises": 2},
    )

    assert choose_segment(rules, facts(broken_promises=1))[0] == "standard"
    assert choose_segment(rules, facts(broken_promises=2))[0] == "unreliable"
    assert choose_segment(rules, facts(average_days_late=None, broken_promises=3))[
        0
    ] == ("unreliable")


@pytest.mark.parametrize("bound", ["0", "-1", "many"])
def test_a_broken_promise_bound_must_be_a_positive_count(
    tmp_path: Path, bound: str
) -> None:
    rule = f"    min_broken_promises: {bound}\n"
    folder = policy_folder(
        tmp_path,
        VALID_SEGMENTS.replace("    policy: basic\n", "    policy: basic\n" + rule, 1),
    )

    error = book_error(folder)

    assert error.file == str(folder / "segments.yaml")
    assert error.field == "rules[0].min_broken_promises"


@pytest.mark.parametrize(
    ("invoice", "segment", "policy_name"),
    [
        (facts(average_days_late=15), "high-risk", "high-risk"),
        (facts(average_days_late=0, broken_promises=2), "high-risk", "high-risk"),
        (
            facts(amount_minor=5_000_000, broken_promises=1),
            "b2b-large",
            "preventive-b2b",
        ),
        (
            facts(customer_type="health"),
            "consumer-health-education",
            "consumer-health-education",
        ),
        (facts(amount_minor=5_000_000), "b2b-large", "preventive-b2b"),
        (
            facts(amount_minor=4_999_999, average_days_late=None),
            "b2b-standard",
            "preventive-b2b",
        ),
    ],
)
def test_the_shipped_segments_choose_the_policy_of_each_kind_of_invoice(
    invoice: SegmentFacts, segment: str, policy_name: str
) -> None:
    book = load_policy_book(POLICIES_DIR)

    chosen_segment, policy = book.policy_for(invoice)

    assert chosen_segment == segment
    assert policy is book.policies[policy_name]


def test_delivery_settings_load_and_default_to_resend_without_transliteration(
    tmp_path: Path,
) -> None:
    plain = load_policy_file(
        write(tmp_path, "plain.yaml", VALID_POLICY.format(name="plain"))
    )
    text = VALID_POLICY.format(name="careful").replace(
        "steps:",
        "on_unknown_outcome: hold\nsms_transliterate: [creditor_name, customer_name]\n"
        "steps:",
    )

    careful = load_policy_file(write(tmp_path, "careful.yaml", text))

    assert (plain.on_unknown_outcome, plain.sms_transliterate) == (
        UnknownOutcome.RESEND,
        (),
    )
    assert careful.on_unknown_outcome is UnknownOutcome.HOLD
    assert careful.sms_transliterate == ("creditor_name", "customer_name")


def test_shipped_consumer_policy_holds_a_cut_off_email_and_b2b_resends_it() -> None:
    policies = load_policy_book(POLICIES_DIR).policies

    outcomes = {name: policy.on_unknown_outcome for name, policy in policies.items()}

    assert outcomes == {
        "consumer-health-education": UnknownOutcome.HOLD,
        "high-risk": UnknownOutcome.HOLD,
        "preventive-b2b": UnknownOutcome.RESEND,
    }


def test_shipped_policies_never_respell_a_persons_name_in_sms() -> None:
    policies = load_policy_book(POLICIES_DIR).policies

    folded = {name: set(policy.sms_transliterate) for name, policy in policies.items()}

    assert all("contact_name" not in fields for fields in folded.values())
    assert "customer_name" not in folded["consumer-health-education"]
    assert all("creditor_name" in fields for fields in folded.values())


def test_an_unknown_outcome_choice_is_refused_with_the_choices(tmp_path: Path) -> None:
    text = VALID_POLICY.format(name="vague").replace(
        "steps:", "on_unknown_outcome: retry\nsteps:"
    )

    error = policy_error(write(tmp_path, "vague.yaml", text))

    assert error.field == "on_unknown_outcome"
    assert "'resend' or 'hold'" in error.reason and error.file.endswith("vague.yaml")


def test_a_field_that_cannot_be_transliterated_is_named_with_its_position(
    tmp_path: Path,
) -> None:
    text = VALID_POLICY.format(name="folds").replace(
        "steps:", "sms_transliterate: [creditor_name, due_date]\nsteps:"
    )

    error = policy_error(write(tmp_path, "folds.yaml", text))

    assert error.field == "sms_transliterate[1]"
    assert "'creditor_name'" in error.reason and "fix the file" in error.reason
