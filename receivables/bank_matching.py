"""Which open invoice a bank credit pays: by a folio in its text, else by payer and amount.

The rules, in the order they are tried, each leaving the line for a person when unsure:

1. A folio written in the remittance text, as a whole token with its leading zeros
   (``F-1234``, ``Fact 1234``, ``FACTURA N° 1234``, ``0000611365``). A bare number counts
   from four characters; a shorter one only after an invoice word (F, Fact, Factura,
   Folio, Invoice, N°), since 2 in "pago 2 facturas" is no folio. Parts of a date are
   never folios, nor a year beside its month (11/2026, 2026-11, noviembre 2026). A payer
   identified as in rule 2 who is not the folio's customer leaves the line to a person.
   One open folio takes the credit (less than its balance is a partial payment, more is
   an overpayment refused unless allowed); two or more open folios take it only when
   their balances sum to the amount exactly, each its balance.
2. Else the payer: a valid RUT (check digit verified) equal to a customer's id, or a
   payer name equal to one customer's name (accents, case and punctuation aside). That
   one customer must have exactly one open invoice whose balance is the amount.

A number written without a folio's leading zeros (1234 for 0000001234) is that folio when
exactly one open invoice is; several, and the line is left to a person with them listed.

A credit in another currency than its invoice never matches: the store converts nothing.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from receivables.bank_movements import BankMovement, Direction
from receivables.money import format_amount
from receivables.rut import normalise_rut, ruts_in
from receivables.store import Customer, Invoice, InvoiceStatus, Payment, session_scope

_DATE = re.compile(r"(?<![0-9])[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{2,4}(?![0-9])")
_YEAR = r"(?:199[0-9]|20[0-9]{2}|2100)"
_MONTH_NUMBER = r"(?:0?[1-9]|1[0-2])"
_MONTH_NAME = (
    r"(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|sept?iembre|octubre|noviembre"
    r"|diciembre|january|february|march|april|june|july|august|september|october"
    r"|november|december|ene|feb|mar|abr|may|jun|jul|ago|sept?|oct|nov|dic|jan|apr|aug|dec)"
)
# A month with its year, as remittance text gives a period paid: 11/2026, 2026-11,
# "noviembre 2026", "diciembre de 2025". Its year is no folio.
_MONTH_AND_YEAR = re.compile(
    rf"(?<![0-9]){_MONTH_NUMBER}[./-]{_YEAR}(?![0-9])"
    rf"|(?<![0-9]){_YEAR}[./-]{_MONTH_NUMBER}(?![0-9])"
    rf"|(?<![A-Za-z]){_MONTH_NAME}\.?(?:\s+del?)?[\s,]+{_YEAR}(?![0-9])"
    rf"|(?<![0-9]){_YEAR}[\s,]+{_MONTH_NAME}(?![A-Za-z])",
    re.IGNORECASE,
)
_TOKEN = r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*"
_RUN = re.compile(_TOKEN)
_AFTER_INVOICE_WORD = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(?:factura|fact|fac|fct|folio|invoice|inv|factuurnr|factuur|nro|no|f|n)(?![A-Za-z])"
    rf"\s*[.:#°º-]?\s*(?:n\s*[°º.o]?\s*)?[:#]?\s*({_TOKEN})",
    re.IGNORECASE,
)
SHORTEST_BARE_FOLIO = 4
CANDIDATES_SHOWN = 5
REFERENCE_PREFIX = "BANK:"  # a Payment recorded from a bank line: BANK:<transaction id>


class Outcome(enum.StrEnum):
    """What reconciliation made of one bank movement."""

    APPLIED = "applied"
    UNMATCHED = "unmatched"  # a person decides; it stays listed until then
    SKIPPED = "skipped"  # not a payment: a debit, or nothing moved
    RETURNED = "returned"  # a return or reversal; never applied as a payment


@dataclass(frozen=True)
class Allocation:
    """The part of a credit applied to one invoice."""

    folio: str
    amount_minor: int
    reference: str = ""  # the Payment's reference once recorded; kept on every rerun


@dataclass(frozen=True)
class Decision:
    """The outcome for one movement, how it was matched, or why not and what came close."""

    movement: BankMovement
    outcome: Outcome
    matched_by: str = ""
    reason: str = ""
    allocations: tuple[Allocation, ...] = ()
    candidates: tuple[str, ...] = ()


def folio_tokens(text: str) -> set[str]:
    """Every piece of the text that may be a folio, as written: leading zeros kept."""
    text = _MONTH_AND_YEAR.sub(" ", _DATE.sub(" ", text))
    tokens: set[str] = set()
    for marked in _AFTER_INVOICE_WORD.finditer(text):
        tokens.update(_with_parts(marked.group(1)))
    for run in _RUN.findall(text):
        tokens.update(t for t in _with_parts(run) if len(t) >= SHORTEST_BARE_FOLIO)
    return tokens


def _with_parts(token: str) -> list[str]:
    # F-1234 may be the folio itself, or the letter F before folio 1234.
    return [token, *re.split(r"[-/]", token)] if re.search(r"[-/]", token) else [token]


def normalised_name(name: str) -> str:
    """A name compared as people read it: no accents, case or punctuation."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain.lower()).split())


