"""Content rules of the jurisdictions, checked by the template lint on rendered messages."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from receivables.content_lint import (
    content_rules_by_policy,
    customer_types_by_policy,
    find_phrases,
    visible_text,
)
from receivables.jurisdictions import (
    ContentRule,
    JurisdictionError,
    TenantOverlay,
    apply_overlay,
    load_jurisdictions,
    load_profile,
)
from receivables.messages import (
    LintProblem,
    format_lint_report,
    lint_samples,
    lint_templates,
    render_message,
)
from receivables.policy import load_policy_book

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = PROJECT / "templates" / "messages"
POLICIES = PROJECT / "policies"
JURISDICTIONS = POLICIES / "jurisdictions"
TODAY = date(2026, 4, 8)
CONSUMER_POLICY = "consumer-health-education"
LAWSUIT = " Si no paga, será demandado en el juzgado."
BULLETIN = " Informaremos su deuda a DICOM."
_RULE_ID = re.compile(r"which (\S+) forbids")


def consumer_rule(rule_id: str) -> ContentRule:
    """A content rule of the shipped cl.consumer profile."""
    profile = load_profile("cl.consumer", folder=JURISDICTIONS)
    return next(rule for rule in profile.rules_of(ContentRule) if rule.id == rule_id)


def reported_rules(problems: list[LintProblem], file: Path) -> dict[str, LintProblem]:
    """The content problems of one file, by the id of the rule each one names."""
    found = {}
    for problem in problems:
        named = _RULE_ID.search(problem.problem)
        if problem.file == file and named:
            found[named.group(1)] = problem
    return found


def say(file: Path, text: str) -> Path:
    """Make a template say more: inside its last block, else at the end; return it."""
    # An extending template renders only its blocks: text after the last one is dropped.
    source = file.read_text().rstrip("\n")
    end = "{% endblock %}"
    if source.endswith(end):
        file.write_text(source.removesuffix(end) + text + "\n" + end + "\n")
    else:
        file.write_text(source + text + "\n")
    return file


def sent_text(templates: Path, template_id: str) -> str:
    """The plain-text email body a template id renders in Spanish with lint data."""
    sample = lint_samples("es-CL")[0]
    return render_message(templates, template_id, "email", "es-CL", sample).body


def edit_yaml(path: Path, **changes: Any) -> None:
    """Rewrite top-level keys of a YAML file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**data, **changes}, allow_unicode=True))


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the policy book and its jurisdiction profiles."""
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A private copy of the shipped templates that a test may break."""
    copy = tmp_path / "messages"
    shutil.copytree(TEMPLATES, copy)
    return copy


def test_shipped_templates_obey_the_content_rules_bound_to_them() -> None:
    book = load_policy_book(POLICIES)
    bound = content_rules_by_policy(book, JURISDICTIONS, TODAY)
    problems = lint_templates(POLICIES, TEMPLATES)

    # The pass means something only while the consumer policy is bound to its rules.
    assert {rule.id for rule in bound[CONSUMER_POLICY]} == {
        "CL-C-21",
        "CL-C-23",
        "CL-C-24",
    }
    assert [p for p in problems if _RULE_ID.search(p.problem)] == []
    assert problems == [], format_lint_report(problems)


def test_court_wording_under_a_consumer_policy_is_reported(
    policies: Path, templates: Path
) -> None:
    # overdue-second is sent by consumer-health-education and by the B2B policies.
    broken = say(templates / "es-CL" / "overdue-second" / "email.txt.j2", LAWSUIT)

    problems = lint_templates(policies, templates)

    court = reported_rules(problems, broken)["CL-C-21"]
    lines = broken.read_text().splitlines()
    assert '"demandado", "juzgado"' in court.problem
    assert court.line and "juzgado" in lines[court.line - 1]
    assert court.fix
    assert court.used_by
    assert all(user.startswith(f"{CONSUMER_POLICY} ") for user in court.used_by)
    assert "CL-C-21" in format_lint_report(problems)


