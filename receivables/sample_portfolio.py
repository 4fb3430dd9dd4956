"""A generated Chilean portfolio dated relative to today, so its cases are live at once.

The file has the format of ``policies/mappings/sample.yaml``: Latin-1, semicolons,
DD/MM/YYYY dates and CLP amounts with dots between thousands. Every company and person
is fictional. Customers carry codes (``CLI-0001``), not RUTs: a random RUT with a valid
check digit may belong to a real person or firm. E-mail addresses are on
``example.com`` and the reserved ``.invalid`` domain, which deliver nowhere.
"""

from __future__ import annotations

import csv
import enum
import math
import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

HEADER = (
    "Folio",
    "Código Cliente",
    "Razón Social",
    "Tipo Cliente",
    "Fecha Emisión",
    "Fecha Vencimiento",
    "Monto",
    "Fecha Pago",
    "En Disputa",
    "Email",
    "Teléfono",
    "WhatsApp",
    "Zona Horaria",
    "Región",
    "Plazo Días",
)
ENCODING = "latin-1"
DELIMITER = ";"
DATE_FORMAT = "%d/%m/%Y"
FIRST_FOLIO = 4180
# How the ERP labels customer types; the sample mapping translates them back.
TYPE_LABELS = {
    "company": "Empresa",
    "consumer": "Persona",
    "health": "Salud",
    "education": "Educación",
}
DEFAULT_SEED = 2026


class Situation(enum.StrEnum):
    """Where an open sample invoice stands on the day the file is generated."""

    DUE_SOON = "due_soon"  # due in 1-10 days: pre-due reminders come first
    DUE_TODAY = "due_today"
    OVERDUE = "overdue"  # 1-40 days past due
    LONG_OVERDUE = "long_overdue"  # 60-200 days past due
    TERMS_ONLY = "terms_only"  # no due date in the file; the customer's terms give it
    NO_TERMS = "no_terms"  # no due date and no terms: waits for someone to set one


@dataclass(frozen=True)
class SampleCustomer:
    """A fictional debtor; ``habit_days_late`` shapes its settled history, if any."""

    code: str
    name: str
    customer_type: str
    time_zone: str
    region: str
    terms_days: int | None
    habit_days_late: int | None
    email: str | None
    phone: str | None
    whatsapp: bool = False


@dataclass(frozen=True)
class SampleInvoice:
    """One row of the sample file."""

    folio: str
    customer: SampleCustomer
    issue_date: date
    due_date: date | None
    amount_clp: int
    settled_date: date | None
    disputed: bool
    situation: Situation | None  # None for settled history


SANTIAGO, PUNTA_ARENAS, EASTER = (
    "America/Santiago",
    "America/Punta_Arenas",
    "Pacific/Easter",
)
RM = "Metropolitana"
# number, name, type, region, payment terms in days, usual days late (None: no history)
_CATALOGUE: tuple[tuple[int, str, str, str, int | None, int | None], ...] = (
    (1, "Comercial O'Higgins & Cía. Ltda.", "company", "O'Higgins", 30, 2),
    (2, "Clínica Ñuñoa SpA", "health", RM, 30, 4),
    (3, "Distribuidora Los Ñires Ltda.", "company", "Magallanes", 45, 0),
    (4, "Ferretería Peñalolén & Hijos Ltda.", "company", RM, 30, 14),
    (5, "Constructora Cordillera Andina S.A.", "company", RM, 60, 6),
    (6, "Transportes Ñandú SpA", "company", "Biobío", 30, 22),
    (7, "Agrícola Valle del Elqui Ltda.", "company", "Coquimbo", 45, None),
    (8, "Importadora D'Agostino & Cía. Ltda.", "company", "Valparaíso", 30, 1),
    (9, "Viña Los Almendros de Colchagua S.A.", "company", "O'Higgins", 60, 3),
    (10, "Panadería La Espiga de Maipú Ltda.", "company", RM, 15, 0),
    (11, "Pesquera Austral Magallánica S.A.", "company", "Magallanes", 30, 11),
    (12, "Artesanías Moai & Mar SpA", "company", "Valparaíso", 30, 1),
    (13, "Centro Médico San Martín de Porres Ltda.", "health", RM, 30, 5),
    (14, "Laboratorio Clínico Ñielol SpA", "health", "La Araucanía", 30, None),
    (15, "Colegio San Andrés de Peñaflor", "education", RM, 30, 8),
    (16, "Instituto Técnico Los Cóndores", "education", "Biobío", 30, None),
    (17, "Jardín Infantil Mis Pequeños Pasos", "education", RM, 30, 2),
    (18, "Comercializadora Ñandú Ltda.", "company", "Maule", 30, 0),
    (19, "Farmacia Doña Inés & Cía.", "health", "Valparaíso", 30, None),
    (20, "María José Ñancupil Rojas", "consumer", "La Araucanía", None, None),
    (21, "Juan Pablo O'Ryan Muñoz", "consumer", RM, 30, 12),
    (22, "Sofía Peña Acuña", "consumer", "Valparaíso", None, None),
    (23, "Servicios Logísticos Bío-Bío SpA", "company", "Biobío", 30, 0),
    (24, "Minera Quebrada Azul SpA", "company", "Antofagasta", 45, 3),
)
_TIME_ZONES = {3: PUNTA_ARENAS, 11: PUNTA_ARENAS, 12: EASTER, 22: EASTER}
_MAIL_DOMAINS = {10: "sample.invalid", 17: "sample.invalid", 20: None}
_ON_WHATSAPP = {6, 12, 20}


