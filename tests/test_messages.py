"""Message templates: escaping, render errors, balances, dates, fallback and lint."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from receivables.messages import (
    CHANNEL_PARTS,
    MAX_SMS_SEGMENTS,
    MessageContext,
    MissingTemplateError,
    TemplateRenderError,
    format_lint_report,
    format_local_date,
    lint_templates,
    render_message,
    sms_segments,
)
from receivables.money import format_money

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = PROJECT / "templates" / "messages"
POLICIES = PROJECT / "policies"
LANGUAGES = ("es-CL", "en")
TEMPLATE_IDS = sorted(
    folder.name
    for folder in (TEMPLATES / "es-CL").iterdir()
    if folder.is_dir() and not folder.name.startswith("_")
)
CHANNELS = tuple(CHANNEL_PARTS)
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);")

CUSTOMER = "Comercial O'Higgins & Cía. Ltda."
CONTACT = "Sónia Muñoz"
CREDITOR = "Distribuidora D'Alessandro & Hijos"


def invoice_context(**changes: Any) -> MessageContext:
    """A partly paid CLP invoice of a customer whose name needs escaping in HTML."""
    context = MessageContext(
        creditor_name=CREDITOR,
        customer_name=CUSTOMER,
        contact_name=CONTACT,
        invoice_number="170",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=900_000,
        balance_minor=600_000,
        currency="CLP",
        sent_on=date(2026, 4, 2),
        payment_instructions="Transferencia a cta. cte. 12345678, Banco de Chile",
        creditor_contact="cobranza@example.cl",
        payment_link="https://pagos.example.cl/f/170",
    )
    return replace(context, **changes)


def every_message() -> list[tuple[str, str, str]]:
    """Every shipped template id, in each language, on each channel."""
    return [
        (template_id, language, channel)
        for template_id in TEMPLATE_IDS
        for language in LANGUAGES
        for channel in CHANNELS
    ]


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped template tree that a test may break."""
    copy = tmp_path / "messages"
    shutil.copytree(TEMPLATES, copy)
    return copy


def test_every_policy_template_id_ships_in_both_languages() -> None:
    for language in LANGUAGES:
        shipped = sorted(
            folder.name
            for folder in (TEMPLATES / language).iterdir()
            if not folder.name.startswith("_")
        )
        assert shipped == TEMPLATE_IDS, f"{language} differs from es-CL"
    for template_id in TEMPLATE_IDS:
        for language in LANGUAGES:
            for parts in CHANNEL_PARTS.values():
                for part in parts:
                    assert (TEMPLATES / language / template_id / part).is_file()


@pytest.mark.parametrize(("template_id", "language", "channel"), every_message())
def test_plain_text_parts_keep_names_as_typed(
    template_id: str, language: str, channel: str
) -> None:
    message = render_message(
        TEMPLATES, template_id, channel, language, invoice_context()
    )

    plain_parts = [message.body] + ([message.subject] if message.subject else [])
    for text in plain_parts:
        assert ENTITY.search(text) is None, text
    assert CREDITOR in message.body
    if message.subject is not None:
        assert CREDITOR in message.subject or "170" in message.subject


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_and_subject_never_show_entities(template_id: str, language: str) -> None:
    context = invoice_context()

    sms = render_message(TEMPLATES, template_id, "sms", language, context)
    email = render_message(TEMPLATES, template_id, "email", language, context)

    assert email.subject is not None
    for text in (sms.body, email.subject):
        assert "&#39;" not in text
        assert "&amp;" not in text
    assert CREDITOR in sms.body


def test_customer_name_in_a_subject_is_not_escaped(template_copy: Path) -> None:
    subject = template_copy / "es-CL" / "due-soon" / "email.subject.j2"
    subject.write_text("Factura {{ invoice_number }} de {{ customer_name }}\n")

    message = render_message(
        template_copy, "due-soon", "email", "es-CL", invoice_context()
    )

    assert message.subject == f"Factura 170 de {CUSTOMER}"


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_html_body_escapes_names_exactly_once(template_id: str, language: str) -> None:
    message = render_message(
        TEMPLATES, template_id, "email", language, invoice_context()
    )

    html = message.html_body
    assert html is not None
    assert "O&#39;Higgins &amp; Cía." in html
    assert "D&#39;Alessandro &amp; Hijos" in html
    assert CONTACT in html
    assert "&amp;amp;" not in html
    assert "&amp;#39;" not in html
    assert CUSTOMER not in html


def test_missing_context_field_names_the_variable_and_file() -> None:
    variables = invoice_context().template_variables()
    del variables["invoice_number"]

    with pytest.raises(TemplateRenderError) as raised:
        render_message(TEMPLATES, "overdue-first", "sms", "es-CL", variables)

    error = raised.value
    assert error.file == TEMPLATES / "es-CL" / "overdue-first" / "sms.txt.j2"
    assert error.line is not None
    assert "'invoice_number'" in str(error)
    assert "Pass it in the context" in str(error)


