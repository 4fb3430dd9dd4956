"""How cases and their messages travel through Temporal: pydantic JSON, one adapter per type."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_json
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)

# The SDK builds a payload converter for every workflow run it caches. The stock pydantic
# converter keeps its type adapters per converter, so each cached case generated and held
# its own schema for InvoiceCase and its policy: CPU at every start and kilobytes per case.
# The adapters depend only on the type, so one bounded cache serves the whole process.
SHARED_TYPE_ADAPTERS = 256


@functools.lru_cache(maxsize=SHARED_TYPE_ADAPTERS)
def type_adapter(type_hint: Any) -> TypeAdapter[Any]:
    """The process's one adapter for ``type_hint``."""
    return TypeAdapter(type_hint)


class SharedPydanticJSONConverter(EncodingPayloadConverter):
    """JSON through pydantic, reading values with the process-wide adapters."""

    @property
    def encoding(self) -> str:
        """The same encoding as the SDK's JSON converter, so histories stay compatible."""
        return "json/plain"

    def to_payload(self, value: Any) -> Payload | None:
        """Serialize any value pydantic can turn into JSON."""
        return Payload(
            metadata={"encoding": self.encoding.encode()}, data=to_json(value)
        )

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        """Validate the JSON into ``type_hint`` (or plain JSON values without one)."""
        hint: Any = Any if type_hint is None else type_hint
        try:
            adapter = type_adapter(hint)
        except TypeError:
            # An unhashable hint cannot be a cache key; such hints are rare and cheap.
            adapter = TypeAdapter(hint)
        return adapter.validate_json(payload.data)


class CasePayloadConverter(CompositePayloadConverter):
    """The SDK's default converters with JSON replaced by the shared pydantic one."""

    def __init__(self) -> None:
        # The SDK builds one of these per workflow task; the converters hold no state.
        super().__init__(*_CASE_CONVERTERS)


_CASE_CONVERTERS = tuple(
    SharedPydanticJSONConverter() if isinstance(c, JSONPlainPayloadConverter) else c
    for c in DefaultPayloadConverter.default_encoding_payload_converters
)


CASE_DATA_CONVERTER = DataConverter(payload_converter_class=CasePayloadConverter)
