"""The executive's inbox through starter.py, end to end on a real dev server and store."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

import starter
from receivables import people_cli
from receivables.case import Stage
from receivables.commitments import disputes_of, promises_of
from receivables.contact_gate import profile_for, trace
from receivables.contact_rules import ContactDecision, Verdict
from receivables.governance import SupervisorAction
from receivables.jurisdictions import HoldRule, StopCondition, StopRule
from receivables.planning import format_local, local_date_of
from receivables.schema import migrate
from receivables.store import (
    ContactLedgerEntry,
    ContactStatus,
    Customer,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    as_utc,
    find_invoice,
    make_engine,
    session_scope,
)
from receivables.tasks import HumanTask, TaskStatus
from tests.case_helpers import (
    CaseRun,
    add_invoice,
    open_case,
    policy_with_steps,
    running_worker,
    step_due_just_now,
    unique_number,
)
from workflows.invoice import InvoiceWorkflow

CALL = {"kind": "call_debtor", "role": "executive", "sla_business_days": 2}
SANTIAGO = "America/Santiago"


@pytest.fixture
def tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_env: WorkflowEnvironment
) -> str:
    """A store in a scratch data folder and the dev server, as the commands find them."""
    name = f"cli-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUNNING_TENANT", name)
    address = local_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    migrate(f"sqlite:///{tmp_path / 'dunning.sqlite'}")
    return name


@pytest.fixture
def store(tenant: str, tmp_path: Path) -> Engine:
    """The scratch store, with the shipped governance loaded through the command."""
    assert starter.main(["sync-people"]) == 0
    return make_engine(f"sqlite:///{tmp_path / 'dunning.sqlite'}")


async def run_command(argv: list[str]) -> int:
    """Run a starter command in a thread of its own: it runs its own event loop."""
    return await asyncio.to_thread(starter.main, argv)


async def eventually(check: Callable[[], Any], attempts: int = 200) -> Any:
    """Poll until ``check`` returns something truthy (the worker acts on its own time)."""
    for _ in range(attempts):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the case did not get there in time")


def tasks_of(engine: Engine, invoice_number: str) -> list[HumanTask]:
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(HumanTask).where(HumanTask.invoice_number == invoice_number)
            ).all()
        )


def add_stored_task(
    engine: Engine, tenant: str, assignee: str, due_at: datetime
) -> tuple[str, int]:
    """Another invoice with a task already in the store, due at ``due_at``."""
    folio = unique_number()
    add_invoice(
        engine,
        invoice_number=folio,
        issue_date=due_at.date() - timedelta(days=60),
        due_date=due_at.date() - timedelta(days=30),
        amount_minor=90_000,
        tenant=tenant,
    )
    with session_scope(engine) as session:
        task = HumanTask(
            tenant=tenant,
            invoice_number=folio,
            workflow_id=f"invoice/{tenant}/{folio}",
            step_id="CALL+1",
            kind="call_debtor",
            role=0,
            assignee_id=assignee,
            reason="policy step CALL+1",
            time_zone="America/Santiago",
            opened_at=due_at - timedelta(days=2),
            due_at=due_at,
        )
        session.add(task)
        session.flush()
        assert task.id is not None
        return folio, task.id


async def case_with_a_call_task(
    env: WorkflowEnvironment, engine: Engine, tenant: str, queue: str
) -> tuple[CaseRun, HumanTask]:
    """A case whose policy asks for a call a moment ago: it opens the task as it starts."""
    now = await env.get_current_time()
    slot = step_due_just_now(now)
    invoice, customer = add_invoice(
        engine,
        invoice_number=unique_number(),
        issue_date=slot.today - timedelta(days=31),
        due_date=slot.today - timedelta(days=1),
        amount_minor=640_000,
        tenant=tenant,
        time_zone=slot.time_zone,
    )
    call = {"id": "CALL", "offset_days": 1, "task": CALL}
    policy = policy_with_steps(call, send_time=slot.send_time, time_zone=slot.time_zone)
    run = await open_case(env.client, engine, invoice, customer, policy, queue, now)
    [task] = await eventually(lambda: tasks_of(engine, invoice.invoice_number))
    return run, task


def inbox_rows(output: str) -> list[tuple[bool, int]]:
    """(breached, task id) of each task line of an inbox listing, in order."""
    return [
        (bool(match.group(1)), int(match.group(2)))
        for match in re.finditer(r"^(BREACHED )?#(\d+)", output, re.MULTILINE)
    ]


async def invoice_due_in_two_months(
    local_env: WorkflowEnvironment, store: Engine, tenant: str
) -> tuple[datetime, Invoice, Customer]:
    """The server's now, and a 250.000 CLP invoice issued today and due in 60 days."""
    now = await local_env.get_current_time()
    today = local_date_of(now, SANTIAGO)
    invoice, customer = add_invoice(
        store,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today + timedelta(days=60),
        amount_minor=250_000,
        tenant=tenant,
    )
    return now, invoice, customer


