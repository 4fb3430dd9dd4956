"""The case payload converter: faithful round trips and one type adapter per process."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from receivables.case import InvoiceCase, PaymentReceived
from receivables.cases import case_from_store
from receivables.payloads import CasePayloadConverter, type_adapter
from receivables.store import Customer, Invoice
from tests.case_helpers import policy_with_steps


def _case() -> InvoiceCase:
    customer = Customer(
        tenant="test",
        customer_id="C-1",
        name="Comercial O'Higgins & Cía. Ltda.",
        email="pagos@customers.invalid",
        time_zone="America/Santiago",
    )
    invoice = Invoice(
        tenant="test",
        invoice_number="0000611365",
        customer_id="C-1",
        issue_date=date(2026, 3, 1),
        due_date=date(2026, 3, 31),
        amount_minor=110_000,
        currency="CLP",
        balance_minor=110_000,
    )
    policy = policy_with_steps(
        {"id": "due", "offset_days": 0, "channel": "email", "template": "reminder"}
    )
    return case_from_store(invoice, customer, policy, "preventive")


def test_a_case_and_a_payment_survive_the_round_trip() -> None:
    converter = CasePayloadConverter()
    case = _case()
    payment = PaymentReceived("PAY-1", 50_000, "CLP", datetime(2026, 3, 30, tzinfo=UTC))

    payloads = converter.to_payloads([case, payment])
    decoded = converter.from_payloads(payloads, [InvoiceCase, PaymentReceived])

    assert decoded == [case, payment]
    assert decoded[0].invoice_number == "0000611365"  # leading zeros kept as text
    assert payloads[0].metadata["encoding"] == b"json/plain"


def test_every_converter_reads_with_the_same_adapter() -> None:
    # The SDK makes a converter per cached workflow run; they must not each build a schema.
    first, second = CasePayloadConverter(), CasePayloadConverter()
    payload = first.to_payloads([_case()])
    misses_before = type_adapter.cache_info().misses

    first.from_payloads(payload, [InvoiceCase])
    second.from_payloads(payload, [InvoiceCase])

    assert type_adapter(InvoiceCase) is type_adapter(InvoiceCase)
    assert type_adapter.cache_info().misses - misses_before <= 1


def test_values_without_a_type_hint_come_back_as_plain_json() -> None:
    converter = CasePayloadConverter()
    payloads = converter.to_payloads([{"folio": "0042", "amount": 1}])
    assert converter.from_payloads(payloads, None) == [{"folio": "0042", "amount": 1}]


def test_cases_decoded_with_the_same_policy_share_one_policy_object() -> None:
    converter = CasePayloadConverter()
    first, second = _case(), dataclasses.replace(_case(), invoice_number="0000611366")
    other_policy = first.policy.model_copy(update={"version": first.policy.version + 1})
    third = dataclasses.replace(first, invoice_number="0000611367", policy=other_policy)

    decoded = [
        converter.from_payloads(converter.to_payloads([case]), [InvoiceCase])[0]
        for case in (first, second, third)
    ]

    assert decoded[0].policy is decoded[1].policy
    assert decoded[0].policy == first.policy
    assert decoded[2].policy is not decoded[0].policy
    assert decoded[2].policy.version == first.policy.version + 1