def _ascii(text: str) -> str:
    table = str.maketrans("áéíóúüñÁÉÍÓÚÜÑ", "aeiouunAEIOUUN")
    return text.translate(table)


def _customer(
    number: int,
    name: str,
    kind: str,
    region: str,
    terms: int | None,
    habit: int | None,
) -> SampleCustomer:
    words = "".join(c for c in _ascii(name).lower() if c.isalnum() or c == " ").split()
    local = (
        ".".join(words[:2]) if kind == "consumer" else "cobranza." + "-".join(words[:3])
    )
    domain = _MAIL_DOMAINS.get(number, "example.com")
    return SampleCustomer(
        code=f"CLI-{number:04d}",
        name=name,
        customer_type=kind,
        time_zone=_TIME_ZONES.get(number, SANTIAGO),
        region=region,
        terms_days=terms,
        habit_days_late=habit,
        email=f"{local}@{domain}" if domain else None,
        # Limit: Chile reserves no range for fictional numbers. The 9 0000 block is used
        # so that sample numbers stand out; keep sample data on the outbox channel.
        phone=f"+56 9 0000 {1000 + number:04d}",
        whatsapp=number in _ON_WHATSAPP,
    )


CUSTOMERS: tuple[SampleCustomer, ...] = tuple(_customer(*row) for row in _CATALOGUE)

# CLP ranges per customer type, drawn log-uniformly so that small invoices dominate.
AMOUNT_RANGES = {
    "company": (85_000, 12_000_000),
    "health": (150_000, 4_000_000),
    "education": (120_000, 3_500_000),
    "consumer": (85_000, 650_000),
}
SITUATION_WEIGHTS = {
    Situation.DUE_SOON: 30,
    Situation.DUE_TODAY: 8,
    Situation.OVERDUE: 32,
    Situation.LONG_OVERDUE: 15,
    Situation.TERMS_ONLY: 10,
    Situation.NO_TERMS: 5,
}


def _amount(rng: random.Random, customer_type: str) -> int:
    low, high = AMOUNT_RANGES[customer_type]
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return int(
        round(value, -1)
    )  # whole pesos, rounded to tens as price lists usually are


def _situations(rng: random.Random, size: int) -> list[Situation]:
    # Every situation appears at least once when the portfolio is big enough for them.
    chosen = list(Situation)[:size]
    weights = list(SITUATION_WEIGHTS.values())
    chosen += rng.choices(
        list(SITUATION_WEIGHTS), weights=weights, k=size - len(chosen)
    )
    rng.shuffle(chosen)
    return chosen


