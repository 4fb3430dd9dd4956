"""Command-line work for people: the executive inbox, tasks, disputes, promises, supervision."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError

from receivables.case import (
    CommandReceipt,
    DisputeCategory,
    DisputeOpened,
    DisputeResolution,
    DisputeResolved,
    EscalateCommand,
    GovernanceLevel,
    PauseCommand,
    PaymentPromise,
    ReassignCommand,
    SupervisorCommand,
    TaskOutcome,
    TaskOutcomeKind,
)
from receivables.cases import (
    case_handle,
    commit_money_movement,
    connect,
    set_due_date_command,
    stored_invoice,
)
from receivables.governance import (
    GOVERNANCE_FILE,
    PERSON_FLAG,
    PERSON_HELP,
    Role,
    check_person,
    reassign_customer,
    sync_governance,
)
from receivables.importer import counted
from receivables.money import format_amount, parse_operator_amount
from receivables.planning import calendar_date, format_local
from receivables.settings import Settings
from receivables.stop_facts import stop_facts_today
from receivables.store import (
    PaymentKind,
    as_utc,
    find_invoice,
    make_engine,
    session_scope,
)
from receivables.supervision import (
    Command,
    CommandResult,
    command_cases,
    invoices_for_query,
    refusal_text,
)
from receivables.tasks import (
    CaseView,
    TaskStatus,
    case_view,
    claim_task,
    complete_task,
    find_task,
    inbox,
)
from workflows.invoice import InvoiceWorkflow

Handler = Callable[[argparse.Namespace, Settings], int]

# Who may pause, resume, escalate, reassign or annotate cases: not an executive.
SUPERVISING_ROLES = frozenset({Role.SUPERVISOR, Role.STRATEGIC})
# Whom a case can be given to: executives work cases.
REASSIGNABLE_ROLES = frozenset({Role.EXECUTIVE})

FOLIO_HELP = "the invoice number (folio), leading zeros included"


# -- the executive's inbox ---------------------------------------------------------------


def cmd_inbox(args: argparse.Namespace, settings: Settings) -> int:
    """My open tasks by due time; with --team, my executives' too (breached ones marked)."""
    engine = make_engine(settings.resolved_database_url)
    check_person(engine, settings.tenant, args.person)
    items = inbox(engine, settings.tenant, args.person, team=args.team)
    if not items:
        print(f"no open tasks for {args.person}")
        return 0
    # Each row starts with "#id" (or "BREACHED #id"), which scripts may rely on.
    print(
        f"{'task':<6} {'due (debtor time)':<38} {'kind':<16} {'folio':<12} "
        "balance  [holder] reason"
    )
    for item in items:
        flag = "BREACHED " if item.overdue else ""
        holder = item.escalated_to or item.assignee_id
        due = format_local(as_utc(item.due_at), item.time_zone)
        print(
            f"{flag}#{item.task_id:<5} due {due}  {item.kind:<16} {item.invoice_number:<12} "
            f"{format_amount(item.balance_minor, item.currency)}  [{holder}] {item.reason}"
        )
    return 0


def cmd_case_file(args: argparse.Namespace, settings: Settings) -> int:
    """The store's view of a case: invoice, stop facts, money, then its events in order."""
    engine = make_engine(settings.resolved_database_url)
    view = case_view(engine, settings.tenant, args.invoice)
    invoice = view.invoice
    due = (
        f"due {invoice.due_date}"
        if invoice.due_date
        else f"no due date yet (give it one: {set_due_date_command(invoice.invoice_number)})"
    )
    print(
        f"invoice {invoice.invoice_number} · customer {invoice.customer_id} · "
        f"{view.status} · balance {format_amount(view.balance_minor, invoice.currency)} "
        f"· {due}"
    )
    for fact in stop_facts_today(
        engine, settings.policies_dir, invoice, view.time_zone
    ):
        print(f"stop fact: {fact}")
    _print_money_movements(view)
    if not view.contacts:
        print("no contact yet")
    for entry in view.timeline():
        when = format_local(as_utc(entry.at), view.time_zone)
        print(f"  {when}  {entry.kind:<11} {entry.detail}")
    return 0