def test_bulletin_threat_in_a_health_education_template_is_reported(
    policies: Path, templates: Path
) -> None:
    # consumer-health-education sends overdue-first by SMS at R+1.
    broken = say(templates / "en" / "overdue-first" / "sms.txt.j2", BULLETIN)

    problems = lint_templates(policies, templates)

    reported = reported_rules(problems, broken)
    assert set(reported) == {"CL-C-23", "CL-C-24"}
    assert all('"DICOM"' in problem.problem for problem in reported.values())


def test_html_is_checked_on_the_words_a_reader_sees(
    policies: Path, templates: Path
) -> None:
    html = say(
        templates / "es-CL" / "courtesy-before-due" / "email.html.j2",
        "<p>Orden <b>judicial</b></p>",
    )

    problems = lint_templates(policies, templates)

    assert '"Orden judicial"' in reported_rules(problems, html)["CL-C-21"].problem


def test_template_sent_only_by_b2b_policies_may_mention_lawsuits_and_bulletins(
    policies: Path, templates: Path
) -> None:
    book = load_policy_book(policies)
    senders = {
        policy.jurisdiction
        for policy in book.policies.values()
        for step in policy.steps
        if step.template == "overdue-final"
    }
    assert senders == {"cl.b2b"}
    broken = say(
        templates / "es-CL" / "overdue-final" / "email.txt.j2", LAWSUIT + BULLETIN
    )

    problems = lint_templates(policies, templates)

    assert "juzgado" in sent_text(templates, "overdue-final")
    assert reported_rules(problems, broken) == {}


def test_the_same_words_under_a_b2b_jurisdiction_are_not_reported(
    policies: Path, templates: Path
) -> None:
    # Ley 19.496 protects consumers only: a business may be told of judicial collection
    # and of bulletin reporting, so cl.b2b declares no content rule.
    edit_yaml(policies / f"{CONSUMER_POLICY}.yaml", jurisdiction="cl.b2b")
    broken = say(
        templates / "es-CL" / "overdue-second" / "email.txt.j2", LAWSUIT + BULLETIN
    )

    problems = lint_templates(policies, templates)

    assert "DICOM" in sent_text(templates, "overdue-second")
    assert reported_rules(problems, broken) == {}
    assert problems == [], format_lint_report(problems)


@pytest.mark.parametrize(
    ("customer_types", "bulletin_rules"),
    [
        (["consumer"], set()),
        (["consumer", "health"], {"CL-C-24"}),
        (["consumer", "education"], {"CL-C-23"}),
        (None, {"CL-C-23", "CL-C-24"}),
    ],
)
def test_bulletin_rules_bind_policies_that_may_carry_their_debts(
    policies: Path,
    templates: Path,
    customer_types: list[str] | None,
    bulletin_rules: set[str],
) -> None:
    segments = policies / "segments.yaml"
    data = yaml.safe_load(segments.read_text(encoding="utf-8"))
    for rule in data["rules"]:
        if rule["policy"] == CONSUMER_POLICY:
            rule.pop("customer_types")
            if customer_types is not None:
                rule["customer_types"] = customer_types
    segments.write_text(yaml.safe_dump(data))
    broken = say(
        templates / "es-CL" / "overdue-second" / "email.txt.j2", LAWSUIT + BULLETIN
    )

    problems = lint_templates(policies, templates)

    assert set(reported_rules(problems, broken)) == {"CL-C-21", *bulletin_rules}


def test_a_policy_no_segment_names_may_carry_any_debt(policies: Path) -> None:
    data = yaml.safe_load((policies / "segments.yaml").read_text(encoding="utf-8"))
    data["rules"] = [r for r in data["rules"] if r["policy"] != CONSUMER_POLICY]
    (policies / "segments.yaml").write_text(yaml.safe_dump(data))

    kinds = customer_types_by_policy(load_policy_book(policies))

    assert kinds[CONSUMER_POLICY] is None
    assert kinds[data["default_policy"]] is None


