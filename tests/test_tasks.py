"""Human tasks on both stores: SLAs, escalation, who may act, outcomes, inboxes, the case file."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receivables.case import (
    DisputeCategory,
    DisputeOpened,
    GovernanceLevel,
    PaymentPromise,
    SupervisorCommand,
    TaskOutcome,
    TaskOutcomeKind,
    TaskRequest,
    case_workflow_id,
)
from receivables.governance import reassign_customer, sync_governance
from receivables.ledger import ContactKey, ContactLedger
from receivables.store import ContactStatus, Invoice, session_scope
from receivables.tasks import (
    HumanTask,
    TaskError,
    TaskStatus,
    breached,
    cancel_open_tasks,
    case_view,
    claim_task,
    complete_task,
    escalate_task,
    inbox,
    open_task,
    record_supervisor_action,
)
from tests.case_helpers import add_invoice

TENANT = "test"
SANTIAGO = "America/Santiago"
THURSDAY = date(2026, 3, 12)
TEAM = {
    "version": 1,
    "people": [
        {"id": "lead", "name": "Carolina Valdés", "role": "strategic"},
        {
            "id": "sup-a",
            "name": "Rodrigo Fuentes",
            "role": "supervisor",
            "reports_to": "lead",
        },
        {
            "id": "sup-b",
            "name": "Marcela Ibáñez",
            "role": "supervisor",
            "reports_to": "lead",
        },
        {
            "id": "ex-a1",
            "name": "Javiera Muñoz",
            "role": "executive",
            "reports_to": "sup-a",
        },
        {
            "id": "ex-a2",
            "name": "Felipe Contreras",
            "role": "executive",
            "reports_to": "sup-a",
        },
        {
            "id": "ex-b1",
            "name": "Daniela Rojas",
            "role": "executive",
            "reports_to": "sup-b",
        },
    ],
    "assignments": {"default": "ex-a1"},
}


def santiago(day: date, clock: time = time(10, 0)) -> datetime:
    """An aware instant from a Santiago wall-clock time."""
    return datetime.combine(day, clock, tzinfo=ZoneInfo(SANTIAGO))


@pytest.fixture
def team(engine: Engine, tmp_path: Path) -> Engine:
    """The store with a strategic lead, two supervisors and three executives."""
    path = tmp_path / "governance.yaml"
    path.write_text(yaml.safe_dump(TEAM, allow_unicode=True), encoding="utf-8")
    sync_governance(engine, TENANT, path, at=santiago(THURSDAY))
    return engine


def add_case(engine: Engine, folio: str, executive: str = "ex-a1") -> str:
    """Commit an invoice of 900.000 CLP whose customer the executive works."""
    _, customer = add_invoice(
        engine,
        invoice_number=folio,
        issue_date=date(2026, 2, 10),
        due_date=date(2026, 3, 10),
        amount_minor=900_000,
        tenant=TENANT,
    )
    if executive != "ex-a1":
        reassign_customer(
            engine,
            TENANT,
            customer.customer_id,
            executive,
            actor="sup-a",
            reason="portfolio split",
            at=santiago(THURSDAY),
        )
    return folio


def request(
    folio: str,
    step_id: str = "T1",
    *,
    sla: int = 2,
    opened_at: datetime | None = None,
    role: GovernanceLevel = GovernanceLevel.EXECUTIVE,
) -> TaskRequest:
    """A call task for one invoice, opened on Thursday 10:00 in Santiago unless told."""
    return TaskRequest(
        tenant=TENANT,
        invoice_number=folio,
        workflow_id=case_workflow_id(TENANT, folio),
        step_id=step_id,
        kind="call_debtor",
        role=role,
        reason="no payment 2 days after the due date",
        script_template="call-overdue",
        sla_business_days=sla,
        opened_at=opened_at or santiago(THURSDAY),
        time_zone=SANTIAGO,
    )


def promise(
    task_id: int, by: str, promised: date, amount: int = 900_000
) -> TaskOutcome:
    """A payment promise outcome."""
    return TaskOutcome(
        task_id,
        TaskOutcomeKind.PAYMENT_PROMISE,
        by,
        promise=PaymentPromise(amount, promised, by),
    )


def no_answer(task_id: int, by: str) -> TaskOutcome:
    """The debtor did not pick up."""
    return TaskOutcome(task_id, TaskOutcomeKind.NO_ANSWER, by)


# -- opening ---------------------------------------------------------------------------


def test_a_task_opened_thursday_with_two_business_days_is_due_monday(
    team: Engine,
) -> None:
    opened = open_task(team, request(add_case(team, "F-1")))

    assert opened.assignee_id == "ex-a1"
    assert opened.due_at == santiago(date(2026, 3, 16))


def test_the_sla_skips_a_holiday(team: Engine) -> None:
    # Friday 18 September 2026 is Independence Day in Chile.
    folio = add_case(team, "F-1")

    opened = open_task(team, request(folio, opened_at=santiago(date(2026, 9, 17))))

    assert opened.due_at == santiago(date(2026, 9, 22))


@pytest.mark.parametrize(
    ("role", "assignee"),
    [
        (GovernanceLevel.EXECUTIVE, "ex-b1"),
        (GovernanceLevel.SUPERVISOR, "sup-b"),
        (GovernanceLevel.STRATEGIC, "lead"),
    ],
)
def test_the_assignee_is_the_customers_executive_or_the_people_above(
    team: Engine, role: GovernanceLevel, assignee: str
) -> None:
    folio = add_case(team, "F-1", executive="ex-b1")

    assert open_task(team, request(folio, role=role)).assignee_id == assignee


def test_a_retried_open_returns_the_same_task(team: Engine) -> None:
    folio = add_case(team, "F-1")

    first = open_task(team, request(folio))
    retried = open_task(team, request(folio, opened_at=santiago(THURSDAY, time(10, 5))))

    assert retried == first
    with Session(team) as session:
        assert len(session.exec(select(HumanTask)).all()) == 1


def test_a_task_for_an_unknown_invoice_is_refused(team: Engine) -> None:
    with pytest.raises(TaskError, match="no invoice 'F-404'"):
        open_task(team, request("F-404"))


# -- escalation ------------------------------------------------------------------------


def test_escalation_happens_once(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    first_at = task.due_at

    first = escalate_task(
        team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=first_at
    )
    later = first_at + timedelta(hours=4)
    second = escalate_task(
        team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=later
    )
    lower = escalate_task(
        team, task.task_id, to_level=GovernanceLevel.EXECUTIVE, at=later
    )

    assert (first, second, lower) == ("sup-a", "sup-a", "sup-a")
    stored = _task(team, task.task_id)
    assert (stored.escalation_level, stored.escalated_at) == (1, first_at)


def test_a_further_escalation_goes_to_the_strategic_level(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = task.due_at

    escalate_task(team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=at)
    holder = escalate_task(
        team, task.task_id, to_level=GovernanceLevel.STRATEGIC, at=at
    )

    assert holder == "lead"
    assert _task(team, task.task_id).escalation_level == GovernanceLevel.STRATEGIC


def test_a_finished_task_is_not_escalated(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    complete_task(
        team, task.task_id, "ex-a1", no_answer(task.task_id, "ex-a1"), task.due_at
    )

    holder = escalate_task(
        team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=task.due_at
    )

    assert holder == "ex-a1"
    assert _task(team, task.task_id).escalated_to is None


# -- who may act -----------------------------------------------------------------------


@pytest.mark.parametrize("outsider", ["ex-a2", "ex-b1", "sup-b"])
def test_a_person_who_is_not_assignee_escalatee_or_above_cannot_complete(
    team: Engine, outsider: str
) -> None:
    task = open_task(team, request(add_case(team, "F-1")))

    with pytest.raises(TaskError, match=f"'{outsider}' may not act on task"):
        complete_task(
            team, task.task_id, outsider, no_answer(task.task_id, outsider), task.due_at
        )

    assert _task(team, task.task_id).status == TaskStatus.OPEN


@pytest.mark.parametrize("person", ["sup-a", "lead"])
def test_the_people_above_the_assignee_may_complete(team: Engine, person: str) -> None:
    task = open_task(team, request(add_case(team, "F-1")))

    done = complete_task(
        team, task.task_id, person, no_answer(task.task_id, person), task.due_at
    )

    assert (done.status, done.completed_by) == (TaskStatus.DONE, person)


def test_the_escalatee_may_complete(team: Engine) -> None:
    folio = add_case(team, "F-1", executive="ex-b1")
    task = open_task(team, request(folio))
    escalate_task(
        team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=task.due_at
    )

    done = complete_task(
        team, task.task_id, "sup-b", no_answer(task.task_id, "sup-b"), task.due_at
    )

    assert done.status == TaskStatus.DONE


def test_a_claimed_task_cannot_be_claimed_by_someone_else(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = santiago(THURSDAY, time(11, 0))

    claimed = claim_task(team, task.task_id, "ex-a1", at)
    again = claim_task(team, task.task_id, "ex-a1", at + timedelta(minutes=5))

    assert (claimed.status, claimed.claimed_by, claimed.claimed_at) == (
        TaskStatus.CLAIMED,
        "ex-a1",
        at,
    )
    assert again.claimed_at == at
    with pytest.raises(TaskError, match="claimed by 'ex-a1'"):
        claim_task(team, task.task_id, "sup-a", at)


# -- outcomes --------------------------------------------------------------------------


def test_a_promise_dated_in_the_past_is_refused_with_the_local_date(
    team: Engine,
) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = santiago(THURSDAY, time(11, 0))

    with pytest.raises(TaskError) as refused:
        complete_task(
            team,
            task.task_id,
            "ex-a1",
            promise(task.task_id, "ex-a1", date(2026, 3, 11)),
            at,
        )

    assert str(refused.value) == (
        "the promised date 2026-03-11 is in the past (today is 2026-03-12 in "
        "America/Santiago); record the date the debtor commits to from now on"
    )
    assert _task(team, task.task_id).status == TaskStatus.OPEN


def test_a_promise_for_today_or_later_closes_the_task_with_its_outcome(
    team: Engine,
) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = santiago(THURSDAY, time(11, 0))
    outcome = promise(task.task_id, "ex-a1", date(2026, 3, 20), amount=450_000)

    done = complete_task(team, task.task_id, "ex-a1", outcome, at)

    assert (done.status, done.outcome_kind, done.completed_at) == (
        TaskStatus.DONE,
        TaskOutcomeKind.PAYMENT_PROMISE,
        at,
    )
    stored = json.loads(done.outcome_json or "")
    assert stored["promise"] == {
        "amount_minor": 450_000,
        "promised_date": "2026-03-20",
        "recorded_by": "ex-a1",
    }


@pytest.mark.parametrize(
    ("amount", "message"),
    [(0, "must be above zero"), (900_001, r"more than\s+the balance")],
)
def test_a_promise_amount_must_be_positive_and_within_the_balance(
    team: Engine, amount: int, message: str
) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    outcome = promise(task.task_id, "ex-a1", date(2026, 3, 20), amount=amount)

    with pytest.raises(TaskError, match=message):
        complete_task(team, task.task_id, "ex-a1", outcome, santiago(THURSDAY))


def test_a_dispute_needs_an_amount_and_a_known_category(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = santiago(THURSDAY)

    def dispute(amount: int, category: str) -> TaskOutcome:
        opened = DisputeOpened("D1", amount, category, "ex-a1")  # type: ignore[arg-type]
        return TaskOutcome(
            task.task_id, TaskOutcomeKind.DISPUTE, "ex-a1", dispute=opened
        )

    with pytest.raises(TaskError, match="needs the dispute"):
        complete_task(
            team,
            task.task_id,
            "ex-a1",
            TaskOutcome(task.task_id, "dispute", "ex-a1"),
            at,
        )
    with pytest.raises(TaskError, match="disputed amount must be above zero"):
        complete_task(team, task.task_id, "ex-a1", dispute(0, "other"), at)
    with pytest.raises(TaskError, match="category 'wrong_price' is unknown"):
        complete_task(team, task.task_id, "ex-a1", dispute(300_000, "wrong_price"), at)
    category = DisputeCategory.GOODS_RECEIPT_NOT_REGISTERED
    done = complete_task(team, task.task_id, "ex-a1", dispute(300_000, category), at)
    assert done.outcome_kind == TaskOutcomeKind.DISPUTE


def test_an_outcome_carrying_fields_of_another_kind_is_refused(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    outcome = TaskOutcome(
        task.task_id,
        TaskOutcomeKind.NO_ANSWER,
        "ex-a1",
        promise=PaymentPromise(900_000, date(2026, 3, 20), "ex-a1"),
    )

    with pytest.raises(
        TaskError, match="a no_answer outcome carries no payment promise"
    ):
        complete_task(team, task.task_id, "ex-a1", outcome, santiago(THURSDAY))


def test_a_repeated_completion_is_harmless_and_a_different_one_is_refused(
    team: Engine,
) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    at = santiago(THURSDAY, time(11, 0))
    outcome = no_answer(task.task_id, "ex-a1")

    first = complete_task(team, task.task_id, "ex-a1", outcome, at)
    again = complete_task(
        team, task.task_id, "ex-a1", outcome, at + timedelta(minutes=1)
    )

    assert again.completed_at == first.completed_at == at
    wrong_contact = TaskOutcome(task.task_id, TaskOutcomeKind.WRONG_CONTACT, "ex-a1")
    with pytest.raises(TaskError, match=r"is done by 'ex-a1' \(no_answer\)"):
        complete_task(team, task.task_id, "ex-a1", wrong_contact, at)


# -- work lists ------------------------------------------------------------------------


def test_the_inbox_lists_my_open_tasks_soonest_due_first(team: Engine) -> None:
    slas = {"F-3": 3, "F-1": 1, "F-2": 2}
    for folio, sla in slas.items():
        open_task(team, request(add_case(team, folio), sla=sla))
    add_case(team, "F-9", executive="ex-a2")
    open_task(team, request("F-9", sla=1))
    friday_noon = santiago(date(2026, 3, 13), time(12, 0))

    items = inbox(team, TENANT, "ex-a1", at=friday_noon)

    assert [item.invoice_number for item in items] == ["F-1", "F-2", "F-3"]
    assert [item.overdue for item in items] == [True, False, False]
    assert items[0].balance_minor == 900_000
    assert items[0].currency == "CLP"
    assert items[0].due_at == santiago(date(2026, 3, 13))
    assert items[0].script_template == "call-overdue"


def test_a_supervisors_team_view_includes_their_executives_tasks(team: Engine) -> None:
    for folio, executive in (("F-1", "ex-a1"), ("F-2", "ex-a2"), ("F-3", "ex-b1")):
        open_task(team, request(add_case(team, folio, executive=executive)))
    review = open_task(team, request("F-3", "REVIEW", role=GovernanceLevel.SUPERVISOR))

    own = inbox(team, TENANT, "sup-a")
    team_view = inbox(team, TENANT, "sup-a", team=True)
    lead_view = inbox(team, TENANT, "lead", team=True)

    assert own == []
    assert {item.invoice_number for item in team_view} == {"F-1", "F-2"}
    assert {item.assignee_id for item in lead_view} == {
        "ex-a1",
        "ex-a2",
        "ex-b1",
        "sup-b",
    }
    assert [item.task_id for item in inbox(team, TENANT, "sup-b")] == [review.task_id]


def test_an_escalated_task_shows_in_the_escalatees_inbox(team: Engine) -> None:
    task = open_task(team, request(add_case(team, "F-1")))
    escalate_task(
        team, task.task_id, to_level=GovernanceLevel.SUPERVISOR, at=task.due_at
    )

    items = inbox(team, TENANT, "sup-a")

    assert [(item.task_id, item.escalated_to) for item in items] == [
        (task.task_id, "sup-a")
    ]


def test_breached_lists_only_unfinished_tasks_past_their_sla(team: Engine) -> None:
    late = open_task(team, request(add_case(team, "F-1"), sla=1))
    done_late = open_task(team, request(add_case(team, "F-2"), sla=1))
    cancelled = open_task(team, request(add_case(team, "F-3"), sla=1))
    open_task(team, request(add_case(team, "F-4"), sla=5))
    other_team = open_task(
        team, request(add_case(team, "F-5", executive="ex-b1"), sla=1)
    )
    complete_task(
        team,
        done_late.task_id,
        "ex-a1",
        no_answer(done_late.task_id, "ex-a1"),
        late.due_at,
    )
    cancel_open_tasks(team, TENANT, case_workflow_id(TENANT, "F-3"), at=late.due_at)
    monday = santiago(date(2026, 3, 16))

    everyone = breached(team, TENANT, monday)
    team_a = breached(team, TENANT, monday, supervisor_id="sup-a")

    assert [item.task_id for item in everyone] == [late.task_id, other_team.task_id]
    assert [item.task_id for item in team_a] == [late.task_id]
    assert all(item.overdue for item in everyone)
    assert cancelled.task_id not in [item.task_id for item in everyone]
    assert breached(team, TENANT, late.due_at) == []


def test_cancelling_a_case_closes_only_its_unfinished_tasks(team: Engine) -> None:
    folio = add_case(team, "F-1")
    first = open_task(team, request(folio, "T1"))
    second = open_task(team, request(folio, "T2"))
    complete_task(
        team, first.task_id, "ex-a1", no_answer(first.task_id, "ex-a1"), first.due_at
    )

    cancelled = cancel_open_tasks(
        team, TENANT, case_workflow_id(TENANT, folio), at=first.due_at
    )

    assert cancelled == [second.task_id]
    assert _task(team, first.task_id).status == TaskStatus.DONE
    assert _task(team, second.task_id).status == TaskStatus.CANCELLED


# -- the case file ---------------------------------------------------------------------


def set_balance(engine: Engine, folio: str, balance_minor: int) -> None:
    """Lower an invoice's committed balance, as a partial payment would."""
    with session_scope(engine) as session:
        invoice = session.exec(
            select(Invoice).where(Invoice.invoice_number == folio)
        ).one()
        invoice.balance_minor = balance_minor
        session.add(invoice)