def _print_money_movements(view: CaseView) -> None:
    if not view.payments:
        print("no payments or credits yet")
        return
    print("payments and credits (debtor time, reference, kind, amount):")
    for payment in view.payments:
        when = format_local(as_utc(payment.received_at), view.time_zone)
        amount = format_amount(payment.amount_minor, payment.currency)
        print(f"  {when}  {payment.reference:<20} {payment.kind:<12} {amount}")


def cmd_claim(args: argparse.Namespace, settings: Settings) -> int:
    """Take a task to work it."""
    engine = make_engine(settings.resolved_database_url)
    check_person(engine, settings.tenant, args.person)
    find_task(engine, settings.tenant, args.task_id)
    task = claim_task(engine, args.task_id, args.person, datetime.now(UTC))
    print(f"task {task.id} claimed by {args.person}")
    return 0


def cmd_complete(args: argparse.Namespace, settings: Settings) -> int:
    """Complete a task with its outcome: the case is told first and may refuse it.

    Safe to run again after a failure: the case applies the same outcome of the same task
    once and accepts it again unchanged, and the store records a repeated completion once.
    So a store write that failed after the case accepted is finished by the retry.
    """
    engine = make_engine(settings.resolved_database_url)
    check_person(engine, settings.tenant, args.person)
    now = datetime.now(UTC)
    task = find_task(engine, settings.tenant, args.task_id)
    if task.status != TaskStatus.DONE:
        # Claiming checks that this person may act on the task before the case hears of it.
        task = claim_task(engine, args.task_id, args.person, now)
    with session_scope(engine) as session:
        invoice = find_invoice(session, settings.tenant, task.invoice_number)
    if invoice is None:
        raise ValueError(
            f"task {args.task_id} is about invoice {task.invoice_number}, which tenant "
            f"{settings.tenant} does not hold"
        )
    outcome = _outcome(args, args.task_id, invoice.currency)
    if task.status == TaskStatus.DONE:
        # Done already: the same outcome again is a no-op, another one is refused.
        complete_task(engine, args.task_id, args.person, outcome, now)
        print(f"task {args.task_id} was already done: {task.outcome_kind}")
        return 0

    async def tell_case() -> None:
        client = await connect(settings.temporal)
        handle = case_handle(client, settings.tenant, task.invoice_number)
        try:
            await handle.execute_update(InvoiceWorkflow.complete_task, outcome)
        except WorkflowUpdateFailedError as error:
            # The case's validator says why it refused, and what to run instead.
            raise ValueError(refusal_text(error)) from None

    asyncio.run(tell_case())
    complete_task(engine, args.task_id, args.person, outcome, now)
    print(f"task {args.task_id} done: {outcome.kind}")
    return 0


def _outcome(args: argparse.Namespace, task_id: int, currency: str) -> TaskOutcome:
    kind = TaskOutcomeKind(args.outcome)
    promise = dispute = None
    if kind is TaskOutcomeKind.PAYMENT_PROMISE:
        if not (args.amount and args.date):
            raise ValueError("a payment_promise outcome needs --amount and --date")
        amount = parse_operator_amount(args.amount, currency)
        promise = PaymentPromise(
            amount, calendar_date(args.date, "--date"), args.person
        )
    if kind is TaskOutcomeKind.DISPUTE:
        if not (args.amount and args.category):
            raise ValueError("a dispute outcome needs --amount and --category")
        amount = parse_operator_amount(args.amount, currency)
        # Named after the task, so a retried command opens the same dispute, not a second.
        dispute = DisputeOpened(
            f"T{task_id}", amount, DisputeCategory(args.category), args.person
        )
    return TaskOutcome(task_id, kind, args.person, args.note or "", promise, dispute)


# -- disputes and promises on a case -----------------------------------------------------


