"""ISO 20022 camt.053 bank-to-customer statements, any version, read into bank movements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date
from pathlib import Path

from receivables.bank_movements import (
    INCOMPLETE_HINT,
    BankMovement,
    Direction,
    FallbackIds,
    StatementError,
    minor_units_at,
    on_account,
    with_distinct_ids,
)

# Every version (001.02, 001.04, 001.08...) keeps these names; only the namespace differs.
_ANY = "{*}"
_HINT = "download the statement again from the bank, as camt.053"


def read_camt053(path: Path, data: bytes) -> list[BankMovement]:
    """Each booked transaction of each statement in the document, in file order.

    An entry the bank split into transaction details (a batch of payments credited as one
    sum) gives one movement per detail: each detail is one payer paying one invoice.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise StatementError(
            path, f"line {error.position[0]}", "is not well-formed XML", _HINT
        ) from None
    statements = root.findall(f"{_ANY}BkToCstmrStmt/{_ANY}Stmt")
    if not statements:
        raise StatementError(path, "Document", "holds no BkToCstmrStmt/Stmt", _HINT)
    movements: list[BankMovement] = []
    ids = FallbackIds()
    entries = 0
    for statement in statements:
        account = _account(statement)
        for entry in statement.findall(f"{_ANY}Ntry"):
            entries += 1
            status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
            if status not in ("", "BOOK"):
                continue  # pending or informational: not money on the account yet
            found = _entry_movements(path, entry, account, entries, ids)
            before = len(movements)
            movements.extend(replace(m, line=before + n) for n, m in found)
        _require_closing_balance(path, statement)
    return with_distinct_ids(movements)


def _require_closing_balance(path: Path, statement: ET.Element) -> None:
    """Refuse a statement that opens with a balance but gives none to close with.

    Limit: the entries are not added up against the balances. The ISO sample the tests
    read (oca_test-camt053.xml) opens at 15568.27 and closes at 15121.12 EUR, yet its
    booked entries net -12.99, so a bank's complete file may not add up either; checking
    the sum needs a statement known to balance from each bank reconcile serves.
    """
    codes = {
        _text(balance, "Tp", "CdOrPrtry", "Cd")
        for balance in statement.findall(f"{_ANY}Bal")
    }
    # PRCD, the closing booked balance of the previous statement, opens this one too.
    if codes & {"OPBD", "PRCD"} and "CLBD" not in codes:
        where = f"statement {_text(statement, 'Id')}".strip()
        raise StatementError(
            path, where, "has no closing balance (CLBD)", INCOMPLETE_HINT
        )


def _entry_movements(
    path: Path, entry: ET.Element, account: str, number: int, ids: FallbackIds
) -> list[tuple[int, BankMovement]]:
    """The entry's movements, each with its detail's number (1 for the first)."""
    where = f"entry {number}"
    booked = _date(path, entry, "BookgDt", where)
    valued = _date(path, entry, "ValDt", where) if _find(entry, "ValDt") else booked
    details = entry.findall(f"{_ANY}NtryDtls/{_ANY}TxDtls")
    entry_reversed = _text(entry, "RvslInd").lower() == "true"
    if not details:
        details = [entry]
    references = [_detail_reference(detail, entry, len(details)) for detail in details]
    movements = []
    for position, detail in enumerate(details, start=1):
        place = where if len(details) == 1 else f"{where}, detail {position}"
        amount_element = _amount_element(entry, detail, len(details))
        if amount_element is None:
            raise StatementError(path, f"{place}, Amt", "is missing", _HINT)
        currency = amount_element.get("Ccy", "")
        amount = minor_units_at(
            path, f"{place}, Amt", amount_element.text or "", currency, _HINT
        )
        if amount is None or not currency:
            shown = f"{amount_element.text!r} {currency!r}"
            raise StatementError(path, f"{place}, Amt", f"{shown} is no amount", _HINT)
        sign = _text(detail, "CdtDbtInd") or _text(entry, "CdtDbtInd")
        direction = Direction.CREDIT if sign == "CRDT" else Direction.DEBIT
        payer_name = _payer_name(detail, direction)
        remittance = _remittance(detail)
        reference = references[position - 1]
        if references.count(reference) > 1:
            reference = f"{reference}/{position}"  # one reference for the whole batch
        if not reference:
            signed = amount if direction is Direction.CREDIT else -amount
            reference = ids.next_id(
                account, booked, signed, currency, f"{payer_name} {remittance}"
            )
        movements.append(
            (
                position,
                BankMovement(
                    line=0,  # numbered in the file by the caller
                    place=place,
                    transaction_id=on_account(account, reference),
                    account=account,
                    booking_date=booked,
                    value_date=valued,
                    amount_minor=amount,
                    currency=currency,
                    direction=direction,
                    returned=entry_reversed or _find(detail, "RtrInf") is not None,
                    payer_name=payer_name,
                    payer_id=_payer_id(detail, direction),
                    remittance=remittance,
                ),
            )
        )
    return movements