def _open_invoice(
    rng: random.Random, today: date, situation: Situation
) -> SampleInvoice:
    with_terms = [c for c in CUSTOMERS if c.terms_days is not None]
    without_terms = [c for c in CUSTOMERS if c.terms_days is None]
    pool = without_terms if situation is Situation.NO_TERMS else with_terms
    customer = rng.choice(pool)
    terms = customer.terms_days or 30
    days_to_due = {
        Situation.DUE_SOON: rng.randint(1, 10),
        Situation.DUE_TODAY: 0,
        Situation.OVERDUE: -rng.randint(1, 40),
        Situation.LONG_OVERDUE: -rng.randint(60, 200),
        Situation.TERMS_ONLY: rng.randint(-25, 20),
        Situation.NO_TERMS: rng.randint(-25, 20),
    }[situation]
    due = today + timedelta(days=days_to_due)
    issue = min(due - timedelta(days=terms), today)
    missing_due = situation in (Situation.TERMS_ONLY, Situation.NO_TERMS)
    return SampleInvoice(
        folio="",
        customer=customer,
        issue_date=issue,
        due_date=None if missing_due else due,
        amount_clp=_amount(rng, customer.customer_type),
        settled_date=None,
        disputed=rng.random() < 0.08,
        situation=situation,
    )


def _history(
    rng: random.Random, today: date, customer: SampleCustomer
) -> list[SampleInvoice]:
    if customer.habit_days_late is None or customer.terms_days is None:
        return []
    settled: list[SampleInvoice] = []
    for _ in range(rng.randint(2, 5)):
        issue = today - timedelta(days=rng.randint(150, 400))
        due = issue + timedelta(days=customer.terms_days)
        late = max(-5, customer.habit_days_late + rng.randint(-3, 3))
        paid = max(issue, due + timedelta(days=late))
        settled.append(
            SampleInvoice(
                "",
                customer,
                issue,
                due,
                _amount(rng, customer.customer_type),
                paid,
                False,
                None,
            )
        )
    return settled


def sample_invoices(
    *, today: date, size: int = 40, seed: int = DEFAULT_SEED
) -> list[SampleInvoice]:
    """The sample portfolio: ``size`` open invoices plus settled history, by folio."""
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    rng = random.Random(f"{seed}:{today.isoformat()}")
    invoices = [_open_invoice(rng, today, s) for s in _situations(rng, size)]
    for customer in CUSTOMERS:
        invoices += _history(rng, today, customer)
    invoices.sort(key=lambda i: (i.issue_date, i.customer.code, i.amount_clp))
    # Folios are consecutive in issue order and zero-padded, as an ERP prints them.
    return [
        replace(invoice, folio=f"{FIRST_FOLIO + n:08d}")
        for n, invoice in enumerate(invoices)
    ]


def format_clp(amount: int) -> str:
    """Write whole pesos the Chilean way: 1234567 becomes ``1.234.567``."""
    return f"{amount:,}".replace(",", ".")


def _day(value: date | None) -> str:
    return value.strftime(DATE_FORMAT) if value else ""


def _row(invoice: SampleInvoice) -> list[str]:
    customer = invoice.customer
    return [
        invoice.folio,
        customer.code,
        customer.name,
        TYPE_LABELS[customer.customer_type],
        _day(invoice.issue_date),
        _day(invoice.due_date),
        format_clp(invoice.amount_clp),
        _day(invoice.settled_date),
        "Sí" if invoice.disputed else "No",
        customer.email or "",
        customer.phone or "",
        customer.phone if customer.whatsapp and customer.phone else "",
        customer.time_zone,
        customer.region,
        "" if customer.terms_days is None else str(customer.terms_days),
    ]


def write_sample_portfolio(
    path: Path, *, today: date, size: int = 40, seed: int = DEFAULT_SEED
) -> Path:
    """Write the sample portfolio for ``today``; same seed and day, same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=ENCODING, newline="") as handle:
        writer = csv.writer(handle, delimiter=DELIMITER)
        writer.writerow(HEADER)
        writer.writerows(
            _row(i) for i in sample_invoices(today=today, size=size, seed=seed)
        )
    return path
