"""How the worker runs case workflows: in the SDK's sandbox or not, keeping no start message."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker._workflow_instance import (
    WorkflowInstance,
    WorkflowInstanceDetails,
)
from temporalio.worker.workflow_sandbox import (
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)
from temporalio.workflow import _Definition

from receivables.search_attributes import READ_BACK_FROM_START

# Our domain modules are deterministic and side-effect free at import; zoneinfo caches zones
# process-wide. Passing them through keeps one copy of each instead of one per workflow run.
SANDBOXED_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "zoneinfo",
        "workflows",
        "receivables",
        "activities",
        "pydantic",
        "sqlalchemy",
        "sqlmodel",
        "jinja2",
    )
)


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """The runner for case workflows: the sandbox where asked, the plain one otherwise.

    The sandbox catches non-deterministic workflow code, so the tests run every workflow in
    it; a worker in production may leave it off, which the benchmark measured at about
    15 KiB less per cached case and an eighth less CPU per workflow task.
    """
    return StartReleasingRunner(
        SANDBOXED_RUNNER if sandboxed else UnsandboxedWorkflowRunner()
    )


class StartReleasingRunner(WorkflowRunner):
    """Another runner, given copies of the start message's parts instead of views into it.

    The SDK hands each new run a few fields of the activation that started it (headers,
    memo, the last completion result) as views into that message; a view keeps the whole
    message alive (input, search attributes and all) for as long as the run is cached.
    Copies of those few fields let it go: about 18 KiB per cached case, measured.

    It also keeps, of the search attributes the run was started with, only those a case
    reads back (``READ_BACK_FROM_START``), under the shared keys: the SDK decodes every
    one twice (typed and untyped) and holds both for the life of the run, about 10 KiB
    per cached case, measured. ``workflow.info()`` in a run shows those few, plus any
    the run upserts since.
    """

    def __init__(self, inner: WorkflowRunner) -> None:
        self._inner = inner

    def prepare_workflow(self, defn: _Definition) -> None:
        """Let the wrapped runner check the workflow class, as it would unwrapped."""
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """Create the run from details that hold no view into the start message."""
        info = dataclasses.replace(
            det.info,
            headers=copied_payloads(det.info.headers),
            raw_memo=copied_payloads(det.info.raw_memo),
            search_attributes={},
            typed_search_attributes=read_back(det.info.typed_search_attributes),
        )
        last_result = Payloads()
        last_result.CopyFrom(det.last_completion_result)
        released = dataclasses.replace(
            det, info=info, last_completion_result=last_result
        )
        return self._inner.create_instance(released)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        """Pass the worker's failure types on to the wrapped runner."""
        self._inner.set_worker_level_failure_exception_types(types)


class StartReleasingInterceptor(Interceptor):
    """Gives each run's input copies of its headers, for the same reason as the runner."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Every workflow on the worker gets the header-copying inbound interceptor."""
        return _HeaderCopyingInbound


class _HeaderCopyingInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # The SDK keeps this input for the life of the run; its headers were a view.
        input.headers = copied_payloads(input.headers)
        return await super().execute_workflow(input)


def read_back(started: TypedSearchAttributes) -> TypedSearchAttributes:
    """The start's attributes a case reads back, each under its one shared key."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(key, value)
            for key in READ_BACK_FROM_START
            if (value := started.get(key)) is not None
        ]
    )


def copied_payloads(payloads: Mapping[str, Payload]) -> dict[str, Payload]:
    """Standalone copies of payloads, holding nothing of the message they came from."""
    copies = {}
    for name, payload in payloads.items():
        copy = Payload()
        copy.CopyFrom(payload)
        copies[name] = copy
    return copies