@dataclass
class OpenItems:
    """The tenant's invoices and customers a statement may name, and balances as used so far.

    Balances go down as the statement's earlier lines are matched, so two credits of one
    folio in a file cannot both take its whole balance.
    """

    engine: Engine
    tenant: str
    balances: dict[str, int] = field(default_factory=dict)
    _invoices: dict[str, Invoice] = field(default_factory=dict)
    _customers_by_name: dict[str, list[str]] = field(default_factory=dict)
    _customers_by_rut: dict[str, list[str]] = field(default_factory=dict)
    _loaded_customers: bool = False

    def invoices_named(self, tokens: Iterable[str]) -> list[Invoice]:
        """The tenant's invoices whose folio is one of the tokens, in folio order."""
        wanted = set(tokens) - set(self._invoices)
        if wanted:
            with session_scope(self.engine) as session:
                found = session.exec(
                    select(Invoice).where(
                        Invoice.tenant == self.tenant,
                        col(Invoice.invoice_number).in_(wanted),
                    )
                ).all()
            for invoice in found:
                self._remember(invoice)
        named = [self._invoices[t] for t in set(tokens) if t in self._invoices]
        return sorted(named, key=lambda invoice: invoice.invoice_number)

    def invoices_unpadded(self, tokens: Iterable[str]) -> dict[str, list[Invoice]]:
        """For numbers that are no folio as written, the invoices that are, zero-padded."""
        # Limit: ltrim on the column reads every invoice of the tenant; a column holding
        # the folio without its zeros, indexed, would lift it for very large portfolios.
        wanted = {t.lstrip("0"): t for t in tokens if t.isdigit() and t.lstrip("0")}
        if not wanted:
            return {}
        with session_scope(self.engine) as session:
            found = session.exec(
                select(Invoice).where(
                    Invoice.tenant == self.tenant,
                    func.ltrim(col(Invoice.invoice_number), "0").in_(list(wanted)),
                )
            ).all()
        padded: dict[str, list[Invoice]] = {}
        for invoice in sorted(found, key=lambda i: i.invoice_number):
            self._remember(invoice)
            token = wanted[invoice.invoice_number.lstrip("0")]
            if invoice.invoice_number != token:
                padded.setdefault(token, []).append(
                    self._invoices[invoice.invoice_number]
                )
        return padded

    def open_invoices_of(self, customer_id: str) -> list[Invoice]:
        """The customer's open invoices with money still owed, in folio order."""
        with session_scope(self.engine) as session:
            found = session.exec(
                select(Invoice).where(
                    Invoice.tenant == self.tenant,
                    Invoice.customer_id == customer_id,
                    Invoice.status == InvoiceStatus.OPEN,
                )
            ).all()
        for invoice in found:
            self._remember(invoice)
        held = [self._invoices[i.invoice_number] for i in found]
        return sorted(
            (i for i in held if self.balances[i.invoice_number] > 0),
            key=lambda invoice: invoice.invoice_number,
        )

    def customers_paying(self, movement: BankMovement) -> tuple[list[str], str]:
        """The customers the payer's RUT or name points to, and which of the two did."""
        self._load_customers()
        ruts = ruts_in(
            " ".join((movement.payer_id, movement.payer_name, movement.remittance))
        )
        by_rut = sorted(
            {c for rut in ruts for c in self._customers_by_rut.get(rut, [])}
        )
        if by_rut:
            return by_rut, f"payer RUT {', '.join(ruts)}"
        name = normalised_name(movement.payer_name)
        by_name = sorted(self._customers_by_name.get(name, [])) if name else []
        return by_name, f"payer name {movement.payer_name!r}"

    def bank_payments_on(self, invoices: Iterable[Invoice]) -> tuple[str, ...]:
        """The payments recorded from bank lines on these invoices, as a person reads them."""
        folios = [invoice.invoice_number for invoice in invoices]
        if not folios:
            return ()
        with session_scope(self.engine) as session:
            found = session.exec(
                select(Payment)
                .where(
                    Payment.tenant == self.tenant,
                    col(Payment.invoice_number).in_(folios),
                    col(Payment.reference).startswith(REFERENCE_PREFIX),
                )
                .order_by(col(Payment.received_at))
            ).all()
        return tuple(
            f"{p.invoice_number} {format_amount(p.amount_minor, p.currency)} under "
            f"{p.reference}"
            for p in found
        )

    def take(self, allocations: Iterable[Allocation]) -> None:
        """Count the allocations against the balances, for the statement's later lines."""
        for allocation in allocations:
            self.balances[allocation.folio] -= allocation.amount_minor

    def _remember(self, invoice: Invoice) -> None:
        if invoice.invoice_number not in self._invoices:
            self._invoices[invoice.invoice_number] = invoice
            self.balances[invoice.invoice_number] = invoice.balance_minor

    def _load_customers(self) -> None:
        # Limit: every customer's name and id is read once per statement; a tenant with
        # millions of debtors would want a normalised-name column with an index instead.
        if self._loaded_customers:
            return
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(Customer.customer_id, Customer.name).where(
                    Customer.tenant == self.tenant
                )
            ).all()
        for customer_id, name in rows:
            self._customers_by_name.setdefault(normalised_name(name), []).append(
                customer_id
            )
            rut = normalise_rut(customer_id)
            if rut is not None:
                self._customers_by_rut.setdefault(rut, []).append(customer_id)
        self._loaded_customers = True


