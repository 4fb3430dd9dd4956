"""Debtor messages: the variables templates see, their rendering and their lint."""

from __future__ import annotations

import functools
import itertools
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import pass_context, select_autoescape
from jinja2.runtime import Context

from receivables.content_lint import (
    JURISDICTIONS_FOLDER,
    BoundRule,
    bind_rules,
    check_message,
    content_rules_by_policy,
)
from receivables.jurisdictions import load_profile
from receivables.money import MoneyError, exponent_of, format_money
from receivables.policy import Channel, PolicyBook, PolicyError, load_policy_book

logger = logging.getLogger(__name__)

# The files a channel is made of, in the order a sender needs them.
CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    Channel.EMAIL.value: ("email.subject.j2", "email.txt.j2", "email.html.j2"),
    Channel.SMS.value: ("sms.txt.j2",),
    Channel.WHATSAPP.value: ("whatsapp.txt.j2",),
    Channel.LETTER.value: ("letter.txt.j2",),
}
# Every template is checked in these languages, besides the language its policy names.
LINT_LANGUAGES = ("es-CL", "en")
# The template of a consolidated reminder: one message listing several invoices of a debtor.
STATEMENT_TEMPLATE = "statement"
MAX_SMS_SEGMENTS = 3

_TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);")
_DOUBLE_ENTITY = re.compile(r"&amp;(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);")

_MONTHS = {
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}

# GSM 03.38: characters of the basic table cost one septet, the extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


class TemplateRenderError(Exception):
    """A message that cannot be rendered: file, line, what is wrong and what to do."""

    def __init__(self, file: Path, line: int | None, reason: str, fix: str) -> None:
        self.file, self.line, self.reason, self.fix = file, line, reason, fix
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {reason}. {fix.rstrip('.')}.")


class MissingTemplateError(TemplateRenderError):
    """No template file exists for a template id, channel part and language."""


@dataclass(frozen=True)
class StatementLine:
    """One invoice of a statement: its folio, dates and what is asked for it."""

    invoice_number: str
    issue_date: date
    due_date: date
    balance_minor: int
    currency: str


