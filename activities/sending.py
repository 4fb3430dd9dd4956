"""The send activity: re-check the invoice, render, record in the ledger, deliver once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import (
    ChannelError,
    MessageChannel,
    OutgoingMessage,
    idempotency_key,
)
from receivables.contact_gate import gate_contact, trace
from receivables.contact_rules import Verdict
from receivables.ledger import ContactKey, ContactLedger, LedgerSnapshot
from receivables.messages import (
    MessageContext,
    RenderedMessage,
    TemplateRenderError,
    render_message,
)
from receivables.money import format_amount
from receivables.planning import local_date_of
from receivables.store import (
    ContactStatus,
    Customer,
    Invoice,
    InvoiceStatus,
    find_customer,
    find_invoice,
    session_scope,
)


@dataclass(frozen=True)
class CreditorProfile:
    """Who is collecting, as the debtor reads it in every message."""

    name: str = "Servicios Andinos SpA"
    contact: str = "cobranzas@servicios-andinos.example"
    payment_instructions: str = (
        "Transferencia a Banco Ejemplo, cuenta corriente 00-000-00000-00, "
        "RUT 76.000.000-0, indicando el folio"
    )


@dataclass(frozen=True)
class _Route:
    channel: str
    recipient: str


class ReminderSender:
    """Sends one planned step of one invoice, at most once per (step, channel, recipient)."""

    def __init__(
        self,
        engine: Engine,
        channels: dict[str, MessageChannel],
        templates_dir: Path,
        creditor: CreditorProfile | None = None,
    ) -> None:
        self._engine = engine
        self._channels = channels
        self._templates_dir = templates_dir
        self._creditor = creditor or CreditorProfile()
        self._ledger = ContactLedger(engine)

    @activity.defn(name="send_reminder")
    def send_reminder(self, request: SendReminderRequest) -> SendOutcome:
        """Deliver a reminder unless committed state says the invoice is no longer payable."""
        now = activity.info().current_attempt_scheduled_time
        with session_scope(self._engine) as session:
            invoice = find_invoice(session, request.tenant, request.invoice_number)
            if invoice is None:
                raise ApplicationError(
                    f"invoice {request.invoice_number} of tenant {request.tenant} is not in "
                    "the store; import it before starting its case",
                    non_retryable=True,
                )
            customer = find_customer(session, invoice.tenant, invoice.customer_id)

        route = self._choose_route(request, customer)
        key = self._key(request, route)
        delivered = self._delivered_before(key, now)
        if delivered is not None:
            return delivered
        refusal = _why_not_payable(invoice)
        if refusal is not None:
            return self._decide(request, key, ContactStatus.CANCELLED, refusal, now)
        if route is None or customer is None:
            reason = "no reachable contact on " + ", ".join(_channels_of(request))
            return self._decide(request, key, ContactStatus.BLOCKED, reason, now)

        try:
            rendered = self._render(request, route, invoice, customer, now)
        except (TemplateRenderError, ValueError) as error:
            return self._decide(request, key, ContactStatus.BLOCKED, str(error), now)
        variables = _template_variables(invoice, request)
        return self._deliver(request, key, customer, rendered, now, variables)

    def _begin(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        customer: Customer,
        now: datetime,
    ) -> LedgerSnapshot | SendOutcome:
        """Count one more attempt, after the contact rules allowed it where a profile applies."""
        policy = (request.policy_name, request.policy_version)
        known = self._ledger.find(key)
        if known is not None and known.status == ContactStatus.SENT:
            return SendOutcome(
                SendStatus.SENT, key.channel, "sent", known.provider_message_id, True
            )
        if request.jurisdiction is None:
            return self._ledger.begin_attempt(
                key, policy=policy, planned_at=request.planned_at
            )
        gate = gate_contact(
            self._engine,
            key,
            customer=customer,
            jurisdiction=request.jurisdiction,
            policy=policy,
            planned_at=request.planned_at,
            now=now,
        )
        verdict = gate.decision.verdict
        if verdict is Verdict.ALLOW:
            assert gate.entry_id is not None
            return LedgerSnapshot(
                gate.entry_id, ContactStatus.PENDING, gate.attempts, None
            )
        activity.logger.info(
            "%s %s of %s: %s",
            verdict,
            key.step_id,
            key.invoice_number,
            gate.decision.reason,
        )
        _count(str(verdict), key.channel)
        if verdict is Verdict.DEFER:
            return SendOutcome(
                SendStatus.DEFERRED,
                key.channel,
                trace(gate.decision),
                retry_at=gate.decision.at,
            )
        return SendOutcome(SendStatus.CANCELLED, key.channel, trace(gate.decision))

    def _deliver(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        customer: Customer,
        rendered: RenderedMessage,
        now: datetime,
        variables: dict[str, str],
    ) -> SendOutcome:
        entry_or_outcome = self._begin(request, key, customer, now)
        if isinstance(entry_or_outcome, SendOutcome):
            return entry_or_outcome
        entry = entry_or_outcome

        channel = self._channels[key.channel]
        message_key = idempotency_key(*key.__dict__.values())
        if entry.attempts > 1:
            # The previous attempt may have reached the channel before the worker died.
            already = channel.find_sent(message_key)
            if already is not None:
                self._ledger.finish(
                    entry.entry_id,
                    ContactStatus.SENT,
                    reason="accepted by the channel on an earlier attempt",
                    at=now,
                    provider_message_id=already,
                )
                return SendOutcome(SendStatus.SENT, key.channel, "sent", already, True)

        try:
            message_id = channel.send(
                _outgoing(message_key, key, request, rendered, variables)
            )
        except ChannelError as error:
            status = ContactStatus.PENDING if error.retryable else ContactStatus.FAILED
            self._ledger.finish(entry.entry_id, status, reason=str(error), at=now)
            _count("failed", key.channel)
            if error.retryable:
                raise
            return SendOutcome(SendStatus.FAILED, key.channel, str(error))

        self._ledger.finish(
            entry.entry_id,
            ContactStatus.SENT,
            reason="sent",
            at=now,
            provider_message_id=message_id,
        )
        activity.logger.info(
            "sent %s of %s by %s", key.step_id, key.invoice_number, key.channel
        )
        _count("sent", key.channel)
        return SendOutcome(SendStatus.SENT, key.channel, "sent", message_id)

    def _delivered_before(self, key: ContactKey, now: datetime) -> SendOutcome | None:
        """An attempt that died after the channel accepted it counts as sent, paid or not."""
        entry = self._ledger.find(key)
        if (
            entry is None
            or entry.status != ContactStatus.PENDING
            or key.channel not in self._channels
        ):
            return None
        message_id = self._channels[key.channel].find_sent(
            idempotency_key(*key.__dict__.values())
        )
        if message_id is None:
            return None
        self._ledger.finish(
            entry.entry_id,
            ContactStatus.SENT,
            reason="accepted by the channel on an earlier attempt",
            at=now,
            provider_message_id=message_id,
        )
        return SendOutcome(SendStatus.SENT, key.channel, "sent", message_id, True)

    def _decide(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        status: ContactStatus,
        reason: str,
        now: datetime,
    ) -> SendOutcome:
        entry = self._ledger.record_decision(
            key,
            status,
            reason=reason,
            policy=(request.policy_name, request.policy_version),
            planned_at=request.planned_at,
            at=now,
        )
        if entry.status == ContactStatus.SENT:
            # An earlier attempt delivered it (its result was lost): the debtor has the
            # message whatever changed since, so the case must record it as sent.
            return SendOutcome(
                SendStatus.SENT, key.channel, "sent", entry.provider_message_id, True
            )
        activity.logger.info(
            "did not send %s of %s: %s", key.step_id, key.invoice_number, status
        )
        return SendOutcome(SendStatus(str(status)), key.channel, reason)

    def _choose_route(
        self, request: SendReminderRequest, customer: Customer | None
    ) -> _Route | None:
        if customer is None:
            return None
        for channel in _channels_of(request):
            recipient = _address_for(customer, channel)
            if recipient and channel in self._channels:
                return _Route(channel, recipient)
        return None

    def _key(self, request: SendReminderRequest, route: _Route | None) -> ContactKey:
        return ContactKey(
            tenant=request.tenant,
            invoice_number=request.invoice_number,
            step_id=request.step_id,
            channel=route.channel if route else request.channel,
            recipient=route.recipient if route else "(none)",
        )

    def _render(
        self,
        request: SendReminderRequest,
        route: _Route,
        invoice: Invoice,
        customer: Customer,
        now: datetime,
    ) -> RenderedMessage:
        assert invoice.due_date is not None
        context = MessageContext(
            creditor_name=self._creditor.name,
            customer_name=customer.name,
            invoice_number=invoice.invoice_number,
            issue_date=invoice.issue_date,
            due_date=invoice.due_date,
            amount_minor=invoice.amount_minor,
            balance_minor=invoice.balance_minor - request.disputed_minor,
            currency=invoice.currency,
            sent_on=local_date_of(now, customer.time_zone),
            payment_instructions=self._creditor.payment_instructions,
            creditor_contact=self._creditor.contact,
        )
        language = customer.language or request.language
        return render_message(
            self._templates_dir, request.template, route.channel, language, context
        )


def _count(outcome: str, channel: str) -> None:
    """Count a contact outcome on the worker's metrics (no personal data in the labels)."""
    counter = activity.metric_meter().create_counter(
        "dunning_contacts",
        "Contacts by outcome (sent, defer, deny, failed) and channel",
    )
    counter.add(1, {"outcome": outcome, "channel": channel})


