"""Supervisor commands on one case or on a set chosen by a visibility query."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import FailureError
from temporalio.service import RPCError

from receivables.case import (
    CommandReceipt,
    EscalateCommand,
    PauseCommand,
    ReassignCommand,
    SupervisorCommand,
    case_workflow_id,
)
from receivables.governance import record_supervisor_action
from workflows.invoice import InvoiceWorkflow

Command = PauseCommand | EscalateCommand | ReassignCommand | SupervisorCommand
# Command name on the command line -> update name on InvoiceWorkflow.
UPDATES = {
    "pause": "pause",
    "resume": "resume",
    "escalate": "escalate",
    "reassign": "reassign",
    "note": "add_note",
}


@dataclass(frozen=True)
class CommandResult:
    """What happened to one case: accepted, or refused with the case's own reason."""

    invoice_number: str
    accepted: bool
    message: str


def cases_matching(tenant: str, visibility_query: str) -> str:
    """Narrow a supervisor's query to this tenant's running invoice cases."""
    return (
        f'DunningTenant = "{tenant}" AND ExecutionStatus = "Running" '
        f"AND ({visibility_query})"
    )


async def invoices_for_query(
    client: Client, tenant: str, visibility_query: str
) -> list[str]:
    """The folios of the running cases a visibility query selects."""
    prefix = f"invoice/{tenant}/"
    folios = []
    async for execution in client.list_workflows(
        cases_matching(tenant, visibility_query)
    ):
        if execution.id.startswith(prefix):
            folios.append(execution.id.removeprefix(prefix))
    return sorted(folios)


async def command_case(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_number: str,
    action: str,
    command: Command,
) -> CommandResult:
    """Send one command as a Temporal update; a refusal leaves nothing in the history."""
    handle = client.get_workflow_handle(case_workflow_id(tenant, invoice_number))
    try:
        description = await handle.describe()
    except RPCError:
        return CommandResult(
            invoice_number,
            False,
            f"no case for invoice {invoice_number}; open the missing cases with "
            "'starter.py open-cases'",
        )
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = await handle.query(InvoiceWorkflow.state)
        return CommandResult(
            invoice_number,
            False,
            f"invoice {invoice_number} is {state.stage}: nothing to {action}",
        )
    try:
        receipt = await handle.execute_update(
            UPDATES[action], command, result_type=CommandReceipt
        )
    except WorkflowUpdateFailedError as error:
        return CommandResult(invoice_number, False, refusal_text(error))
    record_supervisor_action(
        engine,
        tenant,
        invoice_number,
        action,
        SupervisorCommand(command.actor, command.reason),
        _detail(command),
        datetime.now(UTC),
    )
    return CommandResult(invoice_number, True, receipt.accepted)


def refusal_text(error: WorkflowUpdateFailedError) -> str:
    """Why a case refused an update, in the validator's own words."""
    # The validator's message is the cause's; the cause's str() would prefix its type.
    cause = error.cause
    return cause.message if isinstance(cause, FailureError) else str(cause or error)


async def command_cases(
    client: Client,
    engine: Engine,
    tenant: str,
    invoice_numbers: list[str],
    action: str,
    command: Command,
) -> list[CommandResult]:
    """The same command on each case, one after the other, each answered on its own."""
    return [
        await command_case(client, engine, tenant, number, action, command)
        for number in invoice_numbers
    ]


def _detail(command: Command) -> dict[str, Any]:
    fields = dataclasses.asdict(command)
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in fields.items()
    }
