"""Chilean SII documents (DTE invoices, AEC cessions) read into the stop facts of invoices.

A DTE (documento tributario electrónico) is the signed XML of an invoice: its folio, the
issuer's and buyer's RUT (tax id), issue date (FchEmis), payment form (FmaPago: 1 cash,
2 credit, 3 free) and total (MntTotal). An AEC (archivo electrónico de cesión) records that
the issuer sold the invoice to a factor (the cesionario): from then on it is not theirs
to collect (Ley 19.983). Neither file carries the date the SII received the invoice, which
starts the buyer's eight days to reclaim it; that date comes from the portfolio import or
``starter.py stop-fact sii-received``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine

from receivables.importer import counted
from receivables.money import format_amount
from receivables.store import (
    Invoice,
    StopFactRecord,
    find_invoice,
    session_scope,
)

# Invoices the buyer owes on credit; other DTE types are named to say why they are refused.
INVOICE_TYPES = {33: "factura electrónica", 34: "factura exenta electrónica"}
OTHER_TYPES = {
    39: "boleta electrónica",
    41: "boleta exenta electrónica",
    46: "factura de compra electrónica",
    52: "guía de despacho electrónica",
    56: "nota de débito electrónica",
    61: "nota de crédito electrónica",
}
# SII documents never declare a DTD: refusing one shuts out entity-expansion attacks
# without a dependency beyond the standard library's parser.
_DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_RUT = re.compile(r"^(\d{1,8})-([\dK])$")


class SiiDocumentError(ValueError):
    """A file that cannot be applied: which file, what was wrong, and what to do."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        self.path, self.problem, self.remedy = path, problem, remedy
        super().__init__(f"{path}: {problem}; {remedy}")


@dataclass(frozen=True)
class DocumentId:
    """What names one invoice at the SII: type, folio, issuer and buyer."""

    document_type: int
    folio: str
    issuer_rut: str
    buyer_rut: str


@dataclass(frozen=True)
class TaxInvoice:
    """The facts a DTE invoice gives about the invoice it is."""

    document: DocumentId
    issued_on: date
    payment_form: int | None
    total: int  # MntTotal, whole pesos


@dataclass(frozen=True)
class Cession:
    """One cession of an AEC: the invoice, the factor it went to, and when."""

    document: DocumentId
    sequence: int  # SeqCesion: 1 for the issuer's sale, higher for later resales
    assignee: str  # "ST CAPITAL S.A. (76389992-6)"
    ceded_on: date


