"""A bounce or a STOP reported between two steps decides where the next step goes."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, date, datetime, time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from receivables.case import PaymentReceived, Stage
from receivables.cases import report_payment
from receivables.deliveries import event_handler
from receivables.governance import sync_governance
from receivables.ledger import ContactLedger
from receivables.settings import PROJECT_ROOT
from receivables.store import (
    ContactStatus,
    Customer,
    Invoice,
    find_customer,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask
from receivables.webhooks import (
    SENDGRID_EVENTS_PATH,
    TWILIO_INBOUND_PATH,
    WebhookApp,
    WebhookSecrets,
)
from tests.case_helpers import (
    CaseRun,
    add_invoice,
    advance_to,
    open_case,
    policy_with_steps,
    running_worker,
    santiago,
    unique_number,
)
from tests.fakes.fake_sendgrid import FakeSendGrid
from tests.fakes.fake_twilio import FakeTwilio
from tests.test_webhooks import AUTH_TOKEN, PUBLIC_URL, sign_sendgrid
from worker import default_channels

pytest_plugins = ("tests.fakes.fixtures",)

AMOUNT = 450_000
# Each step writes first, and texts only where the debtor has no e-mail or it is closed.
EMAIL_THEN_SMS = (
    {
        "id": "R+1",
        "offset_days": 1,
        "channel": "email",
        "template": "overdue-first",
        "fallback_channels": ["sms"],
    },
    {
        "id": "R+8",
        "offset_days": 8,
        "channel": "email",
        "template": "overdue-second",
        "fallback_channels": ["sms"],
    },
)
BOUNCING_PHONE = (
    "+56911112222"  # the debtor whose e-mail bounces, and who can be texted
)
STOPPING_PHONE = (
    "+56933334444"  # the debtor with no e-mail, who answers the SMS with STOP
)


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    """A store whose governance has the executives a contact task is assigned to."""
    engine = make_engine(sqlite_url)
    sync_governance(engine, "test", PROJECT_ROOT / "policies" / "governance.yaml")
    return engine


class SignedCallbacks:
    """The webhook app as the providers reach it: every callback signed as they sign it."""

    def __init__(self, engine: Engine) -> None:
        self._sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        public = self._sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        secrets = WebhookSecrets(
            PUBLIC_URL, AUTH_TOKEN, base64.b64encode(public).decode()
        )
        self.app = WebhookApp(secrets, event_handler(engine, "test"))

    def sendgrid_bounce(self, message_id: str, email: str) -> int:
        """SendGrid reports a hard bounce of a message it accepted; return our status."""
        payload = json.dumps(
            [
                {
                    "email": email,
                    "timestamp": 1774969400,
                    "event": "bounce",
                    "type": "bounce",
                    "sg_message_id": f"{message_id}.filterdrecv-5f8d-1-0",
                }
            ]
        )
        signed = sign_sendgrid(self._sendgrid_key, payload, "1774969401")
        headers = {name.lower(): value for name, value in signed.items()}
        reply = self.app.handle(SENDGRID_EVENTS_PATH, headers, payload.encode())
        return reply.status

    def twilio_inbound(self, sender: str, text: str) -> int:
        """A debtor's SMS to our number, forwarded by Twilio; return our status."""
        form = {
            "MessageSid": "SM" + "b" * 32,
            "From": sender,
            "To": "+15005550006",
            "Body": text,
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            PUBLIC_URL + TWILIO_INBOUND_PATH, form
        )
        headers = {"x-twilio-signature": signature}
        reply = self.app.handle(TWILIO_INBOUND_PATH, headers, urlencode(form).encode())
        return reply.status


def providers_at(
    fake_sendgrid: FakeSendGrid, fake_twilio: FakeTwilio
) -> dict[str, str]:
    """Provider settings aimed at the fakes on this machine."""
    return {
        "SENDGRID_API_KEY": "SG.fake",
        "SENDGRID_FROM": "cobros@acreedor.example",
        "SENDGRID_HOST": fake_sendgrid.base_url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_SMS": "+15005550006",
        "TWILIO_API_BASE_URL": fake_twilio.base_url,
    }


def debtor(
    engine: Engine, year: int, *, phone: str, email: bool
) -> tuple[Invoice, Customer]:
    """An invoice due on April 1 of a debtor whose phone is typed with spaces."""
    invoice, _ = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=date(year, 3, 2),
        due_date=date(year, 4, 1),
        amount_minor=AMOUNT,
    )
    with session_scope(engine) as session:
        customer = find_customer(session, "test", invoice.customer_id)
        assert customer is not None
        customer.phone = f"{phone[:3]} {phone[3]} {phone[4:8]} {phone[8:]}"
        if not email:
            customer.email = None
        session.add(customer)
    return invoice, customer