def _amount_element(
    entry: ET.Element, detail: ET.Element, details: int
) -> ET.Element | None:
    """A detail's own amount; a lone detail, or the entry itself, has the entry's."""
    if details > 1:
        for names in (("Amt",), ("AmtDtls", "TxAmt", "Amt")):
            found = _find(detail, *names)
            if found is not None:
                return found
    return _find(entry, "Amt")


def _detail_reference(detail: ET.Element, entry: ET.Element, details: int) -> str:
    """The bank's own reference for the transaction; the entry's serves a lone detail."""
    own = _text(detail, "Refs", "AcctSvcrRef")
    if own:
        return own
    if details == 1 and _text(entry, "AcctSvcrRef"):
        return _text(entry, "AcctSvcrRef")
    # The instruction id the paying bank gave; the end-to-end id is the payer's own text.
    return _text(detail, "Refs", "InstrId")


def _payer_name(detail: ET.Element, direction: Direction) -> str:
    party = "Dbtr" if direction is Direction.CREDIT else "Cdtr"
    # camt.053.001.08 wraps the party in Pty; earlier versions do not.
    return _text(detail, "RltdPties", party, "Nm") or _text(
        detail, "RltdPties", party, "Pty", "Nm"
    )


def _payer_id(detail: ET.Element, direction: Direction) -> str:
    party = "Dbtr" if direction is Direction.CREDIT else "Cdtr"
    for path in (
        (party, "Id", "OrgId", "Othr", "Id"),
        (party, "Pty", "Id", "OrgId", "Othr", "Id"),
        (party, "Id", "PrvtId", "Othr", "Id"),
        (party, "Pty", "Id", "PrvtId", "Othr", "Id"),
    ):
        found = _text(detail, "RltdPties", *path)
        if found:
            return found
    return ""


def _remittance(detail: ET.Element) -> str:
    """What the payer wrote: unstructured lines, creditor references, additional text."""
    parts = [line.text or "" for line in detail.findall(f"{_ANY}RmtInf/{_ANY}Ustrd")]
    for structured in detail.findall(f"{_ANY}RmtInf/{_ANY}Strd"):
        parts.append(_text(structured, "CdtrRefInf", "Ref"))
        parts.extend(
            line.text or "" for line in structured.findall(f"{_ANY}AddtlRmtInf")
        )
    parts.append(_text(detail, "AddtlTxInf"))
    return " ".join(part.strip() for part in parts if part.strip())


def _account(statement: ET.Element) -> str:
    return _text(statement, "Acct", "Id", "IBAN") or _text(
        statement, "Acct", "Id", "Othr", "Id"
    )


def _date(path: Path, entry: ET.Element, name: str, where: str) -> date:
    text = _text(entry, name, "Dt") or _text(entry, name, "DtTm")[:10]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StatementError(
            path, f"{where}, {name}", f"{text!r} is not a date (YYYY-MM-DD)", _HINT
        ) from None


def _find(element: ET.Element, *names: str) -> ET.Element | None:
    return element.find("/".join(_ANY + name for name in names))


def _text(element: ET.Element, *names: str) -> str:
    found = _find(element, *names)
    return (found.text or "").strip() if found is not None else ""
