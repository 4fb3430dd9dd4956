"""The send activity: re-check the invoice, route past closed addresses, deliver once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from receivables.case import SendOutcome, SendReminderRequest, SendStatus
from receivables.channels import (
    Answer,
    ChannelError,
    EarlierAttempt,
    MessageChannel,
    OutgoingMessage,
    idempotency_key,
    text_fingerprint,
)
from receivables.contact_gate import GateResult, gate_contact, trace
from receivables.contact_rules import Verdict
from receivables.deliveries import (
    OPTED_OUT,
    Suppression,
    closed_among,
    is_erased,
    suppress,
)
from receivables.ledger import (
    ContactKey,
    ContactLedger,
    LedgerSnapshot,
    MessageRecord,
    NotPayable,
    UnsettledAttempt,
    entries_of_step,
)
from receivables.logs import contact_fields
from receivables.messages import (
    STATEMENT_TEMPLATE,
    MessageContext,
    RenderedMessage,
    StatementLine,
    TemplateRenderError,
    render_message,
)
from receivables.money import format_amount
from receivables.planning import local_date_of
from receivables.policy import UnknownOutcome
from receivables.providers.errors import Failure, ProviderError
from receivables.providers.sms_encoding import (
    FieldChange,
    analyse_sms,
    describe_changes,
    transliterate,
)
from receivables.statements import (
    STATEMENT_IN_FLIGHT_RECHECK,
    CoveredByStatement,
    CoveredInvoice,
    release_statement,
)
from receivables.store import (
    ContactStatus,
    Customer,
    Invoice,
    find_customer,
    find_invoice,
    session_scope,
    why_not_payable,
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


# The workflow turns a BLOCKED outcome whose reason starts so into a "verify contact" task.
NO_REACHABLE_CONTACT = "no reachable contact"
# The workflow turns a BLOCKED outcome whose reason starts so into a "verify delivery" task.
OUTCOME_UNKNOWN = "outcome unknown"
# Texts billed by encoding and segments; their cost is recorded before they are sent.
SMS_CHANNELS = frozenset({"sms", "whatsapp"})


@dataclass(frozen=True)
class _Route:
    channel: str
    recipient: str
    closed: Suppression | None = None  # a bounce or opt-out closed this address


@dataclass(frozen=True)
class _Committed:
    """What one read of the store says before sending: the debt, its routes, its entries."""

    invoice: Invoice
    customer: Customer | None
    routes: list[_Route]
    entries: dict[tuple[str, str], LedgerSnapshot]  # by (channel, recipient)


@dataclass(frozen=True)
class _Allowed:
    """The gate let the contact through; ``covered`` are the invoices it must also name."""

    entry: LedgerSnapshot
    covered: tuple[CoveredInvoice, ...] = ()


@dataclass(frozen=True)
class _Refused:
    """A channel refused one route for good; the step passes to its next channel."""

    reason: str


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
        """Deliver a reminder by the step's first open channel while the invoice is payable."""
        with heartbeating():
            return self._send_reminder(request)

    def _send_reminder(self, request: SendReminderRequest) -> SendOutcome:
        now = activity.info().current_attempt_scheduled_time
        committed = self._read(request)
        invoice, customer, routes = (
            committed.invoice,
            committed.customer,
            committed.routes,
        )

        sent = _sent_to_any_address(committed.entries)
        if sent is not None:
            # Sent before, its result lost, to an address the debtor has changed since:
            # the step reached the debtor once, and once is all a step may.
            (channel, _), entry = sent
            return SendOutcome(
                SendStatus.SENT, channel, "sent", entry.provider_message_id, True
            )
        for route in routes:
            known = committed.entries.get((route.channel, route.recipient))
            key = self._key(request, route)
            delivered = self._delivered_before(request, key, known, now)
            if delivered is not None:
                return delivered
        refusal = why_not_payable(invoice)
        if refusal is not None:
            first = next((route for route in routes if route.closed is None), None)
            key = self._key(request, first)
            return self._decide(request, key, ContactStatus.CANCELLED, refusal, now)
        if customer is None or not routes:
            return self._unreachable(request, routes, [], now)

        return self._send_by_first_open_route(request, routes, invoice, customer, now)

    def _read(self, request: SendReminderRequest) -> _Committed:
        """One read of the committed store; an invoice not in it fails for good.

        The send is decided on the status and balance read here, in this attempt, before
        anything is rendered or handed to a channel.
        """
        with session_scope(self._engine) as session:
            invoice = find_invoice(session, request.tenant, request.invoice_number)
            if invoice is None:
                raise ApplicationError(
                    f"invoice {request.invoice_number} of tenant {request.tenant} is not in "
                    "the store; import it before starting its case",
                    non_retryable=True,
                )
            customer = find_customer(session, invoice.tenant, invoice.customer_id)
            pairs = self._addresses(request, customer)
            # A closed address stays among the routes, marked, so that the ledger
            # shows why it was passed over.
            closed = closed_among(session, request.tenant, pairs)
            entries = entries_of_step(
                session, request.tenant, request.invoice_number, request.step_id
            )
        routes = [
            _Route(channel, address, closed.get((channel, address)))
            for channel, address in pairs
        ]
        return _Committed(invoice, customer, routes, entries)

    def _send_by_first_open_route(
        self,
        request: SendReminderRequest,
        routes: list[_Route],
        invoice: Invoice,
        customer: Customer,
        now: datetime,
    ) -> SendOutcome:
        """Try the routes in the step's order; a closed or refused one passes to the next."""
        variables = _template_variables(invoice, request)
        failures: list[str] = []
        for route in routes:
            key = self._key(request, route)
            if route.closed is not None:
                reason = _closed_reason(route.closed)
                self._decide(request, key, ContactStatus.FAILED, reason, now)
                failures.append(f"{route.channel}: {reason}")
                continue
            try:
                rendered, respelt = self._render(request, route, invoice, customer, now)
            except (TemplateRenderError, ValueError) as error:
                return self._decide(
                    request, key, ContactStatus.BLOCKED, str(error), now
                )
            result = self._deliver(
                request, key, (invoice, customer), rendered, now, variables, respelt
            )
            if isinstance(result, SendOutcome):
                return result
            failures.append(f"{route.channel}: {result.reason}")
        return self._unreachable(request, routes, failures, now)

    def _unreachable(
        self,
        request: SendReminderRequest,
        routes: list[_Route],
        failures: list[str],
        now: datetime,
    ) -> SendOutcome:
        """Block the step for a person: no channel of it is left, and why each one is not."""
        routed = {route.channel for route in routes}
        unrouted = [
            channel for channel in _channels_of(request) if channel not in routed
        ]
        if unrouted:
            failures = [*failures, "no usable address on " + ", ".join(unrouted)]
        reason = f"{NO_REACHABLE_CONTACT}: " + "; ".join(failures)
        key = self._key(request, None)
        return self._decide(request, key, ContactStatus.BLOCKED, reason, now)

    def _begin(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        customer: Customer,
        now: datetime,
        message: MessageRecord,
    ) -> _Allowed | SendOutcome:
        """Count one more attempt with its text, after the contact rules allowed it.

        One transaction: the attempt and the text it carries are committed together.
        """
        policy = (request.policy_name, request.policy_version)
        if request.jurisdiction is None:
            gate: GateResult | CoveredByStatement | LedgerSnapshot | NotPayable = (
                self._ledger.begin_send(
                    key, policy=policy, planned_at=request.planned_at, message=message
                )
            )
        else:
            gate = gate_contact(
                self._engine,
                key,
                customer=customer,
                jurisdiction=request.jurisdiction,
                policy=policy,
                planned_at=request.planned_at,
                now=now,
                message=message,
            )
        if isinstance(gate, NotPayable):
            # Paid, credited or closed since this attempt first read the store.
            return self._decide(request, key, ContactStatus.CANCELLED, gate.reason, now)
        if isinstance(gate, LedgerSnapshot):
            if gate.status != ContactStatus.SENT:
                return _Allowed(gate)
            # Another attempt of this contact sent it since this one read the ledger.
            return SendOutcome(
                SendStatus.SENT, key.channel, "sent", gate.provider_message_id, True
            )
        if isinstance(gate, CoveredByStatement):
            return _covered_outcome(key, gate, now)
        verdict = gate.decision.verdict
        if verdict is Verdict.ALLOW:
            assert gate.entry_id is not None
            snapshot = LedgerSnapshot(
                gate.entry_id, ContactStatus.PENDING, gate.attempts, None
            )
            return _Allowed(snapshot, gate.covered)
        activity.logger.info(
            "%s %s of %s: %s",
            verdict,
            key.step_id,
            key.invoice_number,
            gate.decision.reason,
            extra=contact_fields(key, str(verdict), reason=gate.decision.reason),
        )
        _count(str(verdict), key.channel)
        if verdict is Verdict.DEFER:
            return SendOutcome(
                SendStatus.DEFERRED,
                key.channel,
                trace(gate.decision),
                retry_at=gate.decision.at,
            )
        return SendOutcome(SendStatus.STOPPED, key.channel, trace(gate.decision))

    def _deliver(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        debt: tuple[Invoice, Customer],
        rendered: RenderedMessage,
        now: datetime,
        variables: dict[str, str],
        respelt: tuple[FieldChange, ...] = (),
    ) -> SendOutcome | _Refused:
        """Send by one route; a permanent refusal is recorded and handed back, not raised."""
        message = _message_record(key.channel, rendered.body, respelt)
        allowed = self._begin(request, key, debt[1], now, message)
        if isinstance(allowed, SendOutcome):
            return allowed
        entry = allowed.entry
        if allowed.covered:
            # The gate chose the invoices the statement names: its text, rendered only
            # now, is recorded on its own before the call.
            statement = self._statement(request, key, debt, allowed, now)
            if isinstance(statement, SendOutcome):
                return statement
            rendered, respelt = statement
            request = replace(request, template=STATEMENT_TEMPLATE)
            self._ledger.record_message(
                entry.entry_id, _message_record(key.channel, rendered.body, respelt)
            )

        channel = self._channels[key.channel]
        message_key = idempotency_key(*key.__dict__.values())
        # A cancellation raised into this thread mid-call would lose what the channel
        # answered; the call and its record finish first.
        with activity.shield_thread_cancel_exception():
            try:
                message_id = channel.send(
                    _outgoing(message_key, key, request, rendered, variables)
                )
            except ChannelError as error:
                self._record_refusal(key, entry.entry_id, error, now)
                if error.retryable:
                    raise
                return _Refused(str(error))

            self._ledger.finish(
                entry.entry_id,
                ContactStatus.SENT,
                reason="sent",
                at=now,
                provider_message_id=message_id,
            )
        activity.logger.info(
            "sent %s of %s by %s",
            key.step_id,
            key.invoice_number,
            key.channel,
            extra=contact_fields(key, "sent"),
        )
        _count("sent", key.channel)
        return SendOutcome(SendStatus.SENT, key.channel, "sent", message_id)

    def _statement(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        debt: tuple[Invoice, Customer],
        allowed: _Allowed,
        now: datetime,
    ) -> tuple[RenderedMessage, tuple[FieldChange, ...]] | SendOutcome:
        """Render the statement naming every covered invoice, or free them if it cannot be."""
        invoice, customer = debt
        try:
            return self._render(
                request,
                _Route(key.channel, key.recipient),
                invoice,
                customer,
                now,
                covered=allowed.covered,
            )
        except (TemplateRenderError, ValueError) as error:
            with session_scope(self._engine) as session:
                release_statement(session, allowed.entry.entry_id, str(error))
            self._ledger.finish(
                allowed.entry.entry_id, ContactStatus.BLOCKED, reason=str(error), at=now
            )
            return SendOutcome(SendStatus.BLOCKED, key.channel, str(error))

    def _record_refusal(
        self, key: ContactKey, entry_id: int, error: ChannelError, now: datetime
    ) -> None:
        """Keep a channel's refusal in the ledger; an opt-out also closes the address."""
        status = ContactStatus.PENDING if error.retryable else ContactStatus.FAILED
        # A timeout may come after the provider took the message: the retry asks first.
        in_doubt = (
            isinstance(error, ProviderError) and error.failure is Failure.UNREACHABLE
        )
        outcome = "unknown" if in_doubt else None
        self._ledger.finish(
            entry_id, status, reason=str(error), at=now, outcome=outcome
        )
        _count("failed", key.channel)
        if error.retryable:
            return
        failure = error.failure if isinstance(error, ProviderError) else "permanent"
        activity.logger.info(
            "%s refused %s of %s (%s): trying the next channel",
            key.channel,
            key.step_id,
            key.invoice_number,
            failure,
            extra=contact_fields(key, "failed", reason=str(failure)),
        )
        if isinstance(error, ProviderError) and error.failure is Failure.OPTED_OUT:
            suppress(
                self._engine,
                tenant=key.tenant,
                channel=key.channel,
                address=key.recipient,
                reason=OPTED_OUT,
                source=f"{error.provider} error {error.code}",
                at=now,
            )

    def _delivered_before(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        entry: LedgerSnapshot | None,
        now: datetime,
    ) -> SendOutcome | None:
        """A held route stays held; one whose attempt was cut off is asked about first.

        A route already sent never gets here: any sent entry of the step ended the send.
        """
        if entry is not None and entry.status == ContactStatus.HELD:
            return SendOutcome(SendStatus.BLOCKED, key.channel, _held_reason(key))
        if (
            entry is None
            or entry.status != ContactStatus.PENDING
            or key.channel not in self._channels
        ):
            return None
        unsettled = self._ledger.unsettled_attempt(entry.entry_id)
        if unsettled is None:
            return None
        return self._settle(request, key, entry.entry_id, unsettled, now)

    def _settle(
        self,
        request: SendReminderRequest,
        key: ContactKey,
        entry_id: int,
        unsettled: UnsettledAttempt,
        now: datetime,
    ) -> SendOutcome | None:
        """Ask the channel about a cut-off attempt; where it cannot say, the policy decides."""
        earlier = EarlierAttempt(
            idempotency_key(*key.__dict__.values()),
            key.recipient,
            unsettled.message_sha256,
            unsettled.started_at,
        )
        lookup = self._channels[key.channel].look_up(earlier)
        attempt = f"attempt {unsettled.attempt} on {key.channel}"
        if lookup.answer is Answer.TAKEN:
            self._ledger.finish(
                entry_id,
                ContactStatus.SENT,
                reason=f"{attempt} was cut off after the channel took it",
                at=now,
                provider_message_id=lookup.message_id,
            )
            return SendOutcome(
                SendStatus.SENT, key.channel, "sent", lookup.message_id, True
            )
        if lookup.answer is Answer.NOT_TAKEN:
            self._ledger.note(
                entry_id, "not_taken", f"{attempt}: channel never took it"
            )
            return None
        if request.on_unknown_outcome is UnknownOutcome.HOLD:
            activity.logger.info(
                "held %s of %s: %s cut off, channel cannot be asked",
                key.step_id,
                key.invoice_number,
                attempt,
            )
            reason = _held_reason(key)
            self._ledger.finish(entry_id, ContactStatus.HELD, reason=reason, at=now)
            _count("held", key.channel)
            return SendOutcome(SendStatus.BLOCKED, key.channel, reason)
        self._ledger.note(
            entry_id,
            "resent_after_unknown",
            f"{attempt} was cut off and the channel cannot be asked; resent by policy "
            "(on_unknown_outcome: resend): the debtor may get this message twice",
        )
        return None

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
            "did not send %s of %s: %s",
            key.step_id,
            key.invoice_number,
            status,
            extra=contact_fields(key, str(status)),
        )
        return SendOutcome(SendStatus(str(status)), key.channel, reason)

    def _addresses(
        self, request: SendReminderRequest, customer: Customer | None
    ) -> list[tuple[str, str]]:
        """The step's channels in order that have an address and a channel here."""
        if customer is None:
            return []
        pairs: dict[tuple[str, str], None] = {}
        for channel in _channels_of(request):
            recipient = _address_for(customer, channel)
            if recipient and channel in self._channels:
                pairs[(channel, recipient)] = None
        return list(pairs)

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
        *,
        covered: tuple[CoveredInvoice, ...] = (),
    ) -> tuple[RenderedMessage, tuple[FieldChange, ...]]:
        """The message for one route, and the fields respelt for SMS by the policy."""
        assert invoice.due_date is not None
        asked = invoice.balance_minor - request.disputed_minor
        own = StatementLine(
            invoice.invoice_number,
            invoice.issue_date,
            invoice.due_date,
            asked,
            invoice.currency,
        )
        context = MessageContext(
            creditor_name=self._creditor.name,
            customer_name=customer.name,
            invoice_number=invoice.invoice_number,
            issue_date=invoice.issue_date,
            due_date=invoice.due_date,
            amount_minor=invoice.amount_minor,
            balance_minor=asked,
            currency=invoice.currency,
            sent_on=local_date_of(now, customer.time_zone),
            payment_instructions=self._creditor.payment_instructions,
            creditor_contact=self._creditor.contact,
            statement=(own, *(_statement_line(other) for other in covered)),
        )
        respelt: tuple[FieldChange, ...] = ()
        if route.channel == "sms" and request.sms_transliterate:
            context, respelt = _spelt_for_gsm7(context, request.sms_transliterate)
        language = customer.language or request.language
        template = STATEMENT_TEMPLATE if covered else request.template
        rendered = render_message(
            self._templates_dir, template, route.channel, language, context
        )
        return rendered, respelt