def test_a_policy_naming_an_unknown_jurisdiction_stops_the_lint(
    policies: Path,
) -> None:
    edit_yaml(policies / f"{CONSUMER_POLICY}.yaml", jurisdiction="cl.nowhere")

    problems = lint_templates(policies, TEMPLATES)

    assert len(problems) == 1
    assert problems[0].file == policies / "jurisdictions" / "cl.nowhere.yaml"
    assert "cl.consumer" in problems[0].problem


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Será DEMANDADO ante el Juzgado", ("DEMANDADO", "Juzgado")),
        ("NOTIFICACION JUDICIAL", ("NOTIFICACION JUDICIAL",)),
        ("una orden\n   judicial", ("orden judicial",)),
        ("Sin embargo, le recordamos", ()),
        ("procederemos al embargo de sus bienes", ("embargo",)),
        ("cobranza extrajudicial", ()),
        ("a courtesy reminder", ()),
        ("we will take legal action in court", ("legal action", "court")),
    ],
)
def test_court_phrases_match_whole_words_ignoring_case_and_accents(
    text: str, found: tuple[str, ...]
) -> None:
    assert find_phrases(text, consumer_rule("CL-C-21")) == found


def test_html_tags_and_entities_do_not_hide_words() -> None:
    seen = visible_text("<p>Bolet&iacute;n <em>Comercial</em></p>", is_html=True)

    assert find_phrases(seen, consumer_rule("CL-C-24")) == ("Boletín Comercial",)


@pytest.mark.parametrize("profile", sorted(load_jurisdictions(JURISDICTIONS)))
def test_every_listed_phrase_is_found_in_its_own_words(profile: str) -> None:
    rules = load_profile(profile, folder=JURISDICTIONS).rules_of(ContentRule)
    for rule in rules:
        for phrase in rule.phrases:
            assert find_phrases(phrase.rstrip("*").upper(), rule), (rule.id, phrase)
        for phrase in rule.allowed:
            assert find_phrases(phrase, rule) == (), (rule.id, phrase)


@pytest.mark.parametrize(
    ("change", "loosening"),
    [
        ({"phrases": ["dicom"]}, "drops"),
        ({"allowed": ["sin embargo", "juzgado"]}, "adds"),
        ({"customer_types": ["health"]}, "cannot be changed"),
    ],
)
def test_an_overlay_may_not_loosen_a_content_rule(
    change: dict[str, Any], loosening: str
) -> None:
    rule_id = "CL-C-21" if "allowed" in change else "CL-C-24"
    profile = load_profile("cl.consumer", folder=JURISDICTIONS)
    overlay = TenantOverlay(
        overlay_for="cl.consumer", tenant="acme", rules=({"id": rule_id, **change},)
    )

    with pytest.raises(JurisdictionError, match=loosening):
        apply_overlay(profile, overlay)


def test_an_overlay_may_add_phrases() -> None:
    profile = load_profile("cl.consumer", folder=JURISDICTIONS)
    phrases = [*consumer_rule("CL-C-21").phrases, "estudio jurídico"]
    overlay = TenantOverlay(
        overlay_for="cl.consumer",
        tenant="acme",
        rules=({"id": "CL-C-21", "phrases": phrases},),
    )

    merged = apply_overlay(profile, overlay)

    court = next(r for r in merged.rules_of(ContentRule) if r.id == "CL-C-21")
    assert find_phrases("Nuestro Estudio Jurídico", court) == ("Estudio Jurídico",)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("phrases", ["de*manda"], "'\\*' only at the end"),
        ("allowed", [" "], "must be words"),
        ("customer_types", ["patients"], "unknown"),
    ],
)
def test_a_malformed_content_rule_names_its_id(
    tmp_path: Path, field: str, value: list[str], reason: str
) -> None:
    folder = tmp_path / "jurisdictions"
    shutil.copytree(JURISDICTIONS, folder)
    path = folder / "cl.consumer.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    court = next(rule for rule in data["rules"] if rule["id"] == "CL-C-21")
    court[field] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True))

    with pytest.raises(JurisdictionError, match=reason) as raised:
        load_profile("cl.consumer", folder=folder)

    assert "CL-C-21" in str(raised.value)