def decide(
    movement: BankMovement, items: OpenItems, *, allow_overpayment: bool
) -> Decision:
    """What to do with one movement; a matched one is counted against the balances."""
    if movement.returned:
        return _returned(movement, items)
    if movement.direction is Direction.DEBIT:
        return Decision(
            movement, Outcome.SKIPPED, reason="a debit: money out, no payment"
        )
    if movement.amount_minor == 0:
        return Decision(movement, Outcome.SKIPPED, reason="no money moved")
    tokens = folio_tokens(movement.remittance)
    named = items.invoices_named(tokens)
    unpadded = items.invoices_unpadded(tokens - {i.invoice_number for i in named})
    for token, padded in unpadded.items():
        payable = [i for i in padded if i.status == InvoiceStatus.OPEN]
        if len(payable) != 1:
            return _unmatched(
                movement,
                f"{token} is no folio as written; with leading zeros it may be one of the "
                "candidates",
                tuple(i.invoice_number for i in padded[:CANDIDATES_SHOWN]),
            )
        named.append(payable[0])
    named = sorted({i.invoice_number: i for i in named}.values(), key=_folio)
    if named:
        decision = _by_folio(movement, named, items, allow_overpayment)
    else:
        decision = _by_payer(movement, items)
    items.take(decision.allocations)
    return decision


def _folio(invoice: Invoice) -> str:
    return invoice.invoice_number


def stated_payer(movement: BankMovement) -> str:
    """The payer's name when the bank gives one apart from the remittance text, else ''."""
    # A cartola line without "Traspaso de:" carries its whole description as payer.
    return "" if movement.payer_name == movement.remittance else movement.payer_name


def _returned(movement: BankMovement, items: OpenItems) -> Decision:
    # A return undoes money already counted; which payment only a person can tell, so the
    # line names the bank payments on the folios in its text for them to compare.
    payer = f" from {stated_payer(movement)!r}" if stated_payer(movement) else ""
    named = items.invoices_named(folio_tokens(movement.remittance))
    return Decision(
        movement,
        Outcome.RETURNED,
        reason=f"a returned payment{payer}: check whether it reverses one already applied",
        candidates=items.bank_payments_on(named),
    )


def _by_folio(
    movement: BankMovement,
    named: list[Invoice],
    items: OpenItems,
    allow_overpayment: bool,
) -> Decision:
    folios = tuple(invoice.invoice_number for invoice in named)
    payable = [
        i
        for i in named
        if i.status == InvoiceStatus.OPEN and items.balances[i.invoice_number] > 0
    ]
    if not payable:
        states = ", ".join(f"{i.invoice_number} is {_state(i)}" for i in named)
        return _unmatched(
            movement,
            f"the text names {states}: a refund, or money for another invoice",
            folios,
        )
    closed = [i for i in named if i.status != InvoiceStatus.OPEN]
    if closed:
        # Applied wholly to the open folio, money meant in part for the closed one would
        # be counted as this debtor's payment; only a person can tell how it divides.
        states = ", ".join(
            f"invoice {i.invoice_number}, which is {_state(i)}" for i in closed
        )
        return _unmatched(
            movement,
            f"the text also names {states}: check what the payer meant before recording "
            "it on the open folio",
            _with_balances(payable, items),
        )
    others = _of_another_payer(movement, payable, items)
    if others:
        return _unmatched(movement, others, folios)
    foreign = [i for i in payable if i.currency != movement.currency]
    if foreign:
        return _unmatched(
            movement,
            f"a credit in {movement.currency}, but invoice {foreign[0].invoice_number} is in "
            f"{foreign[0].currency}: convert it and record it with pay",
            folios,
        )
    if len(payable) == 1:
        return _one_folio(movement, payable[0], items, allow_overpayment)
    balances = [items.balances[i.invoice_number] for i in payable]
    shown = _with_balances(payable, items)
    if sum(balances) != movement.amount_minor:
        total = format_amount(sum(balances), movement.currency)
        return _unmatched(
            movement,
            f"the text names several open folios, whose balances sum to {total}, not "
            "this amount",
            shown,
        )
    return Decision(
        movement,
        Outcome.APPLIED,
        matched_by=f"folios {', '.join(i.invoice_number for i in payable)} in the text, "
        "their balances summing to the amount",
        allocations=tuple(
            Allocation(i.invoice_number, b)
            for i, b in zip(payable, balances, strict=True)
        ),
    )


