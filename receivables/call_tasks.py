"""Calls and visits as contacts: the gate decides each task, the ledger records each call made."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from receivables.case import (
    CallTaskOffer,
    CallTaskRequest,
    CallTaskStatus,
    TaskOutcome,
)
from receivables.contact_gate import GateResult, gate_contact, trace
from receivables.contact_rules import Verdict
from receivables.ledger import ContactKey, ContactLedger
from receivables.policy import VOICE_TASK_CHANNELS, voice_channel_of
from receivables.store import (
    ContactAttempt,
    ContactLedgerEntry,
    ContactStatus,
    find_customer,
    find_invoice,
    session_scope,
)

if TYPE_CHECKING:
    from receivables.tasks import HumanTask


class CallTaskError(ValueError):
    """A call step that cannot be decided, saying what is missing."""


def call_key(
    tenant: str, invoice_number: str, step_id: str, channel: str
) -> ContactKey:
    """The ledger key of a call or visit: the person reaches the debtor by any number on file."""
    # The debtor, not a phone number, is the recipient: a number fixed by a data_fix task
    # must not turn the same planned call into a second contact.
    return ContactKey(tenant, invoice_number, step_id, channel, "debtor")


def gate_call(engine: Engine, request: CallTaskRequest, now: datetime) -> CallTaskOffer:
    """Ask the gate about a call or visit; OFFERED means the task may be opened now.

    Allowed, the ledger entry stays pending from the moment the task is offered, so the
    weekly cap counts it while an executive works it. Deferred, nothing is offered: the
    case waits for the lawful instant and asks again, so an inbox never holds a call that
    may not be made yet. Denied by a stop rule, no task is opened at all.
    """
    key = _key_of(request)
    if request.jurisdiction is None:
        # No profile decides anything, but the call is still a contact on the ledger.
        ContactLedger(engine).begin_attempt(
            key,
            policy=(request.policy_name, request.policy_version),
            planned_at=request.planned_at,
        )
        return CallTaskOffer(
            CallTaskStatus.OFFERED, "allow: no contact-rule profile applies"
        )
    decision = _gate(engine, key, request, now).decision
    if decision.verdict is Verdict.DEFER:
        return CallTaskOffer(
            CallTaskStatus.DEFERRED, trace(decision), retry_at=decision.at
        )
    if decision.verdict is Verdict.DENY:
        return CallTaskOffer(CallTaskStatus.STOPPED, trace(decision))
    return CallTaskOffer(CallTaskStatus.OFFERED, trace(decision))


def note_offered(
    engine: Engine, request: CallTaskRequest, offer: CallTaskOffer
) -> None:
    """Write on the call's ledger entry which task carries it and to whom it went."""
    assert offer.task is not None
    ledger = ContactLedger(engine)
    entry = ledger.find(_key_of(request))
    assert entry is not None
    detail = f"task {offer.task.task_id} for {offer.task.assignee_id}; {offer.trace}"
    ledger.note(entry.entry_id, "task_offered", detail)


def _key_of(request: CallTaskRequest) -> ContactKey:
    task = request.task
    return call_key(task.tenant, task.invoice_number, task.step_id, request.channel)


def _gate(
    engine: Engine, key: ContactKey, request: CallTaskRequest, now: datetime
) -> GateResult:
    with session_scope(engine) as session:
        invoice = find_invoice(session, key.tenant, key.invoice_number)
        customer = (
            find_customer(session, invoice.tenant, invoice.customer_id)
            if invoice is not None
            else None
        )
    if customer is None:
        raise CallTaskError(
            f"invoice {key.invoice_number} of tenant {key.tenant} has no debtor in the "
            "store; import the invoice with its customer before its case calls"
        )
    assert request.jurisdiction is not None
    result = gate_contact(
        engine,
        key,
        customer=customer,
        jurisdiction=request.jurisdiction,
        policy=(request.policy_name, request.policy_version),
        planned_at=request.planned_at,
        now=now,
    )
    # Only written contacts ride on statements; a call is always decided on its own.
    assert isinstance(result, GateResult)
    return result


def record_call_made(
    session: Session, task: HumanTask, outcome: TaskOutcome, at: datetime
) -> None:
    """A worked call or visit is a contact made at ``at``: the caps count it from then.

    Every completed call counts, answered or not: a call that rang unanswered still
    reached for the debtor, and the strict reading keeps the weekly cap safe.
    """
    channel = voice_channel_of(task.kind)
    if channel is None:
        return
    entry = _call_entry(session, task, channel)
    entry.status, entry.decided_at = ContactStatus.SENT, at
    entry.reason = f"{channel} made by {outcome.completed_by}: {outcome.kind}"
    entry.attempts = max(entry.attempts, 1)
    session.add(entry)
    session.flush()
    assert entry.id is not None
    session.add(
        ContactAttempt(
            ledger_entry_id=entry.id,
            attempt=entry.attempts,
            outcome=str(ContactStatus.SENT),
            detail=f"task {task.id} done: {entry.reason}",
            at=at,
        )
    )


def release_call(session: Session, task: HumanTask, at: datetime) -> None:
    """A call task cancelled before anyone called: its contact no longer counts."""
    channel = voice_channel_of(task.kind)
    if channel is None:
        return
    entry = session.exec(_entries_of(task).where(ContactLedgerEntry.channel == channel))
    found = entry.first()
    if found is None or found.status != ContactStatus.PENDING:
        return
    found.status, found.decided_at = ContactStatus.CANCELLED, at
    found.reason = f"task {task.id} cancelled before the {channel} was made"
    session.add(found)
    assert found.id is not None
    session.add(
        ContactAttempt(
            ledger_entry_id=found.id,
            attempt=found.attempts,
            outcome=str(ContactStatus.CANCELLED),
            detail=found.reason,
            at=at,
        )
    )


def _call_entry(session: Session, task: HumanTask, channel: str) -> ContactLedgerEntry:
    """The ledger entry the gate wrote when the task was offered, or a new one."""
    found = session.exec(
        _entries_of(task).where(ContactLedgerEntry.channel == channel)
    ).first()
    if found is not None:
        return found
    # A task opened before calls passed the gate has no entry: the call still counts.
    invoice = find_invoice(session, task.tenant, task.invoice_number)
    key = call_key(task.tenant, task.invoice_number, task.step_id, channel)
    return ContactLedgerEntry(
        **key.__dict__,
        policy_name=(invoice.policy_name if invoice else None) or "(unknown)",
        policy_version=(invoice.policy_version if invoice else None) or 0,
        planned_at=task.opened_at,
    )


def _entries_of(task: HumanTask) -> SelectOfScalar[ContactLedgerEntry]:
    return select(ContactLedgerEntry).where(
        ContactLedgerEntry.tenant == task.tenant,
        ContactLedgerEntry.invoice_number == task.invoice_number,
        ContactLedgerEntry.step_id == task.step_id,
        col(ContactLedgerEntry.channel).in_(list(VOICE_TASK_CHANNELS.values())),
    )