def step_entries(engine: Engine, folio: str, step_id: str) -> list[tuple[str, str]]:
    """(channel, status) of one step's ledger entries, in the order written."""
    entries = sorted(
        (e for e in ContactLedger(engine).entries_for("test", folio)),
        key=lambda e: e.id or 0,
    )
    return [(e.channel, e.status) for e in entries if e.step_id == step_id]


def task_kinds(engine: Engine, folio: str) -> list[str]:
    """The kinds of the human tasks opened for an invoice."""
    with session_scope(engine) as session:
        statement = select(HumanTask.kind).where(HumanTask.invoice_number == folio)
        return list(session.exec(statement).all())


async def pay(env: WorkflowEnvironment, run: CaseRun, at: datetime) -> Stage:
    """Pay the invoice in full and return the stage the case ended in."""
    payment = PaymentReceived(f"PAY-{run.case.invoice_number}", AMOUNT, "CLP", at)
    await report_payment(
        env.client, run.engine, "test", run.case.invoice_number, payment
    )
    return (await run.handle.result()).stage


async def end_every_case(runs: list[CaseRun]) -> None:
    """Terminate any case a failed assertion left running: an orphan stalls the server."""
    for run in runs:
        # A case that ended already cannot be terminated: the server says so, and that is fine.
        with contextlib.suppress(RPCError):
            await run.handle.terminate("the test ended before the case did")


async def test_a_bounce_and_a_stop_between_steps_reroute_the_next_step(
    time_skipping_env: WorkflowEnvironment,
    engine: Engine,
    year: int,
    fake_sendgrid: FakeSendGrid,
    fake_twilio: FakeTwilio,
) -> None:
    env = time_skipping_env
    debtors = [
        debtor(engine, year, phone=BOUNCING_PHONE, email=True),
        debtor(engine, year, phone=STOPPING_PHONE, email=False),
    ]
    bouncing, stopping = (invoice.invoice_number for invoice, _ in debtors)
    bouncing_email = debtors[0][1].email or ""
    channels = default_channels(engine, env=providers_at(fake_sendgrid, fake_twilio))
    callbacks = SignedCallbacks(engine)
    policy = policy_with_steps(*EMAIL_THEN_SMS)

    async with running_worker(env.client, engine, channels=channels) as (_, queue):
        now = await env.get_current_time()
        runs = [
            await open_case(env.client, engine, invoice, customer, policy, queue, now)
            for invoice, customer in debtors
        ]
        try:
            await advance_to(env, santiago(date(year, 4, 5), time(12, 0)))
            first_step = (list(fake_sendgrid.requests), fake_twilio.messages())
            [emailed] = fake_sendgrid.message_ids
            replies = [
                callbacks.sendgrid_bounce(emailed, bouncing_email),
                callbacks.twilio_inbound(STOPPING_PHONE, "STOP"),
            ]
            await advance_to(env, santiago(date(year, 4, 12), time(12, 0)))
            paid_at = santiago(date(year, 4, 12), time(13, 0)).astimezone(UTC)
            stages = [await pay(env, run, paid_at) for run in runs]
        finally:
            await end_every_case(runs)

    [emailed_first], [texted_first] = first_step
    assert emailed_first.json()["personalizations"][0]["to"] == [
        {"email": bouncing_email}
    ]
    assert texted_first["To"] == STOPPING_PHONE
    assert replies == [200, 200]
    assert stages == [Stage.PAID, Stage.PAID]
    # The bounced address was never written to again; its step went by SMS instead.
    assert len(fake_sendgrid.requests) == 1
    assert step_entries(engine, bouncing, "R+8") == [
        ("email", ContactStatus.FAILED),
        ("sms", ContactStatus.SENT),
    ]
    # The number that said STOP got nothing more; a person is asked for another contact.
    assert [m["To"] for m in fake_twilio.messages()] == [STOPPING_PHONE, BOUNCING_PHONE]
    assert step_entries(engine, stopping, "R+8") == [
        ("sms", ContactStatus.FAILED),
        ("email", ContactStatus.BLOCKED),
    ]
    assert "verify_contact" in task_kinds(engine, stopping)
    assert "verify_contact" not in task_kinds(engine, bouncing)