def _state(invoice: Invoice) -> str:
    return str(invoice.status).replace("_", " ")


def _of_another_payer(
    movement: BankMovement, payable: list[Invoice], items: OpenItems
) -> str:
    """Why the payer the line identifies cannot be paying these folios; empty if it can."""
    customers, how = items.customers_paying(movement)
    strangers = [i for i in payable if customers and i.customer_id not in customers]
    if not strangers:
        return ""
    folio = strangers[0]
    return (
        f"folio {folio.invoice_number} is customer {folio.customer_id}'s, but the {how} "
        f"is customer {', '.join(customers)}: a folio mistyped, or a payment for "
        "another's invoice"
    )


def _one_folio(
    movement: BankMovement, invoice: Invoice, items: OpenItems, allow_overpayment: bool
) -> Decision:
    folio = invoice.invoice_number
    balance = items.balances[folio]
    amount = movement.amount_minor
    if amount > balance and not allow_overpayment:
        return _unmatched(
            movement,
            f"more than the open balance of {folio} "
            f"({format_amount(balance, movement.currency)}): check it, or run again with "
            "--allow-overpayment if the debtor did pay more",
            _with_balances([invoice], items),
        )
    how = f"folio {folio} in the text"
    if amount < balance:
        left = format_amount(balance - amount, movement.currency)
        how += f", partial payment ({left} left)"
    elif amount > balance:
        how += f", overpaid by {format_amount(amount - balance, movement.currency)}"
    return Decision(
        movement,
        Outcome.APPLIED,
        matched_by=how,
        allocations=(Allocation(folio, amount),),
    )


def _by_payer(movement: BankMovement, items: OpenItems) -> Decision:
    customers, how = items.customers_paying(movement)
    if not customers:
        return _unmatched(
            movement, "no folio in the text, and the payer is no customer of the store"
        )
    if len(customers) > 1:
        return _unmatched(
            movement,
            f"no folio in the text; the {how} fits several customers",
            tuple(customers[:CANDIDATES_SHOWN]),
        )
    owed = items.open_invoices_of(customers[0])
    in_currency = [i for i in owed if i.currency == movement.currency]
    exact = [
        i
        for i in in_currency
        if items.balances[i.invoice_number] == movement.amount_minor
    ]
    if len(exact) == 1:
        return Decision(
            movement,
            Outcome.APPLIED,
            matched_by=f"{how} (customer {customers[0]}) and the exact open balance",
            allocations=(Allocation(exact[0].invoice_number, movement.amount_minor),),
        )
    if exact:
        reason = (
            f"no folio in the text; customer {customers[0]} has {len(exact)} open invoices "
            "of exactly this amount"
        )
        return _unmatched(movement, reason, _with_balances(exact, items))
    if owed and not in_currency:
        reason = (
            f"a credit in {movement.currency}, but customer {customers[0]} owes only in "
            f"{owed[0].currency}: convert it and record it with pay"
        )
    else:
        reason = (
            f"no folio in the text; customer {customers[0]} ({how}) has no open invoice "
            "of exactly this amount"
        )
    return _unmatched(movement, reason, _with_balances(owed, items))


def _with_balances(invoices: list[Invoice], items: OpenItems) -> tuple[str, ...]:
    return tuple(
        f"{i.invoice_number} ({format_amount(items.balances[i.invoice_number], i.currency)})"
        for i in invoices[:CANDIDATES_SHOWN]
    )


def _unmatched(
    movement: BankMovement, reason: str, candidates: tuple[str, ...] = ()
) -> Decision:
    return Decision(movement, Outcome.UNMATCHED, reason=reason, candidates=candidates)