def test_misspelled_variable_raises_instead_of_rendering_blank(
    template_copy: Path,
) -> None:
    sms = template_copy / "es-CL" / "due-soon" / "sms.txt.j2"
    sms.write_text("Factura {{ invoice_numbr }} por pagar.\n")

    with pytest.raises(TemplateRenderError) as raised:
        render_message(template_copy, "due-soon", "sms", "es-CL", invoice_context())

    assert raised.value.file == sms
    assert raised.value.line == 1
    assert "'invoice_numbr'" in str(raised.value)


def test_unguarded_optional_field_raises_instead_of_printing_none(
    template_copy: Path,
) -> None:
    sms = template_copy / "en" / "due-soon" / "sms.txt.j2"
    sms.write_text("Invoice {{ invoice_number }}\nPay at {{ payment_link }}\n")
    context = invoice_context(payment_link=None)

    with pytest.raises(TemplateRenderError) as raised:
        render_message(template_copy, "due-soon", "sms", "en", context)

    assert raised.value.file == sms
    assert raised.value.line == 2
    assert "{% if field %}" in str(raised.value)


def test_error_in_a_shared_layout_points_at_the_layout(template_copy: Path) -> None:
    layout = template_copy / "es-CL" / "_layout" / "email.txt.j2"
    layout.write_text(layout.read_text() + "{{ purchase_order }}\n")

    with pytest.raises(TemplateRenderError) as raised:
        render_message(
            template_copy, "overdue-first", "email", "es-CL", invoice_context()
        )

    assert raised.value.file == layout
    assert "'purchase_order'" in str(raised.value)


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
@pytest.mark.parametrize("channel", CHANNELS)
def test_balance_not_invoiced_amount_is_asked_for_in_clp(
    template_id: str, channel: str
) -> None:
    context = invoice_context()
    balance = format_money(600_000, "CLP", "es-CL")
    invoiced = format_money(900_000, "CLP", "es-CL")

    message = render_message(TEMPLATES, template_id, channel, "es-CL", context)

    assert balance == "$600.000"
    assert balance in message.body
    if channel in ("sms", "whatsapp"):
        assert invoiced not in message.body


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_english_messages_show_usd_balance_and_english_dates(template_id: str) -> None:
    context = invoice_context(amount_minor=150_000, balance_minor=5_594, currency="USD")
    balance = format_money(5_594, "USD", "en")

    sms = render_message(TEMPLATES, template_id, "sms", "en", context)
    email = render_message(TEMPLATES, template_id, "email", "en", context)

    assert balance == "USD 55.94"
    assert balance in sms.body
    assert format_money(150_000, "USD", "en") not in sms.body
    assert balance in email.body
    assert "31 March 2026" in email.body
    assert "31 Mar 2026" in sms.body


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_spanish_messages_show_chilean_dates(template_id: str) -> None:
    context = invoice_context()

    sms = render_message(TEMPLATES, template_id, "sms", "es-CL", context)
    letter = render_message(TEMPLATES, template_id, "letter", "es-CL", context)

    assert "31-03-2026" in sms.body
    assert "31 de marzo de 2026" in letter.body
    assert "2 de abril de 2026" in letter.body  # the letter's own date


@pytest.mark.parametrize(("template_id", "language", "channel"), every_message())
def test_every_message_names_folio_and_says_what_to_do_if_paid(
    template_id: str, language: str, channel: str
) -> None:
    already_paid = {"es-CL": "Si ya ", "en": "lready paid"}[language]

    message = render_message(
        TEMPLATES, template_id, channel, language, invoice_context()
    )

    assert "170" in message.body
    assert already_paid in message.body
    assert "https://pagos.example.cl/f/170" in message.body or (
        "cobranza@example.cl" in message.body
    )


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_fits_in_the_segment_limit(template_id: str, language: str) -> None:
    for context in (invoice_context(), invoice_context(payment_link=None)):
        sms = render_message(TEMPLATES, template_id, "sms", language, context)

        assert 1 <= sms_segments(sms.body) <= MAX_SMS_SEGMENTS, sms.body


def test_language_falls_back_from_region_to_base_language(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "es-CL", tmp_path / "es")
    for file in (tmp_path / "es").rglob("*.j2"):
        file.write_text(file.read_text().replace('"es-CL/', '"es/'))

    message = render_message(tmp_path, "due-soon", "sms", "es-CL", invoice_context())

    assert "31-03-2026" in message.body


def test_language_never_falls_back_to_another_language(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES / "en", tmp_path / "en")

    with pytest.raises(MissingTemplateError) as raised:
        render_message(tmp_path, "due-soon", "sms", "es-CL", invoice_context())

    text = str(raised.value)
    assert str(tmp_path / "es-CL" / "due-soon" / "sms.txt.j2") in text
    assert str(tmp_path / "es" / "due-soon" / "sms.txt.j2") in text


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(TemplateRenderError, match="'fax'"):
        render_message(TEMPLATES, "due-soon", "fax", "es-CL", invoice_context())