def cmd_dispute(args: argparse.Namespace, settings: Settings) -> int:
    """Open or resolve a dispute on an invoice."""
    engine = make_engine(settings.resolved_database_url)
    # Checked before anything is written: a credit note of a resolution included.
    check_person(engine, settings.tenant, args.by)
    invoice = stored_invoice(engine, settings.tenant, args.invoice)
    if args.dispute_command == "open":
        amount = parse_operator_amount(args.amount, invoice.currency)
        dispute_id = args.id or uuid.uuid4().hex[:8]
        update: object = DisputeOpened(
            dispute_id, amount, DisputeCategory(args.category), args.by, args.note or ""
        )
        method: object = InvoiceWorkflow.open_dispute
    else:
        credit = (
            parse_operator_amount(args.credit, invoice.currency) if args.credit else 0
        )
        if args.credit_note and not credit:
            raise ValueError(
                "--credit-note names the credit note of an upheld dispute: give its "
                "amount with --credit too; nothing was recorded"
            )
        if credit and args.resolution != DisputeResolution.UPHELD:
            # The case credits only an upheld dispute; stored anyway, the store's balance
            # would drop while the case kept collecting the whole amount.
            raise ValueError(
                f"--credit goes with an upheld dispute, and {args.id} is being "
                f"{args.resolution}: leave --credit out, or resolve it as upheld; "
                "nothing was recorded"
            )
        if credit > invoice.balance_minor:
            # As with pay: an extra digit would close the invoice by credit on the spot.
            raise ValueError(
                f"--credit {format_amount(credit, invoice.currency)} is more than the open "
                f"balance of {args.invoice} "
                f"({format_amount(invoice.balance_minor, invoice.currency)}); a credit note "
                "for an upheld dispute credits at most what is owed; nothing was recorded"
            )
        update = DisputeResolved(
            args.id,
            DisputeResolution(args.resolution),
            args.by,
            credit,
            args.note or "",
            credit_reference=(args.credit_note or "").strip(),
        )
        if credit:
            # The credit is stored before the case hears of it; a resolution the case
            # would refuse (no such open dispute, or no case reachable) stores nothing.
            asyncio.run(_refuse_unless_dispute_open(settings, args.invoice, args.id))
            commit_money_movement(
                engine,
                settings.tenant,
                args.invoice,
                kind=PaymentKind.CREDIT_NOTE,
                reference=update.credit_note_reference,
                amount_minor=credit,
                currency=invoice.currency,
                at=datetime.now(UTC),
                entered_by=args.by,
            )
        method = InvoiceWorkflow.resolve_dispute
    receipt = asyncio.run(_update(settings, args.invoice, method, update))
    print(f"{args.invoice}: {receipt.accepted}")
    return 0


def cmd_promise(args: argparse.Namespace, settings: Settings) -> int:
    """Record a payment promise on an invoice."""
    engine = make_engine(settings.resolved_database_url)
    check_person(engine, settings.tenant, args.by)
    invoice = stored_invoice(engine, settings.tenant, args.invoice)
    promise = PaymentPromise(
        parse_operator_amount(args.amount, invoice.currency),
        calendar_date(args.date, "--date"),
        args.by,
    )
    receipt = asyncio.run(
        _update(settings, args.invoice, InvoiceWorkflow.record_promise, promise)
    )
    print(f"{args.invoice}: {receipt.accepted}")
    return 0


async def _refuse_unless_dispute_open(
    settings: Settings, invoice: str, dispute_id: str
) -> None:
    client = await connect(settings.temporal)
    handle = case_handle(client, settings.tenant, invoice)
    open_ids = await handle.query(InvoiceWorkflow.open_disputes)
    if dispute_id not in open_ids:
        raise ValueError(
            f"{invoice}: no open dispute {dispute_id} (open: "
            f"{', '.join(open_ids) or 'none'}); nothing was recorded"
        )


async def _update(
    settings: Settings, invoice: str, method: object, argument: object
) -> CommandReceipt:
    client = await connect(settings.temporal)
    handle = case_handle(client, settings.tenant, invoice)
    try:
        receipt = await handle.execute_update(method, argument)  # type: ignore[call-overload]
    except WorkflowUpdateFailedError as error:
        # The case's validator says why it refused; the history keeps nothing of it.
        raise ValueError(f"{invoice}: {refusal_text(error)}") from None
    assert isinstance(receipt, CommandReceipt)
    return receipt