@dataclass(frozen=True)
class MessageContext:
    """What a message may say about one invoice, as of the local day it is sent."""

    creditor_name: str
    customer_name: str
    invoice_number: str  # the folio printed on the factura
    issue_date: date
    due_date: date
    amount_minor: int  # as invoiced
    # Still owed after payments and credit notes: the amount every message asks for.
    balance_minor: int
    currency: str
    sent_on: date  # the debtor's local calendar date of the message
    payment_instructions: str  # how to pay: bank transfer details or a payment portal
    creditor_contact: str  # where to ask or report a payment: mailbox, phone
    contact_name: str | None = None  # the person addressed at the customer, when known
    payment_link: str | None = None
    # For the statement template: every invoice it names, this one first.
    statement: tuple[StatementLine, ...] = ()

    def __post_init__(self) -> None:
        for name in ("creditor_name", "customer_name", "invoice_number", "currency"):
            if not getattr(self, name).strip():
                raise ValueError(
                    f"MessageContext.{name} is empty; every message needs it"
                )
        for name in ("payment_instructions", "creditor_contact"):
            if not getattr(self, name).strip():
                raise ValueError(
                    f"MessageContext.{name} is empty; say how to pay or ask"
                )
        try:
            exponent_of(self.currency)
        except MoneyError as error:
            raise ValueError(f"MessageContext.currency: {error}") from None
        if self.balance_minor <= 0:
            raise ValueError(
                f"MessageContext.balance_minor is {self.balance_minor}; "
                "a settled or credit balance is never dunned"
            )
        if any(
            isinstance(d, datetime)
            for d in (self.issue_date, self.due_date, self.sent_on)
        ):
            raise ValueError(
                "MessageContext dates must be local calendar dates, not instants"
            )

    @property
    def days_past_due(self) -> int:
        """Whole days since the due date on the sending day; zero before it."""
        return max(0, (self.sent_on - self.due_date).days)

    @property
    def days_to_due(self) -> int:
        """Whole days until the due date on the sending day; zero on or after it."""
        return max(0, (self.due_date - self.sent_on).days)

    def template_variables(self) -> dict[str, Any]:
        """Every variable a template may use, derived day counts included."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        values["days_past_due"] = self.days_past_due
        values["days_to_due"] = self.days_to_due
        values["statement"] = self.statement_lines
        values["statement_total_minor"] = self.statement_total_minor
        return values

    @property
    def statement_lines(self) -> tuple[StatementLine, ...]:
        """The invoices a statement names; this invoice alone when none was given."""
        own = StatementLine(
            self.invoice_number,
            self.issue_date,
            self.due_date,
            self.balance_minor,
            self.currency,
        )
        return self.statement or (own,)

    @property
    def statement_total_minor(self) -> int | None:
        """What the statement asks in all, when its invoices share one currency."""
        lines = self.statement_lines
        if {line.currency for line in lines} != {self.currency}:
            return None
        return sum(line.balance_minor for line in lines)


@dataclass(frozen=True)
class RenderedMessage:
    """A message ready for a channel; ``subject`` and ``html_body`` exist for email."""

    subject: str | None
    body: str
    html_body: str | None = None


@dataclass(frozen=True)
class LintProblem:
    """One defect of a template file, with the policy steps that would send it."""

    file: Path
    problem: str
    fix: str
    line: int | None = None
    used_by: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        users = f" (used by {', '.join(self.used_by)})" if self.used_by else ""
        return f"{where}: {self.problem}. {self.fix.rstrip('.')}.{users}"


def format_local_date(day: date, language: str, style: str = "long") -> str:
    """Show a local date: ``31 de marzo de 2026``, ``31-03-2026``, ``31 March 2026``."""
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"local_date needs a calendar date, got {type(day).__name__}")
    if style not in ("long", "short"):
        raise ValueError(
            f"local_date style {style!r} is unknown; use 'long' or 'short'"
        )
    family = language.split("-")[0].lower()
    if family not in _MONTHS:
        raise ValueError(f"no date format for language {language!r}; use es-* or en-*")
    month = _MONTHS[family][day.month - 1]
    if family == "es":
        if style == "short":
            return day.strftime("%d-%m-%Y")
        return f"{day.day} de {month} de {day.year}"
    if style == "short":
        return f"{day.day} {month[:3]} {day.year}"
    return f"{day.day} {month} {day.year}"


def sms_segments(text: str) -> int:
    """Count the SMS parts a text is sent as: GSM-7 when it fits, else UCS-2."""
    if not text:
        return 0
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        units = sum(2 if char in _GSM_EXTENSION else 1 for char in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


@pass_context
def _money_filter(context: Context, minor_units: Any, currency: Any) -> str:
    if not isinstance(minor_units, int) or isinstance(minor_units, bool):
        raise TypeError(f"money needs integer minor units, got {minor_units!r}")
    return format_money(minor_units, str(currency), context["language"])


@pass_context
def _local_date_filter(context: Context, day: Any, style: str = "long") -> str:
    return format_local_date(day, context["language"], style)


class _BlankValueError(Exception):
    """A template printed None or an empty string: an optional field left unguarded."""


def _refuse_blank(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _BlankValueError(f"an expression printed {value!r}")
    return value


@functools.lru_cache(maxsize=16)
def _environment(templates_dir: Path) -> jinja2.Environment:
    # One environment per folder keeps compiled templates between sends; Jinja still
    # notices an edited file by its modification time.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        # Plain text goes out as typed; only HTML parts are escaped, and only once.
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_refuse_blank,
    )
    environment.filters["money"] = _money_filter
    environment.filters["local_date"] = _local_date_filter
    return environment


def _language_candidates(language: str) -> list[str]:
    """The requested language, then its base language (es-CL, es); never another one."""
    base = language.split("-")[0]
    return [language] if base == language else [language, base]


def _check_template_names(
    templates_dir: Path, template_id: str, part: str, language: str
) -> None:
    """Refuse names that could not come from a policy, before they reach the disk."""
    if not _TEMPLATE_ID.match(template_id):
        raise TemplateRenderError(
            templates_dir,
            None,
            f"template id {template_id!r} is not valid",
            "Use lowercase letters, digits and dashes, as the policy schema does",
        )
    if not _LANGUAGE_TAG.match(language):
        raise TemplateRenderError(
            templates_dir,
            None,
            f"language {language!r} is not a language tag",
            "Use a tag such as es-CL or en",
        )
    if not any(part in parts for parts in CHANNEL_PARTS.values()):
        raise TemplateRenderError(
            templates_dir,
            None,
            f"message part {part!r} is unknown",
            "Use a file name listed in CHANNEL_PARTS",
        )


def find_template_file(
    templates_dir: Path, template_id: str, part: str, language: str
) -> Path:
    """Return the file of one message part, trying ``es-CL`` then ``es``, or raise."""
    _check_template_names(templates_dir, template_id, part, language)
    tried = [
        templates_dir / tag / template_id / part
        for tag in _language_candidates(language)
    ]
    for path in tried:
        if path.is_file():
            if path != tried[0]:
                logger.debug("%s: no %s file, using %s", template_id, language, path)
            return path
    raise MissingTemplateError(
        tried[0],
        None,
        "template file is missing (looked for "
        + ", ".join(str(p) for p in tried)
        + ")",
        "Create it: a template id needs every channel in every language it is sent in",
    )


def _failing_template_line(
    traceback: TracebackType | None,
) -> tuple[Path | None, int | None]:
    """Find the template file and line an error came from in Jinja's traceback."""
    found: tuple[Path | None, int | None] = (None, None)
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (Path(filename), traceback.tb_lineno)
        traceback = traceback.tb_next
    return found