def _why_not_payable(invoice: Invoice) -> str | None:
    if invoice.status != InvoiceStatus.OPEN:
        return f"invoice is {invoice.status} in the store at send time"
    if invoice.balance_minor <= 0:
        return f"balance is {invoice.balance_minor} at send time: nothing to collect"
    return None


def _channels_of(request: SendReminderRequest) -> list[str]:
    return [request.channel, *request.fallback_channels]


def _address_for(customer: Customer, channel: str) -> str | None:
    if channel == "email":
        return customer.email
    if channel == "sms":
        return customer.phone
    if channel == "whatsapp":
        return customer.whatsapp or customer.phone
    if channel == "letter":
        # Letters go to the postal address on file, printed by the creditor.
        return f"postal:{customer.customer_id}"
    return None


def _template_variables(
    invoice: Invoice, request: SendReminderRequest
) -> dict[str, str]:
    """What an approved provider template is filled with: folio, amount asked, due date."""
    asked = invoice.balance_minor - request.disputed_minor
    return {
        "1": invoice.invoice_number,
        "2": format_amount(asked, invoice.currency),
        "3": invoice.due_date.isoformat() if invoice.due_date else "",
    }


def _outgoing(
    message_key: str,
    key: ContactKey,
    request: SendReminderRequest,
    rendered: RenderedMessage,
    variables: dict[str, str],
) -> OutgoingMessage:
    return OutgoingMessage(
        idempotency_key=message_key,
        tenant=key.tenant,
        invoice_number=key.invoice_number,
        step_id=key.step_id,
        channel=key.channel,
        recipient=key.recipient,
        subject=rendered.subject,
        body=rendered.body,
        html_body=rendered.html_body,
        policy_name=request.policy_name,
        policy_version=request.policy_version,
        template_id=request.template,
        template_variables=variables,
    )
