"""The team and its portfolio: the governance file, syncing it, who works what, reassigning."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from receivables.case import GovernanceLevel, SupervisorCommand
from receivables.governance import (
    GovernanceError,
    GovernanceFileError,
    Person,
    PortfolioAssignment,
    SupervisorAction,
    assignee_for,
    load_governance,
    person_at_level,
    reassign_customer,
    record_supervisor_action,
    supervisors_of,
    sync_governance,
    team_of,
)
from receivables.policy import load_policy_book

POLICIES = Path(__file__).resolve().parents[1] / "policies"
AT = datetime(2026, 3, 12, 13, 0, tzinfo=UTC)


def team_file(**changes: Any) -> dict[str, Any]:
    """A small valid governance file: a strategic lead, two supervisors, three executives."""
    content: dict[str, Any] = {
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
        "assignments": {"default": "ex-a1", "segments": {"high-risk": "ex-b1"}},
    }
    return content | changes


def write(path: Path, content: dict[str, Any]) -> Path:
    """Write a governance file and return its path."""
    path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def synced(engine: Engine, tmp_path: Path) -> Path:
    """The store with the small team synced for tenant ``acme``; returns the file."""
    path = write(tmp_path / "governance.yaml", team_file())
    sync_governance(engine, "acme", path, at=AT)
    return path


def test_the_shipped_file_assigns_every_segment_to_an_executive() -> None:
    config = load_governance(POLICIES / "governance.yaml")
    segmentation = load_policy_book(POLICIES).segmentation

    segments = {rule.segment for rule in segmentation.rules}
    segments.add(segmentation.default_segment)
    roles = {person.id: person.role for person in config.people}
    assert set(config.assignments.segments) == segments
    assert sorted(roles.values()) == ["executive"] * 3 + ["strategic", "supervisor"]
    assert config.assignments.default is not None
    assigned = [*config.assignments.segments.values(), config.assignments.default]
    assert {roles[executive] for executive in assigned} == {"executive"}


def test_sync_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "governance.yaml", team_file())

    first = sync_governance(engine, "acme", path, at=AT)
    rows = _rows(engine)
    again = sync_governance(engine, "acme", path, at=AT)

    assert (first.people_added, first.assignments_changed) == (6, 2)
    assert not again.changed
    assert _rows(engine) == rows


def test_sync_says_what_it_changed_in_words(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "governance.yaml", team_file())

    first = sync_governance(engine, "acme", path, at=AT).summary("governance.yaml")
    again = sync_governance(engine, "acme", path, at=AT).summary("governance.yaml")

    assert first == (
        "synced from governance.yaml: people 6 added, 0 changed, 0 deactivated; "
        "assignments 2 changed"
    )
    assert (
        again == "people and assignments already match governance.yaml; nothing changed"
    )
    assert "SyncReport" not in first + again


def test_sync_applies_changes_and_keeps_people_who_left_as_inactive(
    engine: Engine, synced: Path
) -> None:
    content = team_file(assignments={"default": "ex-a2"})
    content["people"] = [p for p in content["people"] if p["id"] != "ex-b1"]

    report = sync_governance(engine, "acme", write(synced, content), at=AT)

    assert report.people_deactivated == 1
    assert report.assignments_changed == 2  # default moved, high-risk removed
    with Session(engine) as session:
        assert assignee_for(session, "acme", "C-9", "high-risk") == "ex-a2"
        assert not _person(session, "ex-b1").active


def test_sync_of_one_tenant_leaves_another_alone(engine: Engine, synced: Path) -> None:
    sync_governance(engine, "other", write(synced, team_file(assignments={})), at=AT)

    with Session(engine) as session:
        assert assignee_for(session, "acme", "C-1", None) == "ex-a1"
        with pytest.raises(GovernanceError, match="no executive is assigned"):
            assignee_for(session, "other", "C-1", None)


def test_a_customer_assignment_beats_the_segment_which_beats_the_default(
    engine: Engine, synced: Path
) -> None:
    reassign_customer(
        engine, "acme", "C-7", "ex-a2", actor="sup-a", reason="key account", at=AT
    )

    with Session(engine) as session:
        assert assignee_for(session, "acme", "C-7", "high-risk") == "ex-a2"
        assert assignee_for(session, "acme", "C-8", "high-risk") == "ex-b1"
        assert assignee_for(session, "acme", "C-8", "b2b-standard") == "ex-a1"
        assert assignee_for(session, "acme", "C-8", None) == "ex-a1"


def test_without_any_assignment_the_error_names_customer_and_what_to_do(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path / "governance.yaml", team_file(assignments={}))
    sync_governance(engine, "acme", path, at=AT)

    with (
        Session(engine) as session,
        pytest.raises(GovernanceError, match=r"customer 'C-1'.*governance.yaml"),
    ):
        assignee_for(session, "acme", "C-1", "b2b-large")


def test_people_at_each_level_above_an_executive(engine: Engine, synced: Path) -> None:
    with Session(engine) as session:
        levels = [
            person_at_level(session, "acme", "ex-b1", level)
            for level in GovernanceLevel
        ]
        assert levels == ["ex-b1", "sup-b", "lead"]
        assert (
            person_at_level(session, "acme", "sup-a", GovernanceLevel.STRATEGIC)
            == "lead"
        )
        assert supervisors_of(session, "acme", "ex-a2") == ["sup-a", "lead"]
        assert team_of(session, "acme", "sup-a") == {"ex-a1", "ex-a2"}
        assert len(team_of(session, "acme", "lead")) == 5
        with pytest.raises(GovernanceError, match="already above"):
            person_at_level(session, "acme", "sup-a", GovernanceLevel.EXECUTIVE)
        with pytest.raises(GovernanceError, match="no person 'nobody'"):
            person_at_level(session, "acme", "nobody", GovernanceLevel.SUPERVISOR)


def test_reassigning_a_customer_records_who_why_and_from_whom(
    engine: Engine, synced: Path
) -> None:
    first = reassign_customer(
        engine, "acme", "C-7", "ex-a2", actor="sup-a", reason="key account", at=AT
    )
    second = reassign_customer(
        engine, "acme", "C-7", "ex-b1", actor="sup-b", reason="moved region", at=AT
    )
    repeated = reassign_customer(
        engine, "acme", "C-7", "ex-b1", actor="sup-b", reason="moved region", at=AT
    )

    assert first is not None and second is not None and repeated is None
    assert (second.action, second.actor, second.reason) == (
        "reassign_customer",
        "sup-b",
        "moved region",
    )
    assert json.loads(second.detail_json) == {
        "customer_id": "C-7",
        "from": "ex-a2",
        "to": "ex-b1",
    }
    with Session(engine) as session:
        assert len(session.exec(select(SupervisorAction)).all()) == 2
        rows = session.exec(
            select(PortfolioAssignment).where(PortfolioAssignment.customer_id == "C-7")
        ).all()
        assert [row.executive_id for row in rows] == ["ex-b1"]


@pytest.mark.parametrize(
    ("executive_id", "message"),
    [
        ("sup-a", "has role supervisor"),
        ("nobody", "no person 'nobody'"),
    ],
)
def test_a_customer_goes_only_to_a_known_executive(
    engine: Engine, synced: Path, executive_id: str, message: str
) -> None:
    with pytest.raises(GovernanceError, match=message):
        reassign_customer(
            engine, "acme", "C-7", executive_id, actor="sup-a", reason="x"
        )


def test_an_audited_command_needs_a_reason(engine: Engine) -> None:
    with pytest.raises(GovernanceError, match="needs an actor and a reason"):
        record_supervisor_action(
            engine, "acme", "F-1", "pause", SupervisorCommand("sup-a", " "), {}, AT
        )


def test_a_command_retried_with_its_request_id_is_recorded_once(engine: Engine) -> None:
    command = SupervisorCommand("sup-a", "customer asked for time")

    first = record_supervisor_action(
        engine,
        "acme",
        "F-1",
        "pause",
        command,
        {"until": AT.date()},
        AT,
        request_id="u-1",
    )
    again = record_supervisor_action(
        engine,
        "acme",
        "F-1",
        "pause",
        command,
        {"until": AT.date()},
        AT,
        request_id="u-1",
    )

    assert again.id == first.id
    assert json.loads(first.detail_json) == {"until": "2026-03-12"}


def _people(*changes: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
    people = team_file()["people"]
    for index, change in changes:
        people[index] = people[index] | change
    return people


BAD_FILES = [
    pytest.param(
        team_file(people=_people((3, {"reports_to": None}))),
        "people[3].reports_to",
        "role executive needs the id of the supervisor",
        id="executive-without-supervisor",
    ),
    pytest.param(
        team_file(people=_people((4, {"reports_to": "ex-a1"}))),
        "people[4].reports_to",
        "'ex-a1' has role executive, but role executive reports to role supervisor",
        id="executive-reporting-to-an-executive",
    ),
    pytest.param(
        team_file(people=_people((0, {"reports_to": "sup-a"}))),
        "people[0].reports_to",
        "reports to no one",
        id="strategic-reporting-to-someone",
    ),
    pytest.param(
        team_file(people=_people((4, {"id": "ex-a1"}))),
        "people[4].id",
        "appears twice",
        id="duplicate-id",
    ),
    pytest.param(
        team_file(people=_people((5, {"role": "manager"}))),
        "people[5].role",
        "'executive', 'supervisor' or 'strategic'",
        id="unknown-role",
    ),
    pytest.param(
        team_file(people=_people((5, {"email": "daniela.rojas"}))),
        "people[5].email",
        "pattern",
        id="email-without-domain",
    ),
    pytest.param(
        team_file(assignments={"segments": {"b2b-large": "sup-b"}}),
        "assignments.segments.b2b-large",
        "'sup-b' has role supervisor",
        id="segment-given-to-a-supervisor",
    ),
    pytest.param(
        team_file(assignments={"default": "ghost"}),
        "assignments.default",
        "'ghost' is unknown",
        id="default-to-nobody",
    ),
    pytest.param(
        team_file(teams=[]),
        "teams",
        "Extra inputs are not permitted",
        id="unknown-key",
    ),
]


@pytest.mark.parametrize(("content", "field", "reason"), BAD_FILES)
def test_a_bad_file_is_refused_naming_file_field_and_reason(
    tmp_path: Path, content: dict[str, Any], field: str, reason: str
) -> None:
    path = write(tmp_path / "governance.yaml", content)

    with pytest.raises(GovernanceFileError) as raised:
        load_governance(path)

    assert (raised.value.file, raised.value.field) == (str(path), field)
    assert reason in raised.value.reason


def test_a_segment_unknown_to_segments_yaml_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    content = team_file(assignments={"segments": {"b2b-huge": "ex-a1"}})

    with pytest.raises(GovernanceFileError, match="no such segment") as raised:
        load_governance(write(folder / "governance.yaml", content))

    assert raised.value.field == "assignments.segments.b2b-huge"


def test_a_file_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text("version: 1\npeople: [\n", encoding="utf-8")

    with pytest.raises(GovernanceFileError, match="not valid YAML") as raised:
        load_governance(path)

    assert raised.value.field.startswith("line ")


def _person(session: Session, person_id: str) -> Person:
    return session.exec(select(Person).where(Person.person_id == person_id)).one()


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        people = session.exec(select(Person).order_by(col(Person.id))).all()
        assignments = session.exec(
            select(PortfolioAssignment).order_by(col(PortfolioAssignment.id))
        ).all()
        return [tuple(row.model_dump().values()) for row in [*people, *assignments]]