# -- supervision -------------------------------------------------------------------------


def cmd_supervise(args: argparse.Namespace, settings: Settings) -> int:
    """Pause, resume, escalate, reassign or annotate one case or all a query selects."""
    engine = make_engine(settings.resolved_database_url)
    check_person(engine, settings.tenant, args.actor, roles=SUPERVISING_ROLES)
    command = _supervisor_command(args)
    if args.action == "reassign":
        check_person(
            engine, settings.tenant, args.to, roles=REASSIGNABLE_ROLES, flag="--to"
        )
    if args.invoice:
        # A mistyped folio is the operator's to fix, not a case that refused.
        stored_invoice(engine, settings.tenant, args.invoice)

    async def reached_cases(client: Client) -> list[str]:
        if args.invoice:
            return [args.invoice]
        folios = await invoices_for_query(client, settings.tenant, args.query)
        if not folios:
            raise ValueError(
                f"no running case of tenant {settings.tenant} matches --query "
                f"{args.query!r}; check the query's names and values, e.g. "
                "'DunningCustomer = \"CLI-0007\"'"
            )
        return folios

    async def run() -> list[CommandResult]:
        client = await connect(settings.temporal)
        folios = await reached_cases(client)
        return await command_cases(
            client, engine, settings.tenant, folios, args.action, command
        )

    async def preview() -> list[str]:
        return await reached_cases(await connect(settings.temporal))

    if args.dry_run:
        # A query can select hundreds of cases: the supervisor sees which before any is told.
        folios = asyncio.run(preview())
        for folio in folios:
            print(f"would {args.action} {folio}")
        print(
            f"{counted(len(folios), 'case')} would be told to "
            f"{args.action}; nothing was sent (run it again without --dry-run to act)"
        )
        return 0
    if args.action == "reassign" and args.customer:
        reassign_customer(
            engine,
            settings.tenant,
            args.customer,
            args.to,
            actor=args.actor,
            reason=args.reason,
        )
    results = asyncio.run(run())
    refused = [result for result in results if not result.accepted]
    if len(results) == 1 and refused:
        raise ValueError(f"{refused[0].invoice_number}: {refused[0].message}")
    for result in results:
        mark = "ok     " if result.accepted else "refused"
        print(f"{mark} {result.invoice_number}: {result.message}")
    if refused:
        raise ValueError(
            f"{len(refused)} of {len(results)} cases refused to {args.action} (each "
            "says why above); the others took the command"
        )
    return 0


def _supervisor_command(args: argparse.Namespace) -> Command:
    if bool(args.invoice) == bool(args.query):
        raise ValueError(
            "give exactly one of --invoice FOLIO or --query 'VISIBILITY QUERY'"
        )
    if args.action == "pause":
        until = calendar_date(args.until, "--until") if args.until else None
        return PauseCommand(args.actor, args.reason, until)
    if args.action == "escalate":
        return EscalateCommand(
            args.actor, args.reason, GovernanceLevel[args.level.upper()]
        )
    if args.action == "reassign":
        if not args.to:
            raise ValueError("reassign needs --to EXECUTIVE_ID")
        return ReassignCommand(args.actor, args.reason, args.to)
    return SupervisorCommand(args.actor, args.reason)


def cmd_sync_people(args: argparse.Namespace, settings: Settings) -> int:
    """Load people and assignments from policies/governance.yaml into the store."""
    engine = make_engine(settings.resolved_database_url)
    source = settings.policies_dir / GOVERNANCE_FILE
    report = sync_governance(engine, settings.tenant, source)
    print(report.summary(str(source)))
    return 0