def _message_record(
    channel: str, body: str, respelt: tuple[FieldChange, ...]
) -> MessageRecord:
    """The text's fingerprint, an SMS's encoding and segments, and any names respelt."""
    # Limit: WhatsApp outside its 24-hour window sends an approved template instead of
    # this body; the figures then say what the text would have cost, not the template.
    cost = analyse_sms(body) if channel in SMS_CHANNELS else None
    # Names are how debtors know a message is theirs: never respelt unrecorded.
    notes = (
        (("transliterated", "; ".join(describe_changes(respelt))),) if respelt else ()
    )
    return MessageRecord(
        text_fingerprint(body),
        cost.encoding if cost else None,
        cost.segments if cost else None,
        notes,
    )


def _covered_outcome(
    key: ContactKey, covered: CoveredByStatement, now: datetime
) -> SendOutcome:
    """This step rides on another invoice's statement; while it is in flight, look again."""
    if covered.pending:
        reason = f"the statement of {covered.statement} that names it is being sent"
        return SendOutcome(
            SendStatus.DEFERRED,
            key.channel,
            reason,
            retry_at=now + STATEMENT_IN_FLIGHT_RECHECK,
        )
    activity.logger.info(
        "%s of %s %s", key.step_id, key.invoice_number, covered.describe()
    )
    _count("consolidated", key.channel)
    return SendOutcome(
        SendStatus.CONSOLIDATED, key.channel, covered.describe(), covered.message_id
    )