@dataclass
class SiiImportReport:
    """What an import applied, file by file, and the files it refused."""

    applied: list[str] = field(default_factory=list)
    refused: list[SiiDocumentError] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the operator."""
        lines = [f"applied: {line}" for line in self.applied]
        lines += [f"refused: {error}" for error in self.refused]
        unchanged = (
            "the refused file changed nothing"
            if len(self.refused) == 1
            else "the refused files changed nothing"
        )
        lines.append(
            f"{counted(len(self.applied), 'fact')} applied, "
            f"{counted(len(self.refused), 'file')} refused"
            + (f"; {unchanged}" if self.refused else "")
        )
        return "\n".join(lines)


# -- reading -----------------------------------------------------------------------------


def read_sii_file(path: Path) -> list[TaxInvoice | Cession]:
    """The invoices and cessions of one DTE, EnvioDTE or AEC file."""
    root = _parse(path)
    kind = _local(root.tag)
    if kind == "AEC":
        return [*_cessions(path, root)]
    if kind in ("DTE", "EnvioDTE"):
        return [_tax_invoice(path, doc) for doc in _all(root, "Documento")]
    raise SiiDocumentError(
        path,
        f"a <{kind}> document is neither a DTE nor an AEC",
        "give the signed XML of an invoice (DTE) or of its cession (AEC)",
    )


def _parse(path: Path) -> ElementTree.Element:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SiiDocumentError(
            path, f"cannot be read ({error.strerror})", "check the path"
        ) from None
    if _DECLARATIONS.search(raw[:4096]):
        raise SiiDocumentError(
            path,
            "declares a DTD or entities, which SII documents never do",
            "use the file as the SII or the issuer's system produced it",
        )
    try:
        return ElementTree.fromstring(raw)
    except ElementTree.ParseError as error:
        raise SiiDocumentError(
            path,
            f"is not well-formed XML ({error})",
            "give the XML file itself, not a PDF or a printed copy",
        ) from None


def _local(tag: str) -> str:
    # The SII namespace is present in some files (AEC, EnvioDTE) and absent in others.
    return tag.rsplit("}", 1)[-1]


def _all(node: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    return (child for child in node.iter() if _local(child.tag) == name)


def _child(node: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((c for c in node if _local(c.tag) == name), None)


def _text(path: Path, node: ElementTree.Element, *names: str) -> str:
    """The text at a path of child names; a missing one is an error naming the path."""
    current: ElementTree.Element | None = node
    for name in names:
        current = None if current is None else _child(current, name)
    value = (current.text or "").strip() if current is not None else ""
    if not value:
        raise SiiDocumentError(
            path,
            f"has no {'/'.join(names)} in <{_local(node.tag)}>",
            "the document is incomplete; ask the issuer for the complete XML",
        )
    return value


def _number(path: Path, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SiiDocumentError(
            path, f"{what} is {text!r}, not a whole number", "fix the file"
        ) from None


def _date(path: Path, text: str, what: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise SiiDocumentError(
            path, f"{what} is {text!r}, not a date YYYY-MM-DD", "fix the file"
        ) from None


def _document_type(path: Path, text: str) -> int:
    document_type = _number(path, text, "TipoDTE")
    if document_type in INVOICE_TYPES:
        return document_type
    known = OTHER_TYPES.get(document_type)
    raise SiiDocumentError(
        path,
        f"document type {document_type}"
        + (f" ({known})" if known else " is unknown")
        + " is not an invoice a buyer owes",
        "only invoices (types 33 and 34) carry stop facts; record a credit note with "
        "'starter.py pay --credit'",
    )


def _tax_invoice(path: Path, document: ElementTree.Element) -> TaxInvoice:
    header = _child(document, "Encabezado")
    if header is None:
        raise SiiDocumentError(
            path, "has a Documento without Encabezado", "fix the file"
        )
    id_doc = _child(header, "IdDoc")
    form = None if id_doc is None else _child(id_doc, "FmaPago")
    return TaxInvoice(
        DocumentId(
            _document_type(path, _text(path, header, "IdDoc", "TipoDTE")),
            _text(path, header, "IdDoc", "Folio"),
            _rut(_text(path, header, "Emisor", "RUTEmisor")),
            _rut(_text(path, header, "Receptor", "RUTRecep")),
        ),
        _date(path, _text(path, header, "IdDoc", "FchEmis"), "FchEmis"),
        _payment_form(path, form.text if form is not None else None),
        _number(path, _text(path, header, "Totales", "MntTotal"), "MntTotal"),
    )


def _payment_form(path: Path, text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    form = _number(path, text.strip(), "FmaPago")
    if form not in (1, 2, 3):
        raise SiiDocumentError(
            path, f"FmaPago is {form}; the SII defines 1, 2 and 3", "fix the file"
        )
    return form


def _cessions(path: Path, root: ElementTree.Element) -> Iterator[Cession]:
    found = list(_all(root, "DocumentoCesion"))
    if not found:
        raise SiiDocumentError(
            path, "is an AEC without any DocumentoCesion", "fix the file"
        )
    for cession in found:
        ids = ("IdDTE",)
        assignee_name = _text(path, cession, "Cesionario", "RazonSocial")
        assignee_rut = _rut(_text(path, cession, "Cesionario", "RUT"))
        yield Cession(
            DocumentId(
                _document_type(path, _text(path, cession, *ids, "TipoDTE")),
                _text(path, cession, *ids, "Folio"),
                _rut(_text(path, cession, *ids, "RUTEmisor")),
                _rut(_text(path, cession, *ids, "RUTReceptor")),
            ),
            _number(path, _text(path, cession, "SeqCesion"), "SeqCesion"),
            f"{assignee_name} ({assignee_rut})",
            _date(path, _text(path, cession, "TmstCesion"), "TmstCesion"),
        )


def _rut(text: str) -> str:
    """A RUT as the SII writes it: digits, hyphen, check digit in upper case."""
    return text.replace(".", "").replace(" ", "").upper()


# -- applying ----------------------------------------------------------------------------


def import_sii_documents(
    engine: Engine, tenant: str, paths: Sequence[Path], *, recorded_by: str
) -> SiiImportReport:
    """Set the stop facts each file gives on the matching invoices, one file at a time.

    A file is applied whole or not at all, in its own transaction: a refused file changes
    nothing, and the files applied before it stay applied.
    """
    report = SiiImportReport()
    for path in paths:
        try:
            facts = read_sii_file(path)
            report.applied += _apply(engine, tenant, path, facts, recorded_by)
        except SiiDocumentError as error:
            report.refused.append(error)
    return report


def _apply(
    engine: Engine,
    tenant: str,
    path: Path,
    facts: Iterable[TaxInvoice | Cession],
    recorded_by: str,
) -> list[str]:
    applied = []
    with session_scope(engine) as session:
        for fact in facts:
            invoice = find_invoice(session, tenant, fact.document.folio)
            _check_match(path, tenant, invoice, fact)
            assert invoice is not None
            changes = (
                _invoice_facts(invoice, fact)
                if isinstance(fact, TaxInvoice)
                else _cession_facts(invoice, fact)
            )
            for name, value in changes:
                session.add(
                    StopFactRecord(
                        tenant=tenant,
                        customer_id=invoice.customer_id,
                        invoice_number=invoice.invoice_number,
                        fact=name,
                        value=value,
                        source=f"sii {path.name}",
                        recorded_by=recorded_by,
                        reason=f"{_describe(fact)} in {path.name}",
                    )
                )
                applied.append(f"{invoice.invoice_number} {name} {value} ({path.name})")
            session.add(invoice)
    return applied


def _check_match(
    path: Path, tenant: str, invoice: Invoice | None, fact: TaxInvoice | Cession
) -> None:
    """Refuse a document that names no stored invoice, or an invoice of another buyer."""
    document = fact.document
    if invoice is None:
        raise SiiDocumentError(
            path,
            f"folio {document.folio} ({INVOICE_TYPES[document.document_type]} of "
            f"{document.issuer_rut}) is not in the store of tenant {tenant}",
            "import the portfolio that holds it first, then this file again",
        )
    stored_rut = _RUT.match(_rut(invoice.customer_id))
    if stored_rut and _rut(invoice.customer_id) != document.buyer_rut:
        raise SiiDocumentError(
            path,
            f"folio {document.folio} in the store is owed by {invoice.customer_id}, but "
            f"the document names buyer {document.buyer_rut}",
            "check that the file is this creditor's invoice; nothing was changed",
        )
    if (
        isinstance(fact, TaxInvoice)
        and invoice.currency == "CLP"
        and invoice.amount_minor != fact.total
    ):
        raise SiiDocumentError(
            path,
            f"folio {document.folio} totals {format_amount(fact.total, 'CLP')} in the "
            f"document but {format_amount(invoice.amount_minor, 'CLP')} in the store",
            "check that the file is this invoice's; nothing was changed",
        )


def _invoice_facts(invoice: Invoice, fact: TaxInvoice) -> list[tuple[str, str]]:
    """The DTE is the invoice itself: its payment form replaces what the import said."""
    if fact.payment_form is None or invoice.payment_form == fact.payment_form:
        return []
    before = invoice.payment_form
    invoice.payment_form = fact.payment_form
    return [
        (
            "payment_form",
            f"{fact.payment_form}" + (f" (was {before})" if before else ""),
        )
    ]


def _cession_facts(invoice: Invoice, fact: Cession) -> list[tuple[str, str]]:
    """The first cession's date stops the issuer's collection; the latest names the factor."""
    changes = []
    if invoice.ceded_on is None or fact.ceded_on < invoice.ceded_on:
        invoice.ceded_on = fact.ceded_on
        changes.append(("ceded", f"{fact.ceded_on} to {fact.assignee}"))
    if invoice.ceded_to != fact.assignee and (
        invoice.ceded_to is None or fact.sequence > 1
    ):
        invoice.ceded_to = fact.assignee
        if not changes:
            changes.append(("ceded", f"now held by {fact.assignee}"))
    return changes


def _describe(fact: TaxInvoice | Cession) -> str:
    kind = INVOICE_TYPES[fact.document.document_type]
    if isinstance(fact, TaxInvoice):
        return f"{kind} {fact.document.folio} issued {fact.issued_on}"
    return f"cession {fact.sequence} of {kind} {fact.document.folio}"