def add_people_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register the people commands on the starter's parser."""
    box = commands.add_parser("inbox", help="a person's open tasks by due time")
    box.add_argument("person", help="staff id, e.g. exec-01")
    box.add_argument("--team", action="store_true", help="also my executives' tasks")
    box.set_defaults(handler=cmd_inbox)

    view = commands.add_parser("case-file", help="the store's view of a case, in order")
    view.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    view.set_defaults(handler=cmd_case_file)

    task = commands.add_parser("task", help="claim or complete a task")
    task_commands = task.add_subparsers(dest="task_command", required=True)
    claim = task_commands.add_parser("claim")
    claim.add_argument("task_id", type=int)
    claim.add_argument(
        PERSON_FLAG, "--as", dest="person", metavar="PERSON", help=PERSON_HELP
    )
    claim.set_defaults(handler=cmd_claim)
    done = task_commands.add_parser("complete")
    done.add_argument("task_id", type=int)
    done.add_argument(
        PERSON_FLAG, "--as", dest="person", metavar="PERSON", help=PERSON_HELP
    )
    done.add_argument(
        "--outcome", required=True, choices=[k.value for k in TaskOutcomeKind]
    )
    done.add_argument("--amount", help="for a promise or a dispute, in major units")
    done.add_argument("--date", help="for a promise: YYYY-MM-DD")
    done.add_argument("--category", choices=[c.value for c in DisputeCategory])
    done.add_argument("--note")
    done.set_defaults(handler=cmd_complete)

    dispute = commands.add_parser("dispute", help="open or resolve a dispute")
    dispute_commands = dispute.add_subparsers(dest="dispute_command", required=True)
    opening = dispute_commands.add_parser("open")
    opening.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    opening.add_argument("--amount", required=True)
    opening.add_argument(
        "--category", required=True, choices=[c.value for c in DisputeCategory]
    )
    opening.add_argument("--id", help="dispute id; generated if absent")
    opening.add_argument(PERSON_FLAG, metavar="PERSON", help=PERSON_HELP)
    opening.add_argument("--note")
    resolving = dispute_commands.add_parser("resolve")
    resolving.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    resolving.add_argument("id")
    resolving.add_argument("resolution", choices=[r.value for r in DisputeResolution])
    resolving.add_argument(
        "--credit", help="upheld: credit note amount, in major units"
    )
    resolving.add_argument(
        "--credit-note",
        metavar="FOLIO",
        help="upheld with --credit: the folio of the credit note (nota de crédito) "
        "issued for it; default dispute-ID",
    )
    resolving.add_argument(PERSON_FLAG, metavar="PERSON", help=PERSON_HELP)
    resolving.add_argument("--note")
    for sub in (opening, resolving):
        sub.set_defaults(handler=cmd_dispute)

    promise = commands.add_parser("promise", help="record a payment promise")
    promise.add_argument("invoice", metavar="FOLIO", help=FOLIO_HELP)
    promise.add_argument("--amount", required=True)
    promise.add_argument("--date", required=True, help="promised date, YYYY-MM-DD")
    promise.add_argument(PERSON_FLAG, metavar="PERSON", help=PERSON_HELP)
    promise.set_defaults(handler=cmd_promise)

    supervise = commands.add_parser(
        "supervise", help="pause, resume, escalate, reassign, note"
    )
    supervise.add_argument(
        "action", choices=["pause", "resume", "escalate", "reassign", "note"]
    )
    supervise.add_argument("--invoice", help="one folio")
    supervise.add_argument(
        "--query", help='a visibility query, e.g. DunningCustomer = "CLI-0001"'
    )
    supervise.add_argument(
        PERSON_FLAG,
        "--actor",
        dest="actor",
        metavar="PERSON",
        help=f"who gives the command: {PERSON_HELP}",
    )
    supervise.add_argument("--reason", required=True, help="why")
    supervise.add_argument(
        "--until", help="pause: until YYYY-MM-DD (default: until resumed)"
    )
    supervise.add_argument(
        "--level", default="supervisor", choices=["supervisor", "strategic"]
    )
    supervise.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cases the command would reach and tell none of them",
    )
    supervise.add_argument("--to", help="reassign: the executive id")
    supervise.add_argument(
        "--customer", help="reassign: also give this customer to --to"
    )
    supervise.set_defaults(handler=cmd_supervise)

    people = commands.add_parser("sync-people", help="load policies/governance.yaml")
    people.set_defaults(handler=cmd_sync_people)