def _statement_line(covered: CoveredInvoice) -> StatementLine:
    return StatementLine(
        covered.invoice_number,
        covered.issue_date,
        covered.due_date,
        covered.balance_minor,
        covered.currency,
    )


def _count(outcome: str, channel: str) -> None:
    """Count a contact outcome on the worker's metrics (no personal data in the labels)."""
    counter = activity.metric_meter().create_counter(
        "dunning_contacts",
        "Contacts by outcome (sent, defer, deny, failed) and channel",
    )
    counter.add(1, {"outcome": outcome, "channel": channel})


def _held_reason(key: ContactKey) -> str:
    return (
        f"{OUTCOME_UNKNOWN}: an attempt on {key.channel} was cut off and the channel "
        "cannot be asked whether it went; held for a person to check with the provider "
        "(on_unknown_outcome: hold)"
    )


def _spelt_for_gsm7(
    context: MessageContext, fields: tuple[str, ...]
) -> tuple[MessageContext, tuple[FieldChange, ...]]:
    """The context with the named text fields folded to GSM-7, and what changed."""
    values = {name: getattr(context, name) for name in fields}
    present = {name: value for name, value in values.items() if value is not None}
    folded = transliterate(present, fields)
    respelt: dict[str, Any] = dict(folded.values)
    return replace(context, **respelt), folded.changes