def test_shipped_templates_pass_the_lint() -> None:
    problems = lint_templates(POLICIES, TEMPLATES)

    assert problems == [], format_lint_report(problems)
    assert "no problems" in format_lint_report(problems)


def _append(text: str) -> Callable[[Path], object]:
    """An edit that adds text at the end of a template's last line."""
    return lambda file: file.write_text(file.read_text().rstrip("\n") + text + "\n")


def _substitute(old: str, new: str) -> Callable[[Path], object]:
    """An edit that replaces text the template is known to contain."""

    def edit(file: Path) -> None:
        original = file.read_text()
        assert old in original, f"{old!r} not in {file}"
        file.write_text(original.replace(old, new))

    return edit


BREAKAGES = {
    "escaped plain text": (
        "es-CL/overdue-first/sms.txt.j2",
        _append(" {{ customer_name|e }}"),
        "HTML entity",
    ),
    "raw data in html": (
        "es-CL/overdue-first/email.html.j2",
        _substitute("{{ creditor_name }}", "{{ contact_name|safe }}"),
        "contact_name into the HTML unescaped",
    ),
    "escaped twice in html": (
        "en/overdue-final/email.html.j2",
        _substitute("{{ creditor_name }}", '{{ creditor_name|replace("&", "&amp;") }}'),
        "escapes data twice",
    ),
    "syntax error": (
        "es-CL/overdue-final/email.txt.j2",
        _append("{% if %}"),
        "syntax error",
    ),
    "empty subject": (
        "es-CL/courtesy-before-due/email.subject.j2",
        lambda file: file.write_text("{# nothing #}\n"),
        "renders empty",
    ),
    "sms too long": (
        "es-CL/due-soon/sms.txt.j2",
        _append(" Le agradecemos su preferencia." * 4),
        "SMS segments",
    ),
    "unguarded optional field": (
        "es-CL/overdue-second/email.txt.j2",
        _substitute(
            "{% block request %}\n", "{% block request %}\n{{ payment_link }}\n"
        ),
        "printed None",
    ),
    "invoiced amount instead of balance": (
        "es-CL/overdue-first/sms.txt.j2",
        _substitute("balance_minor", "amount_minor"),
        "balance due",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_lint_reports_a_broken_template(template_copy: Path, breakage: str) -> None:
    relative, break_it, expected = BREAKAGES[breakage]
    broken = template_copy / relative
    break_it(broken)

    problems = lint_templates(POLICIES, template_copy)

    matching = [p for p in problems if p.file == broken and expected in p.problem]
    assert matching, format_lint_report(problems)
    assert matching[0].fix
    assert matching[0].used_by
    assert str(broken) in format_lint_report(problems)


def test_lint_reports_a_missing_fallback_channel_file(template_copy: Path) -> None:
    # preventive-b2b falls back from email to sms at R+7 with template overdue-second.
    missing = template_copy / "en" / "overdue-second" / "sms.txt.j2"
    missing.unlink()

    problems = lint_templates(POLICIES, template_copy)

    matching = [p for p in problems if p.file == missing]
    assert matching, format_lint_report(problems)
    assert "missing" in matching[0].problem
    assert "preventive-b2b R+7 (sms fallback)" in matching[0].used_by


def test_lint_reports_an_unreadable_policy_book(tmp_path: Path) -> None:
    problems = lint_templates(tmp_path, TEMPLATES)

    assert len(problems) == 1
    assert problems[0].file == tmp_path / "segments.yaml"


def test_dates_read_as_local_calendar_dates() -> None:
    day = date(2026, 3, 31)

    assert format_local_date(day, "es-CL") == "31 de marzo de 2026"
    assert format_local_date(day, "es-CL", "short") == "31-03-2026"
    assert format_local_date(day, "en") == "31 March 2026"
    with pytest.raises(TypeError):
        format_local_date(datetime(2026, 3, 31, 12), "es-CL")


def test_sms_segments_follow_gsm_and_ucs2_limits() -> None:
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("a" * 306) == 2
    assert sms_segments("€" * 80) == 1  # extension characters cost two septets
    assert sms_segments("€" * 81) == 2
    assert sms_segments("á" * 70) == 1  # one accent outside GSM-7 switches to UCS-2
    assert sms_segments("á" * 71) == 2
    assert sms_segments("á" * 135) == 3


def test_context_derives_day_counts_from_the_sending_day() -> None:
    before = invoice_context(sent_on=date(2026, 3, 24))
    after = invoice_context(sent_on=date(2026, 4, 8))

    assert (before.days_to_due, before.days_past_due) == (7, 0)
    assert (after.days_to_due, after.days_past_due) == (0, 8)


@pytest.mark.parametrize(
    "changes",
    [
        {"balance_minor": 0},
        {"currency": "XYZ"},
        {"customer_name": "  "},
        {"due_date": datetime(2026, 3, 31, 12)},
    ],
)
def test_context_refuses_values_no_message_should_carry(
    changes: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="MessageContext"):
        invoice_context(**changes)