async def test_an_executive_works_the_inbox_end_to_end(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    _, sooner = add_stored_task(store, tenant, "exec-01", now + timedelta(hours=3))
    _, late = add_stored_task(store, tenant, "exec-02", now - timedelta(days=1))
    async with running_worker(local_env.client, store) as (_, queue):
        run, task = await case_with_a_call_task(local_env, store, tenant, queue)
        folio = run.case.invoice_number
        capsys.readouterr()

        assert await run_command(["inbox", "exec-01"]) == 0
        mine = capsys.readouterr().out
        assert await run_command(["inbox", "sup-01", "--team"]) == 0
        team = capsys.readouterr().out
        assert (
            await run_command(["task", "claim", str(task.id), "--as", "exec-01"]) == 0
        )
        claimed = capsys.readouterr().out
        promised = local_date_of(now, run.case.time_zone) + timedelta(days=5)
        complete = ["task", "complete", str(task.id), "--as", "exec-01"]
        complete += ["--outcome", "payment_promise", "--amount", "640.000"]
        complete += ["--date", promised.isoformat(), "--note", "pays Friday"]
        assert await run_command(complete) == 0
        done = capsys.readouterr().out
        await eventually(lambda: promises_of(store, tenant, folio))
        assert await run_command(["case-file", folio]) == 0
        case_file = capsys.readouterr().out
        state = await run.handle.query(InvoiceWorkflow.state)
        await run.handle.terminate("test over")

    # A header names the columns, as outbox list does.
    assert mine.splitlines()[0].split()[:4] == ["task", "due", "(debtor", "time)"]
    # My tasks, soonest due first; nobody else's.
    assert inbox_rows(mine) == [(False, sooner), (False, task.id)]
    assert folio in mine and "call_debtor" in mine
    # Due times and amounts read as in the case view: the debtor's clock, es-CL amounts.
    assert f"due {format_local(now + timedelta(hours=3), SANTIAGO)}" in mine
    assert f"due {format_local(as_utc(task.due_at), run.case.time_zone)}" in mine
    assert "640.000 CLP" in mine and "$" not in mine
    # The supervisor sees the team's tasks, the breached one marked.
    assert inbox_rows(team) == [(True, late), (False, sooner), (False, task.id)]
    assert f"task {task.id} claimed by exec-01" in claimed
    assert f"task {task.id} done: payment_promise" in done
    # The case took the promise: reminders wait for its date.
    assert state.promised and state.open_tasks == []
    [stored] = tasks_of(store, folio)
    assert (stored.status, stored.outcome_kind) == (TaskStatus.DONE, "payment_promise")
    assert f"invoice {folio}" in case_file and "balance 640.000 CLP" in case_file
    assert f"#{task.id} call_debtor done by exec-01: payment_promise" in case_file
    assert f"#1 640.000 CLP by {promised}, recorded by exec-01" in case_file
    timeline_lines = [line for line in case_file.splitlines() if line.startswith("  ")]
    assert timeline_lines
    assert all(run.case.time_zone in line for line in timeline_lines)


async def test_a_completion_whose_store_write_failed_finishes_on_retry_once(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_complete = people_cli.complete_task
    failures = [RuntimeError("the store went away after the case accepted")]

    def failing_once(*args: Any, **kwargs: Any) -> HumanTask:
        if failures:
            raise failures.pop()
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(people_cli, "complete_task", failing_once)
    async with running_worker(local_env.client, store) as (_, queue):
        run, task = await case_with_a_call_task(local_env, store, tenant, queue)
        promised = date.today() + timedelta(days=7)
        complete = ["task", "complete", str(task.id), "--as", "exec-01"]
        complete += ["--outcome", "payment_promise", "--amount", "300000"]
        complete += ["--date", promised.isoformat()]

        with pytest.raises(RuntimeError, match="store went away"):
            await run_command(complete)
        after_failure = tasks_of(store, run.case.invoice_number)[0].status
        retried = await run_command(complete)
        again = await run_command(complete)
        capsys.readouterr()
        other = [*complete[:5], "--outcome", "no_answer"]
        refused = await run_command(other)
        error = capsys.readouterr().err
        rows = await eventually(
            lambda: promises_of(store, tenant, run.case.invoice_number)
        )
        timeline = await run.handle.query(InvoiceWorkflow.timeline)
        await run.handle.terminate("test over")

    # The case had accepted before the store failed; the retry finished the store's side.
    assert after_failure == TaskStatus.CLAIMED
    assert (retried, again) == (0, 0)
    [stored] = tasks_of(store, run.case.invoice_number)
    assert (stored.status, stored.outcome_kind) == (TaskStatus.DONE, "payment_promise")
    # ...and the case applied the outcome once: one completion, one promise.
    assert sum(e.kind == "task_done" for e in timeline) == 1
    assert sum(e.kind == "promise" for e in timeline) == 1
    assert [(r.sequence, r.amount_minor, r.task_id) for r in rows] == [
        (1, 300_000, task.id)
    ]
    # A different outcome for a task already done is refused, not applied.
    assert refused == 2 and f"task {task.id}" in error


async def test_a_paid_case_says_it_ended_and_shows_nothing_pending(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now, invoice, customer = await invoice_due_in_two_months(local_env, store, tenant)
    folio = invoice.invoice_number
    with session_scope(store) as session:
        # A contact rule had moved the step; the payment comes before its new instant.
        session.add(
            ContactLedgerEntry(
                tenant=tenant,
                invoice_number=folio,
                step_id="R+15",
                channel="sms",
                recipient="+56900000000",
                status=ContactStatus.DEFERRED,
                reason="quiet hours",
                policy_name="test-policy",
                policy_version=1,
                planned_at=now + timedelta(days=75),
            )
        )
    steps = {"id": "R+15", "offset_days": 15, "channel": "sms", "template": "x"}
    async with running_worker(local_env.client, store) as (_, queue):
        run = await open_case(
            local_env.client,
            store,
            invoice,
            customer,
            policy_with_steps(steps),
            queue,
            now,
        )
        assert await run.handle.query(InvoiceWorkflow.state)
        assert (
            await run_command(
                ["pay", folio, "250000", "--reference", "B1", "--by", "exec-01"]
            )
            == 0
        )
        final = await run.handle.result()
        capsys.readouterr()
        assert await run_command(["case", folio]) == 0
        shown = capsys.readouterr().out

    assert final.stage is Stage.PAID and final.waiting_for == ""
    assert "case ended: paid; nothing is pending" in shown
    assert "waiting for" not in shown
    assert "superseded" in shown and "deferred" not in shown


async def test_a_dispute_task_cannot_be_completed_while_its_dispute_is_open(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now, invoice, customer = await invoice_due_in_two_months(local_env, store, tenant)
    folio = invoice.invoice_number
    steps = {"id": "R+1", "offset_days": 1, "channel": "email", "template": "x"}
    async with running_worker(local_env.client, store) as (_, queue):
        run = await open_case(
            local_env.client,
            store,
            invoice,
            customer,
            policy_with_steps(steps),
            queue,
            now,
        )
        opening = ["dispute", "open", folio, "--amount", "250000", "--id", "D1"]
        assert (
            await run_command([*opening, "--category", "other", "--by", "exec-01"]) == 0
        )
        [task] = await eventually(lambda: tasks_of(store, folio))
        capsys.readouterr()
        complete = ["task", "complete", str(task.id), "--as", task.assignee_id]
        refused = await run_command([*complete, "--outcome", "resolved"])
        error = capsys.readouterr().err
        still_disputed = (await run.handle.query(InvoiceWorkflow.state)).disputed_minor
        # A resolution naming a dispute the case does not have stores no credit note.
        wrong = ["dispute", "resolve", folio, "D9", "upheld", "--credit", "50000"]
        wrong_refused = await run_command([*wrong, "--by", "sup-01"])
        wrong_error = capsys.readouterr().err
        resolving = ["dispute", "resolve", folio, "D1", "rejected", "--by", "sup-01"]
        assert await run_command(resolving) == 0
        state = await run.handle.query(InvoiceWorkflow.state)
        await run.handle.terminate("test over")

    assert wrong_refused == 2
    assert "no open dispute D9 (open: D1); nothing was recorded" in wrong_error
    assert stored_balance(store, tenant, folio) == 250_000
    assert refused == 2
    assert f"starter.py dispute resolve {folio} D1" in error
    assert still_disputed == 250_000
    # Resolving the dispute ended it and closed its task: nothing is left half done.
    assert state.disputed_minor == 0 and state.open_tasks == []


async def test_an_upheld_dispute_credits_under_the_credit_notes_folio_and_shows_notes(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now, invoice, customer = await invoice_due_in_two_months(local_env, store, tenant)
    folio = invoice.invoice_number
    steps = {"id": "R+1", "offset_days": 1, "channel": "email", "template": "x"}
    async with running_worker(local_env.client, store) as (_, queue):
        run = await open_case(
            local_env.client,
            store,
            invoice,
            customer,
            policy_with_steps(steps),
            queue,
            now,
        )
        opening = ["dispute", "open", folio, "--amount", "50000", "--id", "D1"]
        opening += ["--category", "other", "--by", "exec-01"]
        assert (
            await run_command([*opening, "--note", "two pallets arrived broken"]) == 0
        )
        resolving = ["dispute", "resolve", folio, "D1", "upheld", "--by", "sup-01"]
        resolving += ["--credit", "50000", "--credit-note", "NC-4512"]
        assert await run_command([*resolving, "--note", "photos confirm it"]) == 0
        state = await run.handle.query(InvoiceWorkflow.state)
        await eventually(lambda: resolved_disputes(store, tenant, folio))
        await run.handle.terminate("test over")
    capsys.readouterr()

    assert await run_command(["case-file", folio]) == 0

    shown = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    with session_scope(store) as session:
        references = [p.reference for p in session.exec(select(Payment))]
    assert references == ["NC-4512"]
    assert state.balance_minor == invoice.amount_minor - 50_000
    assert any(
        "NC-4512 credit_note 50.000 CLP" in line and SANTIAGO in line for line in shown
    )
    assert any(
        # The owner joins the line once the dispute's task has opened: not waited for.
        "D1 50.000 CLP other by exec-01" in line
        and line.endswith(": two pallets arrived broken")
        for line in shown
    ), shown
    assert any(
        line.endswith("D1 upheld by sup-01, 50.000 CLP credited: photos confirm it")
        for line in shown
    ), shown
    assert any("credit_note by sup-01: NC-4512" in line for line in shown), shown


def resolved_disputes(engine: Engine, tenant: str, folio: str) -> list[Any]:
    """The disputes of an invoice the store already holds as resolved."""
    return [d for d in disputes_of(engine, tenant, folio) if d.resolved_at is not None]


def stored_balance(engine: Engine, tenant: str, folio: str) -> int:
    """The invoice's committed balance."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, folio)
        assert invoice is not None
        return invoice.balance_minor


async def test_an_invoice_without_a_due_date_points_to_the_command_that_opens_its_case(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    today = datetime.now(UTC).date()
    invoice, _ = add_invoice(
        store,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today,
        amount_minor=250_000,
        tenant=tenant,
    )
    folio = invoice.invoice_number
    with session_scope(store) as session:
        # As an import stores a row whose due date it could not derive.
        stored = session.get(Invoice, invoice.id)
        assert stored is not None
        stored.due_date = None
        stored.status = InvoiceStatus.NEEDS_DUE_DATE
        stored.policy_name, stored.segment = "preventive-b2b", "b2b"
        session.add(stored)
    due = (today + timedelta(days=60)).isoformat()
    async with running_worker(local_env.client, store) as (_, queue):
        monkeypatch.setenv("DUNNING_TASK_QUEUE", queue)
        capsys.readouterr()
        assert await run_command(["case", folio]) == 0
        case_before = capsys.readouterr().out
        assert await run_command(["open-cases"]) == 0
        open_cases = capsys.readouterr().out
        moving = ["move-due", folio, due, "--reason", "agreed with the buyer"]
        moving += ["--by", "exec-01"]
        assert await run_command(moving) == 0
        handle = local_env.client.get_workflow_handle(f"invoice/{tenant}/{folio}")
        state = await handle.query(InvoiceWorkflow.state)
        await handle.terminate("test over")

    assert "waiting for a due date" in case_before
    assert f"starter.py move-due {folio} YYYY-MM-DD --reason TEXT" in case_before
    assert "waiting for a due date: 1" in open_cases
    assert "starter.py move-due FOLIO YYYY-MM-DD --reason TEXT" in open_cases
    assert state.due_date.isoformat() == due


async def test_the_case_view_names_the_deciding_rule_and_supervise_refusals_exit_2(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now, invoice, customer = await invoice_due_in_two_months(local_env, store, tenant)
    folio = invoice.invoice_number
    deferral = ContactDecision(
        Verdict.DEFER,
        datetime(2027, 1, 23, 11, 0, tzinfo=UTC),
        "CL-C-05 2 whole days needed after the written contact of 2027-01-20; "
        "CL-C-01 before 08:00 on Saturday 2027-01-23",
        ("CL-C-01", "CL-C-02", "CL-C-03", "CL-C-04", "CL-C-05", "CL-C-06"),
    )
    with session_scope(store) as session:
        session.add(
            ContactLedgerEntry(
                tenant=tenant,
                invoice_number=folio,
                step_id="R+15",
                channel="email",
                recipient="pagos@customers.invalid",
                status=ContactStatus.DEFERRED,
                reason=trace(deferral),
                policy_name="test-policy",
                policy_version=1,
                planned_at=now + timedelta(days=75),
            )
        )
    steps = {"id": "R+15", "offset_days": 15, "channel": "email", "template": "x"}
    supervise = ["supervise", "resume", "--actor", "sup-01", "--reason", "check"]
    async with running_worker(local_env.client, store) as (_, queue):
        run = await open_case(
            local_env.client,
            store,
            invoice,
            customer,
            policy_with_steps(steps),
            queue,
            now,
        )
        await run.handle.query(InvoiceWorkflow.state)
        capsys.readouterr()
        assert await run_command(["case", folio]) == 0
        shown = capsys.readouterr().out
        pause_by_query = [
            *("supervise", "pause", "--actor", "sup-01", "--reason", "check"),
            *("--query", f'DunningCustomer = "{customer.customer_id}"', "--dry-run"),
        ]
        previewed = await run_command(pause_by_query)
        preview = capsys.readouterr().out
        # Resuming is refused below because the preview paused nothing.
        not_paused = await run_command([*supervise, "--invoice", folio])
        refusal = capsys.readouterr()
        no_match = await run_command(
            [*supervise, "--query", 'DunningCustomer = "nobody-at-all"']
        )
        no_match_error = capsys.readouterr().err
        too_much = ["dispute", "open", folio, "--amount", "300000", "--by", "exec-01"]
        over_balance = await run_command([*too_much, "--category", "other"])
        over_balance_error = capsys.readouterr().err
        await run.handle.terminate("test over")

    ledger = shown.split("contact ledger", 1)[1]
    [ledger_line] = [line for line in ledger.splitlines() if "R+15" in line]
    assert ledger_line.split()[:3] == ["R+15", "email", "deferred"]
    assert ledger_line.endswith(
        "deferred to 2027-01-23 08:00 America/Santiago: CL-C-05 2 whole days needed "
        "after the written contact of 2027-01-20 (also CL-C-01; 6 rules checked)"
    )
    assert "[rules:" not in shown and "CL-C-06" not in shown
    assert previewed == 0
    assert f"would pause {folio}" in preview
    assert "1 case would be told to pause; nothing was sent" in preview
    # A case that refuses a command is the operator's mistake, like every other one.
    assert not_paused == 2 and refusal.out == ""
    assert f"error: {folio}: " in refusal.err and "is not paused" in refusal.err
    assert no_match == 2
    assert "no running case of tenant" in no_match_error
    assert "matches --query 'DunningCustomer = \"nobody-at-all\"'" in no_match_error
    assert over_balance == 2 and "Traceback" not in over_balance_error
    assert f"error: {folio}: disputed amount 300.000 CLP must be positive" in (
        over_balance_error
    )


def give_policy(engine: Engine, tenant: str, folio: str, policy_name: str) -> None:
    """Pin a shipped policy on a stored invoice: its profile decides what a stop fact means."""
    with session_scope(engine) as session:
        invoice = find_invoice(session, tenant, folio)
        assert invoice is not None
        invoice.policy_name = policy_name
        session.add(invoice)


def b2b_rule_id(rule_kind: type[StopRule | HoldRule], condition: Any = None) -> str:
    """The id of the cl.b2b rule of one kind (and stop condition) that the gate applies."""
    rules = profile_for("cl.b2b").rules_of(rule_kind)
    return next(
        rule.id for rule in rules if getattr(rule, "condition", None) == condition
    )


async def test_a_lawsuit_served_shows_in_case_and_case_file_as_collection_stopping(
    local_env: WorkflowEnvironment,
    store: Engine,
    tenant: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = await local_env.get_current_time()
    today = local_date_of(now, SANTIAGO)
    invoice, customer = add_invoice(
        store,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today + timedelta(days=30),
        amount_minor=250_000,
        tenant=tenant,
    )
    folio = invoice.invoice_number
    give_policy(store, tenant, folio, "preventive-b2b")
    steps = {"id": "R+15", "offset_days": 15, "channel": "email", "template": "x"}
    async with running_worker(local_env.client, store) as (_, queue):
        run = await open_case(
            local_env.client,
            store,
            invoice,
            customer,
            policy_with_steps(steps),
            queue,
            now,
        )
        assert await run.handle.query(InvoiceWorkflow.state)
        served = [
            "stop-fact",
            "lawsuit-served",
            customer.customer_id,
            "--on",
            str(today),
        ]
        served += ["--reason", "Rol C-1234-2026 served", "--by", "exec-01"]
        assert await run_command(served) == 0
        capsys.readouterr()
        assert await run_command(["case", folio]) == 0
        case = capsys.readouterr().out
        assert await run_command(["case-file", folio]) == 0
        case_file = capsys.readouterr().out
        await run.handle.terminate("test over")

    rule = b2b_rule_id(StopRule, StopCondition.LAWSUIT_SERVED)
    shown = (
        f"stop fact: lawsuit served on {today} (debtor {customer.customer_id}); "
        "recorded by exec-01: Rol C-1234-2026 served: the next reminder will be denied: "
        f"collection stops ({rule})"
    )
    assert shown in case.splitlines()
    assert shown in case_file.splitlines()


async def test_the_case_file_shows_money_notes_and_an_sii_reception_hold(
    store: Engine, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    today = local_date_of(datetime.now(UTC), SANTIAGO)
    invoice, _ = add_invoice(
        store,
        invoice_number=unique_number(),
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        amount_minor=3_500_000,
        tenant=tenant,
    )
    folio = invoice.invoice_number
    give_policy(store, tenant, folio, "preventive-b2b")
    with session_scope(store) as session:
        session.add(
            Payment(
                tenant=tenant,
                invoice_number=folio,
                reference="TRX-881",
                amount_minor=361_180,
                currency="CLP",
                received_at=datetime(2026, 3, 2, 13, 5, tzinfo=UTC),
            )
        )
        session.add(
            Payment(
                tenant=tenant,
                invoice_number=folio,
                reference="NC-12",
                kind=PaymentKind.CREDIT_NOTE,
                amount_minor=100_000,
                currency="CLP",
                received_at=datetime(2026, 3, 3, 15, 0, tzinfo=UTC),
            )
        )
        session.add(
            SupervisorAction(
                tenant=tenant,
                invoice_number=folio,
                action="note",
                actor="sup-01",
                reason="debtor asked for the purchase order copy",
                at=datetime.now(UTC),
            )
        )
    received = today - timedelta(days=2)
    reception = ["stop-fact", "sii-received", folio, "--on", str(received)]
    assert (
        await run_command([*reception, "--reason", "SII inbox", "--by", "exec-01"]) == 0
    )
    capsys.readouterr()

    assert await run_command(["case-file", folio]) == 0
    lines = capsys.readouterr().out.splitlines()

    hold = b2b_rule_id(HoldRule)
    days = profile_for("cl.b2b").rules_of(HoldRule)[0].days
    contact_from = received + timedelta(days=days + 1)
    assert (
        f"stop fact: received at the SII on {received}; recorded by exec-01: SII inbox: "
        f"contacts wait until {contact_from}: the buyer may reclaim it through "
        f"{contact_from - timedelta(days=1)} ({hold})"
    ) in lines
    # Instants in the debtor's time (Santiago is UTC-3 in March), amounts as es-CL.
    payments = [line.split() for line in lines if "TRX-881" in line or "NC-12" in line]
    assert payments == [
        ["2026-03-02", "10:05", SANTIAGO, "TRX-881", "payment", "361.180", "CLP"],
        ["2026-03-03", "12:00", SANTIAGO, "NC-12", "credit_note", "100.000", "CLP"],
    ]
    assert "no contact yet" in lines
    # The timeline's columns are padded: compare the words.
    words = [" ".join(line.split()) for line in lines]
    assert any(
        line.endswith(
            "supervisor note by sup-01: debtor asked for the purchase order copy"
        )
        for line in words
    )
    assert any(
        line.endswith(
            f"stop_fact sii-received {received} by exec-01 (operator): SII inbox"
        )
        for line in words
    )


async def test_the_case_file_of_an_invoice_without_a_due_date_says_how_to_give_one(
    store: Engine, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    today = local_date_of(datetime.now(UTC), SANTIAGO)
    invoice, _ = add_invoice(
        store,
        invoice_number=unique_number(),
        issue_date=today,
        due_date=today,
        amount_minor=90_000,
        tenant=tenant,
    )
    folio = invoice.invoice_number
    with session_scope(store) as session:
        stored = find_invoice(session, tenant, folio)
        assert stored is not None
        stored.due_date, stored.status = None, InvoiceStatus.NEEDS_DUE_DATE
        session.add(stored)

    assert await run_command(["case-file", folio]) == 0
    header = capsys.readouterr().out.splitlines()[0]

    assert "due None" not in header
    assert header.endswith(
        f"no due date yet (give it one: starter.py move-due {folio} YYYY-MM-DD "
        "--reason TEXT --by PERSON)"
    )