def _sent_to_any_address(
    entries: dict[tuple[str, str], LedgerSnapshot],
) -> tuple[tuple[str, str], LedgerSnapshot] | None:
    """The step's entry that was sent, whatever its channel and address, if one was."""
    return next(
        ((route, e) for route, e in entries.items() if e.status == ContactStatus.SENT),
        None,
    )


def _closed_reason(closed: Suppression) -> str:
    """Why a closed address was passed over, without the address: it reaches the workflow."""
    return f"address closed ({closed.reason}, {closed.source}, {closed.at:%Y-%m-%d})"


def _channels_of(request: SendReminderRequest) -> list[str]:
    return [request.channel, *request.fallback_channels]


def _address_for(customer: Customer, channel: str) -> str | None:
    """The customer's address on a channel; an erased one is no address at all."""
    address = _address_on_file(customer, channel)
    # An erased debtor's pseudonym must never reach a provider: Twilio would keep the
    # hash's digits as a number, and a mail would greet "[erased]".
    if is_erased(address) or is_erased(customer.name):
        return None
    return address


def _address_on_file(customer: Customer, channel: str) -> str | None:
    if channel == "email":
        return customer.email
    if channel == "sms":
        return customer.phone
    if channel == "whatsapp":
        whatsapp = None if is_erased(customer.whatsapp) else customer.whatsapp
        return whatsapp or customer.phone
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
