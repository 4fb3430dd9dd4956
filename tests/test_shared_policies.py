"""Decoded policies shared process-wide must never stand in for a different one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from receivables import policy as policy_module
from receivables.payloads import CASE_DATA_CONVERTER
from receivables.policy import Policy
from tests.case_helpers import policy_with_steps

EMAIL = {"id": "R+1", "offset_days": 1, "channel": "email", "template": "overdue-first"}
SMS = {"id": "R+1", "offset_days": 1, "channel": "sms", "template": "overdue-first"}


def round_trip(policy: Policy) -> Policy:
    converter = CASE_DATA_CONVERTER.payload_converter
    [decoded] = converter.from_payloads(converter.to_payloads([policy]), [Policy])
    assert isinstance(decoded, Policy)
    return decoded


def test_same_name_and_version_with_other_steps_stay_two_policies() -> None:
    by_email = policy_with_steps(EMAIL, name="same-name")
    by_sms = policy_with_steps(SMS, name="same-name")

    assert by_email is not by_sms
    assert round_trip(by_email).steps[0].channel == "email"
    assert round_trip(by_sms).steps[0].channel == "sms"
    assert round_trip(by_email) is by_email


def test_policies_differing_only_in_a_rule_are_not_merged() -> None:
    resend = policy_with_steps(EMAIL, name="rules")
    hold = policy_with_steps(EMAIL, name="rules", on_unknown_outcome="hold")
    spelt = policy_with_steps(EMAIL, name="rules", sms_transliterate=["creditor_name"])

    assert len({id(resend), id(hold), id(spelt)}) == 3
    assert round_trip(hold).on_unknown_outcome == "hold"
    assert round_trip(spelt).sms_transliterate == ("creditor_name",)


def test_a_policy_from_before_the_table_was_cleared_still_decodes_to_its_own_content() -> (
    None
):
    kept = policy_with_steps(EMAIL, name="before-clear")
    for n in range(policy_module.SHARED_POLICIES_LIMIT + 5):
        policy_with_steps(EMAIL, name=f"filler-{n}")

    again = round_trip(kept)

    assert again == kept and again.name == "before-clear"
    assert len(policy_module._SHARED_POLICIES) <= policy_module.SHARED_POLICIES_LIMIT


def test_many_threads_decoding_while_the_table_clears_get_their_own_policy() -> None:
    def decode(n: int) -> tuple[int, str]:
        decoded = policy_with_steps(EMAIL, name=f"thread-{n % 700}")
        return n, decoded.name

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(decode, range(5000)))

    assert all(name == f"thread-{n % 700}" for n, name in results)