def _undefined_error(
    error: jinja2.UndefinedError, file: Path, line: int | None
) -> TemplateRenderError:
    missing = _UNDEFINED_NAME.match(error.message or "")
    known = ", ".join(f.name for f in fields(MessageContext))
    return TemplateRenderError(
        file,
        line,
        f"variable {missing.group(1)!r} is missing from the message context"
        if missing
        else f"undefined value: {error.message}",
        f"Pass it in the context, or use one of: {known}, days_past_due, "
        "days_to_due, language",
    )


def _render_error(
    error: Exception, file: Path, templates_dir: Path
) -> TemplateRenderError:
    """Turn whatever a template raised into an error that says where and what to do."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        failing = Path(error.filename) if error.filename else file
        return TemplateRenderError(
            failing,
            error.lineno,
            f"Jinja syntax error: {error.message}",
            "Fix the template syntax at that line",
        )
    traced_file, line = _failing_template_line(error.__traceback__)
    where = traced_file or file
    if isinstance(error, jinja2.UndefinedError):
        return _undefined_error(error, where, line)
    if isinstance(error, jinja2.TemplateNotFound):
        return MissingTemplateError(
            where,
            line,
            f"it extends or includes {error.name!r}, which does not exist",
            f"Create {templates_dir / str(error.name)} or correct the name",
        )
    if isinstance(error, _BlankValueError):
        return TemplateRenderError(
            where,
            line,
            f"{error} instead of text (an optional field is empty)",
            "Wrap optional fields such as contact_name or payment_link in "
            "{% if field %}...{% endif %}",
        )
    return TemplateRenderError(
        where,
        line,
        f"{type(error).__name__}: {error}",
        "Correct the expression at that line (money needs integer minor units and "
        "a currency; local_date needs a date)",
    )


def _render_part(
    environment: jinja2.Environment,
    templates_dir: Path,
    file: Path,
    variables: Mapping[str, Any],
) -> str:
    """Render one file; a subject becomes one line, other parts lose outer blanks."""
    name = file.relative_to(templates_dir).as_posix()
    try:
        text = environment.get_template(name).render(variables)
    except (
        jinja2.TemplateError,
        _BlankValueError,
        MoneyError,
        TypeError,
        ValueError,
    ) as error:
        raise _render_error(error, file, templates_dir) from None
    if file.name == "email.subject.j2":
        return " ".join(text.split())
    return text.strip()


def _variables(
    context: MessageContext | Mapping[str, Any], language: str
) -> dict[str, Any]:
    values = (
        context.template_variables()
        if isinstance(context, MessageContext)
        else dict(context)
    )
    values["language"] = language
    return values


def _parts_of(channel: str, templates_dir: Path) -> tuple[str, ...]:
    try:
        return CHANNEL_PARTS[channel]
    except KeyError:
        known = ", ".join(CHANNEL_PARTS)
        raise TemplateRenderError(
            templates_dir,
            None,
            f"channel {channel!r} is unknown",
            f"Use one of {known}",
        ) from None


def render_message(
    templates_dir: Path,
    template_id: str,
    channel: str,
    language: str,
    context: MessageContext | Mapping[str, Any],
) -> RenderedMessage:
    """Render a template id for a channel and language, or raise TemplateRenderError."""
    environment = _environment(templates_dir)
    variables = _variables(context, language)
    texts = [
        _render_part(
            environment,
            templates_dir,
            find_template_file(templates_dir, template_id, part, language),
            variables,
        )
        for part in _parts_of(channel, templates_dir)
    ]
    if channel == Channel.EMAIL.value:
        subject, body, html_body = texts
        return RenderedMessage(subject=subject, body=body, html_body=html_body)
    return RenderedMessage(subject=None, body=texts[0])


def lint_samples(language: str) -> tuple[MessageContext, MessageContext]:
    """The invoices the lint renders: one with hostile text everywhere, one sparse."""
    english = language.lower().startswith("en")
    hostile = MessageContext(
        creditor_name="Clínica Ñuñoa & O'Brien S.A.",
        customer_name="Comercial O'Higgins & Cía. Ltda.",
        contact_name='Sónia "Soni" Muñoz <Tesorería>',
        invoice_number="25568",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=150_000 if english else 900_000,
        balance_minor=5_594 if english else 600_000,
        currency="USD" if english else "CLP",
        sent_on=date(2026, 4, 8),
        payment_instructions="Transferencia cta. cte. 00-123-45678-9 <ref. 25568> & co",
        creditor_contact="cobranza@example.cl, +56 2 2345 6789",
        payment_link="https://pagos.example.cl/f/25568?ref=a&b=1",
    )
    # A statement names this invoice and another one of the same debtor, due together.
    other = StatementLine(
        "25570",
        hostile.issue_date,
        hostile.due_date,
        hostile.balance_minor * 2,
        hostile.currency,
    )
    hostile = replace(hostile, statement=(*hostile.statement_lines, other))
    return hostile, replace(hostile, contact_name=None, payment_link=None)


def _template_uses(
    book: PolicyBook, consolidating: frozenset[str] = frozenset()
) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """Every (template id, channel, language) a step may send, with (policy, step).

    A step of a policy in ``consolidating`` may also send the statement template instead.
    """
    uses: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for policy in book.policies.values():
        languages = dict.fromkeys((policy.language, *LINT_LANGUAGES))
        for step in policy.steps:
            if step.channel is None or step.template is None:
                continue  # a task step: a person acts, no message is rendered
            templates = [step.template]
            if policy.name in consolidating:
                templates.append(STATEMENT_TEMPLATE)
            for channel in (step.channel, *step.fallback_channels):
                label = f"{policy.name} {step.id}"
                if channel != step.channel:
                    label += f" ({channel.value} fallback)"
                for template, language in itertools.product(templates, languages):
                    key = (template, channel.value, language)
                    uses.setdefault(key, []).append((policy.name, label))
    return uses


def _consolidating_policies(
    book: PolicyBook, jurisdictions_dir: Path
) -> frozenset[str]:
    """Policies whose jurisdiction sends written reminders due together as one statement."""
    profiles = {
        name: load_profile(name, folder=jurisdictions_dir)
        for name in {p.jurisdiction for p in book.policies.values() if p.jurisdiction}
    }
    return frozenset(
        policy.name
        for policy in book.policies.values()
        if policy.jurisdiction and profiles[policy.jurisdiction].consolidate_written
    )


def _plain_text_findings(text: str) -> Iterator[tuple[str, str]]:
    entity = _ENTITY.search(text)
    if entity:
        yield (
            f"shows the HTML entity {entity.group()!r} in plain text",
            "Remove |e, |escape or |forceescape: plain-text parts are sent as typed",
        )


def _html_findings(text: str, sample: MessageContext) -> Iterator[tuple[str, str]]:
    for field, value in sample.template_variables().items():
        if isinstance(value, str) and "<" in value and value in text:
            yield (
                f"puts {field} into the HTML unescaped",
                "Remove |safe or {% autoescape false %} around it: .html.j2 files "
                "escape data themselves",
            )
    twice = _DOUBLE_ENTITY.search(text)
    if twice:
        yield (
            f"escapes data twice ({twice.group()!r})",
            "Remove |e or |escape: .html.j2 files already escape data once",
        )


def _content_findings(
    text: str, sample: MessageContext, language: str
) -> Iterator[tuple[str, str]]:
    what_to_do = "Every message names the folio, the balance due and the due date"
    if sample.invoice_number not in text:
        yield "does not name the invoice (invoice_number, the folio)", what_to_do
    if format_money(sample.balance_minor, sample.currency, language) not in text:
        yield (
            "does not state the balance due",
            f"Show balance_minor|money(currency), not amount_minor. {what_to_do}",
        )
    dates = {format_local_date(sample.due_date, language, s) for s in ("long", "short")}
    if not any(shown in text for shown in dates):
        yield "does not state the due date", f"Show due_date|local_date. {what_to_do}"


def _lint_part(
    environment: jinja2.Environment,
    templates_dir: Path,
    file: Path,
    sample: MessageContext,
    language: str,
    bound: Sequence[BoundRule],
) -> list[LintProblem]:
    """Render one file against one sample and report what a debtor would see wrong."""
    try:
        text = _render_part(
            environment, templates_dir, file, _variables(sample, language)
        )
    except TemplateRenderError as error:
        return [LintProblem(error.file, error.reason, error.fix, error.line)]
    if not text:
        return [LintProblem(file, "renders empty", "Write the message text")]
    if file.name.endswith(".html.j2"):
        findings = list(_html_findings(text, sample))
    else:
        findings = list(_plain_text_findings(text))
    if file.name != "email.subject.j2":
        findings += _content_findings(text, sample, language)
    segments = sms_segments(text)
    if file.name == "sms.txt.j2" and segments > MAX_SMS_SEGMENTS:
        findings.append(
            (
                f"is {segments} SMS segments long with sample data (limit "
                f"{MAX_SMS_SEGMENTS})",
                "Shorten it: one accent or ñ makes every segment 67 characters",
            )
        )
    problems = [LintProblem(file, problem, fix) for problem, fix in findings]
    return problems + [
        LintProblem(file, found.problem, found.fix, found.line, found.used_by)
        for found in check_message(file, text, bound)
    ]


def _lint_use(
    environment: jinja2.Environment,
    templates_dir: Path,
    template_id: str,
    channel: str,
    language: str,
    bound: Sequence[BoundRule],
) -> list[LintProblem]:
    """Check every file of a template id, channel and language against each sample."""
    problems: list[LintProblem] = []
    files: list[Path] = []
    for part in CHANNEL_PARTS[channel]:
        try:
            files.append(find_template_file(templates_dir, template_id, part, language))
        except TemplateRenderError as error:
            problems.append(
                LintProblem(error.file, error.reason, error.fix, error.line)
            )
    for file in files:
        for sample in lint_samples(language):
            problems += _lint_part(
                environment, templates_dir, file, sample, language, bound
            )
    return problems


def lint_templates(policies_dir: Path, templates_dir: Path) -> list[LintProblem]:
    """Render every template the policies may send, in each language; list defects."""
    try:
        book = load_policy_book(policies_dir)
        rules_of = content_rules_by_policy(
            book, policies_dir / JURISDICTIONS_FOLDER, date.today()
        )
        consolidating = _consolidating_policies(
            book, policies_dir / JURISDICTIONS_FOLDER
        )
    except PolicyError as error:  # a JurisdictionError too
        return [
            LintProblem(
                Path(error.file),
                f"{error.field}: {error.reason}",
                "Fix the policy book and its jurisdiction profiles first: templates "
                "are checked against its steps and their content rules",
            )
        ]
    if not templates_dir.is_dir():
        return [
            LintProblem(
                templates_dir,
                "template folder does not exist",
                "Point the lint at templates/messages, or create the folder",
            )
        ]
    environment = _environment(templates_dir)
    found: dict[tuple[Path, int | None, str], LintProblem] = {}
    for (template_id, channel, language), users in sorted(
        _template_uses(book, consolidating).items()
    ):
        bound = bind_rules(users, rules_of)
        labels = [label for _, label in users]
        for problem in _lint_use(
            environment, templates_dir, template_id, channel, language, bound
        ):
            key = (problem.file, problem.line, problem.problem)
            earlier = found[key].used_by if key in found else ()
            # A content problem names only the steps its rule binds; others, every step.
            users_of = problem.used_by or labels
            found[key] = replace(
                problem, used_by=tuple(dict.fromkeys((*earlier, *users_of)))
            )
    return list(found.values())


def format_lint_report(problems: Sequence[LintProblem]) -> str:
    """Describe lint problems one a line, or say that there are none."""
    if not problems:
        return "templates: no problems found"
    lines = [f"templates: {len(problems)} problem(s) found"]
    lines += [f"- {problem}" for problem in problems]
    return "\n".join(lines)