def record_contact(engine: Engine, folio: str, step_id: str, day: date) -> None:
    """A reminder the ledger recorded as cancelled at 09:00 on a day."""
    ContactLedger(engine).record_decision(
        ContactKey(TENANT, folio, step_id, "email", "customer"),
        ContactStatus.CANCELLED,
        reason="paused",
        policy=("preventive-b2b", 1),
        planned_at=santiago(day, time(9, 0)),
        at=santiago(day, time(9, 0)),
    )


def test_the_case_view_gathers_tasks_commands_and_contacts_in_time_order(
    team: Engine,
) -> None:
    folio = add_case(team, "F-1")
    set_balance(team, folio, 600_000)
    record_contact(team, folio, "R+7", date(2026, 3, 17))
    record_contact(team, folio, "R+1", date(2026, 3, 11))
    later = open_task(team, request(folio, "T2", opened_at=santiago(date(2026, 3, 13))))
    earlier = open_task(team, request(folio, "T1"))
    command = SupervisorCommand("sup-a", "customer asked for a week")
    record_supervisor_action(
        team,
        TENANT,
        folio,
        "pause",
        command,
        {"days": 7},
        santiago(THURSDAY, time(12, 0)),
    )

    view = case_view(team, TENANT, folio)

    assert (view.balance_minor, view.status) == (600_000, "open")
    assert [task.id for task in view.tasks] == [earlier.task_id, later.task_id]
    assert [action.action for action in view.supervisor_actions] == ["pause"]
    assert [entry.step_id for entry in view.contacts] == ["R+1", "R+7"]
    assert [entry.kind for entry in view.timeline()] == [
        "contact",
        "task",
        "supervisor",
        "task",
        "contact",
    ]


def test_the_case_view_of_an_unknown_invoice_is_refused(team: Engine) -> None:
    with pytest.raises(TaskError, match="no invoice 'F-404'"):
        case_view(team, TENANT, "F-404")


def _task(engine: Engine, task_id: int) -> HumanTask:
    with Session(engine) as session:
        return session.exec(select(HumanTask).where(col(HumanTask.id) == task_id)).one()
