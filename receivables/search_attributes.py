"""The custom search attributes of an invoice case, defined once for every user."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

DUNNING_STAGE = SearchAttributeKey.for_keyword("DunningStage")
DUNNING_SEGMENT = SearchAttributeKey.for_keyword("DunningSegment")
DUNNING_POLICY_VERSION = SearchAttributeKey.for_keyword("DunningPolicyVersion")
"""Policy name and version together, e.g. ``preventive-b2b@1``."""
DUNNING_DUE_DATE = SearchAttributeKey.for_datetime("DunningDueDate")
DUNNING_AMOUNT_DUE = SearchAttributeKey.for_int("DunningAmountDue")
"""The open balance in integer minor units of ``DunningCurrency``."""
DUNNING_CURRENCY = SearchAttributeKey.for_keyword("DunningCurrency")
DUNNING_NEXT_ACTION_AT = SearchAttributeKey.for_datetime("DunningNextActionAt")
DUNNING_TENANT = SearchAttributeKey.for_keyword("DunningTenant")
DUNNING_CUSTOMER = SearchAttributeKey.for_keyword("DunningCustomer")
"""The customer's id code, never a name: the history must hold no personal data."""
DUNNING_PAUSED = SearchAttributeKey.for_bool("DunningPaused")
DUNNING_DISPUTED = SearchAttributeKey.for_bool("DunningDisputed")
DUNNING_PROMISED = SearchAttributeKey.for_bool("DunningPromised")
DUNNING_ESCALATION_LEVEL = SearchAttributeKey.for_int("DunningEscalationLevel")
DUNNING_ASSIGNEE = SearchAttributeKey.for_keyword("DunningAssignee")

ALL_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    DUNNING_STAGE,
    DUNNING_SEGMENT,
    DUNNING_POLICY_VERSION,
    DUNNING_DUE_DATE,
    DUNNING_AMOUNT_DUE,
    DUNNING_CURRENCY,
    DUNNING_NEXT_ACTION_AT,
    DUNNING_TENANT,
    DUNNING_CUSTOMER,
    DUNNING_PAUSED,
    DUNNING_DISPUTED,
    DUNNING_PROMISED,
    DUNNING_ESCALATION_LEVEL,
    DUNNING_ASSIGNEE,
)

# The attributes a case reads back from those it was started with: its first publish skips
# an upsert that would only repeat them. A worker keeps just these of each cached run's
# start (receivables/workflow_runner.py); the rest are the server's to show.
READ_BACK_FROM_START: tuple[SearchAttributeKey[Any], ...] = (
    DUNNING_STAGE,
    DUNNING_AMOUNT_DUE,
    DUNNING_NEXT_ACTION_AT,
)

# The names the Temporal CLI accepts after KEY= in --search-attribute.
_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def search_attribute_args(
    keys: Iterable[SearchAttributeKey[Any]] = ALL_SEARCH_ATTRIBUTES,
) -> list[str]:
    """The ``--search-attribute KEY=TYPE`` arguments that register ``keys``."""
    args: list[str] = []
    for key in keys:
        args += [
            "--search-attribute",
            f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}",
        ]
    return args
