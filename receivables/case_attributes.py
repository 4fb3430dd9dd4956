"""Search attribute values of an invoice case: set at start, upserted on each change of stage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from temporalio.common import (
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from receivables import search_attributes as sa
from receivables.case import InvoiceCase, Stage


def due_date_instant(due_date: date) -> datetime:
    """Due dates are calendar dates; Temporal stores datetimes, so use midnight UTC of that day."""
    return datetime.combine(due_date, time(0, 0), tzinfo=UTC)


def case_updates(
    *,
    stage: Stage,
    amount_due_minor: int,
    due_date: date,
    next_action_at: datetime | None,
) -> list[SearchAttributeUpdate[Any]]:
    """The values that change during a case; an absent next action clears the attribute."""
    updates: list[SearchAttributeUpdate[Any]] = [
        sa.DUNNING_STAGE.value_set(stage.value),
        sa.DUNNING_AMOUNT_DUE.value_set(amount_due_minor),
        sa.DUNNING_DUE_DATE.value_set(due_date_instant(due_date)),
    ]
    if next_action_at is None:
        updates.append(sa.DUNNING_NEXT_ACTION_AT.value_unset())
    else:
        updates.append(sa.DUNNING_NEXT_ACTION_AT.value_set(next_action_at))
    return updates


def initial_attributes(
    case: InvoiceCase, *, stage: Stage, next_action_at: datetime | None
) -> TypedSearchAttributes:
    """Everything the case is started with, so a list view is complete before its first task."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.DUNNING_TENANT, case.tenant),
        SearchAttributePair(sa.DUNNING_CUSTOMER, case.customer_id),
        SearchAttributePair(sa.DUNNING_SEGMENT, case.segment),
        SearchAttributePair(
            sa.DUNNING_POLICY_VERSION, f"{case.policy.name}@{case.policy.version}"
        ),
        SearchAttributePair(sa.DUNNING_CURRENCY, case.currency),
        SearchAttributePair(sa.DUNNING_STAGE, stage.value),
        SearchAttributePair(sa.DUNNING_AMOUNT_DUE, case.amount_minor),
        SearchAttributePair(sa.DUNNING_DUE_DATE, due_date_instant(case.due_date)),
        SearchAttributePair(sa.DUNNING_PAUSED, False),
        SearchAttributePair(sa.DUNNING_DISPUTED, False),
        SearchAttributePair(sa.DUNNING_PROMISED, False),
        SearchAttributePair(sa.DUNNING_ESCALATION_LEVEL, 0),
    ]
    if next_action_at is not None:
        pairs.append(SearchAttributePair(sa.DUNNING_NEXT_ACTION_AT, next_action_at))
    return TypedSearchAttributes(pairs)
