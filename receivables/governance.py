"""People in the loop: who works which customers, who steers them, and the audit of steering."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import CheckConstraint, UniqueConstraint, and_, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select

from receivables.case import GovernanceLevel, SupervisorCommand
from receivables.policy import SEGMENTS_FILE, load_policy_book
from receivables.store import session_scope, utc_now
from receivables.yaml_text import load_yaml

log = logging.getLogger(__name__)

GOVERNANCE_FILE = "governance.yaml"
# The one flag every command takes for the person acting (--actor and --as still work).
PERSON_FLAG = "--by"
PERSON_HELP = (
    f"a person id of policies/{GOVERNANCE_FILE}, e.g. exec-01 (required; an unknown "
    "one is refused)"
)
REASSIGN_CUSTOMER = "reassign_customer"
PersonId = Annotated[
    str, pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$", max_length=64)
]


class Role(enum.StrEnum):
    """A person's place in the collections team; each is one governance level."""

    EXECUTIVE = "executive"
    SUPERVISOR = "supervisor"
    STRATEGIC = "strategic"

    @property
    def level(self) -> GovernanceLevel:
        """The governance level this role acts at."""
        return GovernanceLevel[self.name]

    @classmethod
    def at(cls, level: GovernanceLevel) -> Role:
        """The role that acts at a governance level."""
        return cls[level.name]


class GovernanceError(ValueError):
    """A person, an assignment or a chain of supervisors that is missing or inconsistent."""


class GovernanceFileError(GovernanceError):
    """A governance file that cannot be used, with file, field and reason."""

    def __init__(self, file: Path | str, field: str, reason: str) -> None:
        self.file, self.field, self.reason = str(file), field, reason
        super().__init__(f"{file}: {field}: {reason}")


# -- tables ----------------------------------------------------------------------------


class Person(SQLModel, table=True):
    """A member of one tenant's collections team; names and emails stay out of Temporal."""

    __table_args__ = (UniqueConstraint("tenant", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    person_id: str
    name: str
    role: str  # a Role
    # An executive's supervisor, a supervisor's strategic lead; None for the strategic.
    supervisor_id: str | None = Field(default=None, index=True)
    email: str | None = None
    # False once the person left the governance file: their past tasks still name them.
    active: bool = True

    @property
    def level(self) -> GovernanceLevel:
        """The governance level this person acts at."""
        return Role(self.role).level


class PortfolioAssignment(SQLModel, table=True):
    """Who works a customer, a segment, or (with neither set) the rest of a tenant."""

    # Limit: NULLs never collide in a unique constraint, so two writers at one moment
    # can leave two rows for one scope. Readers take the newest, the next sync removes
    # older segment rows; a partial unique index per scope would lift this.
    __table_args__ = (
        CheckConstraint(
            "customer_id IS NULL OR segment IS NULL",
            name="ck_portfolioassignment_one_scope",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    customer_id: str | None = Field(default=None, index=True)
    segment: str | None = None
    executive_id: str
    assigned_at: datetime
    assigned_by: str  # a person id, or the governance file for segment assignments


class SupervisorAction(SQLModel, table=True):
    """One command that steered a case or a portfolio: who, what, why and when."""

    __table_args__ = (UniqueConstraint("tenant", "request_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(index=True)
    invoice_number: str | None = Field(default=None, index=True)
    action: str
    actor: str
    reason: str
    at: datetime
    detail_json: str = "{}"
    # A retried command carries the same request id and is recorded once.
    request_id: str | None = None


# -- the governance file ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonEntry(_Strict):
    """One person as the governance file lists them."""

    id: PersonId
    name: str = pydantic.Field(min_length=1)
    role: Role
    reports_to: PersonId | None = None  # stored as supervisor_id
    email: str | None = pydantic.Field(
        default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )


class AssignmentEntries(_Strict):
    """Which executive works each segment, and who works whatever no segment names."""

    default: PersonId | None = None
    segments: dict[str, PersonId] = pydantic.Field(default_factory=dict)


class GovernanceConfig(_Strict):
    """The whole governance file: the team and its segment assignments."""

    version: int = pydantic.Field(ge=1)
    people: tuple[PersonEntry, ...] = pydantic.Field(min_length=1)
    assignments: AssignmentEntries = AssignmentEntries()


def load_governance(path: Path) -> GovernanceConfig:
    """Load and check a governance file; errors name the file, the field and the reason."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GovernanceFileError(path, "(file)", f"cannot be read: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(parse)"
        raise GovernanceFileError(path, where, f"not valid YAML: {error}") from None
    try:
        config = GovernanceConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}"
            for part in first["loc"]
        ).lstrip(".")
        raise GovernanceFileError(
            path, field or "(top level)", f"{first['msg']}; fix the file and sync again"
        ) from None
    _check_people(path, config)
    _check_assignments(path, config)
    return config


def _check_people(path: Path, config: GovernanceConfig) -> None:
    roles: dict[str, Role] = {}
    for index, person in enumerate(config.people):
        if person.id in roles:
            raise GovernanceFileError(
                path, f"people[{index}].id", f"{person.id!r} appears twice"
            )
        roles[person.id] = person.role
    for index, person in enumerate(config.people):
        field = f"people[{index}].reports_to"
        if person.role is Role.STRATEGIC:
            if person.reports_to is not None:
                raise GovernanceFileError(
                    path, field, "the strategic level reports to no one; remove it"
                )
            continue
        above = Role.at(GovernanceLevel(person.role.level + 1))
        if person.reports_to is None:
            raise GovernanceFileError(
                path,
                field,
                f"missing: role {person.role} needs the id of the {above} above them",
            )
        if person.reports_to not in roles:
            raise GovernanceFileError(
                path, field, f"no person {person.reports_to!r} in people"
            )
        if roles[person.reports_to] is not above:
            raise GovernanceFileError(
                path,
                field,
                f"{person.reports_to!r} has role {roles[person.reports_to]}, but role "
                f"{person.role} reports to role {above}",
            )


def _check_assignments(path: Path, config: GovernanceConfig) -> None:
    roles = {person.id: person.role for person in config.people}
    named = [("assignments.default", config.assignments.default)]
    named += [
        (f"assignments.segments.{s}", e) for s, e in config.assignments.segments.items()
    ]
    for field, executive_id in named:
        if executive_id is not None and roles.get(executive_id) is not Role.EXECUTIVE:
            found = (
                f"has role {roles[executive_id]}"
                if executive_id in roles
                else "is unknown"
            )
            raise GovernanceFileError(
                path,
                field,
                f"{executive_id!r} {found}; assign a person of role executive",
            )
    # Beside a policy folder's segments.yaml, a segment name must be one it can produce.
    if not (path.parent / SEGMENTS_FILE).exists():
        return
    segmentation = load_policy_book(path.parent).segmentation
    known = {rule.segment for rule in segmentation.rules} | {
        segmentation.default_segment
    }
    for segment in config.assignments.segments:
        if segment not in known:
            raise GovernanceFileError(
                path,
                f"assignments.segments.{segment}",
                f"no such segment in {SEGMENTS_FILE} (known: {', '.join(sorted(known))})",
            )


# -- syncing the file into the store ---------------------------------------------------


@dataclass(frozen=True)
class SyncReport:
    """What one sync of the governance file changed in the store."""

    people_added: int
    people_changed: int
    people_deactivated: int
    assignments_changed: int

    @property
    def changed(self) -> bool:
        """True when the store differed from the file."""
        return any(dataclasses.astuple(self))

    def summary(self, source: str) -> str:
        """One line for the operator: what changed, or that the store already matched."""
        if not self.changed:
            return f"people and assignments already match {source}; nothing changed"
        return (
            f"synced from {source}: people {self.people_added} added, "
            f"{self.people_changed} changed, {self.people_deactivated} deactivated; "
            f"assignments {self.assignments_changed} changed"
        )


def sync_governance(
    engine: Engine, tenant: str, path: Path, *, at: datetime | None = None
) -> SyncReport:
    """Make a tenant's people and segment assignments match the file; idempotent."""
    config = load_governance(path)
    at = at or utc_now()
    with session_scope(engine) as session:
        added, changed, deactivated = _sync_people(session, tenant, config)
        assignments = _sync_assignments(
            session, tenant, config, f"file:{path.name}", at
        )
    report = SyncReport(added, changed, deactivated, assignments)
    log.info("synced governance of tenant %s from %s: %s", tenant, path, report)
    return report


def _sync_people(
    session: Session, tenant: str, config: GovernanceConfig
) -> tuple[int, int, int]:
    stored = {
        person.person_id: person
        for person in session.exec(select(Person).where(Person.tenant == tenant))
    }
    added = changed = 0
    for entry in config.people:
        wanted: dict[str, Any] = {
            "name": entry.name,
            "role": str(entry.role),
            "supervisor_id": entry.reports_to,
            "email": entry.email,
            "active": True,
        }
        person = stored.pop(entry.id, None)
        if person is None:
            session.add(Person(tenant=tenant, person_id=entry.id, **wanted))
            added += 1
        elif any(getattr(person, key) != value for key, value in wanted.items()):
            person.sqlmodel_update(wanted)
            session.add(person)
            changed += 1
    # People no longer in the file are kept, inactive: old tasks and audits name them.
    gone = [person for person in stored.values() if person.active]
    for person in gone:
        person.active = False
        session.add(person)
    return added, changed, len(gone)


def _sync_assignments(
    session: Session, tenant: str, config: GovernanceConfig, source: str, at: datetime
) -> int:
    wanted: dict[str | None, str] = {
        segment: executive for segment, executive in config.assignments.segments.items()
    }
    if config.assignments.default is not None:
        wanted[None] = config.assignments.default
    statement = select(PortfolioAssignment).where(
        PortfolioAssignment.tenant == tenant,
        col(PortfolioAssignment.customer_id).is_(None),
    )
    changes = 0
    for row in session.exec(statement.order_by(col(PortfolioAssignment.id).desc())):
        executive_id = wanted.pop(row.segment, None)
        if executive_id is None:
            # Not in the file any more, or an older duplicate of a row kept above.
            session.delete(row)
            changes += 1
        elif row.executive_id != executive_id:
            row.sqlmodel_update(
                {"executive_id": executive_id, "assigned_at": at, "assigned_by": source}
            )
            session.add(row)
            changes += 1
    for segment, executive_id in wanted.items():
        session.add(
            PortfolioAssignment(
                tenant=tenant,
                segment=segment,
                executive_id=executive_id,
                assigned_at=at,
                assigned_by=source,
            )
        )
        changes += 1
    return changes


# -- who acts --------------------------------------------------------------------------


def find_person(session: Session, tenant: str, person_id: str) -> Person:
    """A person of the tenant by id; a clear error when the governance does not know them."""
    person = session.exec(
        select(Person).where(Person.tenant == tenant, Person.person_id == person_id)
    ).first()
    if person is None:
        raise GovernanceError(
            f"tenant {tenant!r} has no person {person_id!r}; add them to "
            f"{GOVERNANCE_FILE} and sync it"
        )
    return person


def check_person(
    engine: Engine,
    tenant: str,
    person_id: str | None,
    *,
    roles: frozenset[Role] | None = None,
    flag: str = PERSON_FLAG,
) -> Person:
    """An active person of the tenant, holding one of ``roles`` if given; else refused.

    A typo in an id must not read as an empty inbox or pass as a supervisor, and a change
    entered by hand must name who made it: the refusal names the flag (``flag``) and lists
    the ids the store knows and where they come from.
    """
    with session_scope(engine) as session:
        people = session.exec(
            select(Person)
            .where(Person.tenant == tenant, col(Person.active))
            .order_by(col(Person.person_id))
        ).all()
    source = f"policies/{GOVERNANCE_FILE}, loaded by 'starter.py sync-people'"
    if not people:
        raise GovernanceError(
            f"tenant {tenant!r} has no people yet: run 'starter.py sync-people', which "
            f"loads policies/{GOVERNANCE_FILE}"
        )
    known = ", ".join(p.person_id for p in people)
    if not person_id:
        raise GovernanceError(
            f"say who acts with {flag} PERSON: every change is recorded with the person "
            f"who made it; known ids: {known} (from {source})"
        )
    person = next((p for p in people if p.person_id == person_id), None)
    if person is None:
        raise GovernanceError(
            f"no active person {person_id!r} in tenant {tenant!r}; known ids: {known} "
            f"(from {source})"
        )
    if roles is not None and Role(person.role) not in roles:
        allowed = (
            ", ".join(p.person_id for p in people if Role(p.role) in roles) or "none"
        )
        wanted = " or ".join(sorted(roles))
        article = "an" if wanted[0] in "aeiou" else "a"
        raise GovernanceError(
            f"{person_id} is {person.role}; this command needs {article} {wanted} "
            f"({allowed})"
        )
    return person


def assignee_for(
    session: Session, tenant: str, customer_id: str, segment: str | None
) -> str:
    """The executive of a customer: their own assignment, else the segment's, else the default."""
    scopes: list[ColumnElement[bool]] = [col(PortfolioAssignment.segment).is_(None)]
    if segment is not None:
        scopes.append(col(PortfolioAssignment.segment) == segment)
    statement = (
        select(PortfolioAssignment)
        .join(
            Person,
            and_(
                col(Person.tenant) == col(PortfolioAssignment.tenant),
                col(Person.person_id) == col(PortfolioAssignment.executive_id),
            ),
        )
        .where(
            PortfolioAssignment.tenant == tenant,
            col(Person.active),
            or_(
                col(PortfolioAssignment.customer_id) == customer_id,
                and_(col(PortfolioAssignment.customer_id).is_(None), or_(*scopes)),
            ),
        )
    )
    rows = session.exec(statement).all()
    if not rows:
        raise GovernanceError(
            f"no executive is assigned to customer {customer_id!r} (segment {segment!r}) "
            f"of tenant {tenant!r}; add a default or a segment assignment to "
            f"{GOVERNANCE_FILE} and sync it, or reassign the customer"
        )
    best = max(rows, key=lambda row: (_specificity(row), row.id or 0))
    return best.executive_id


def _specificity(row: PortfolioAssignment) -> int:
    if row.customer_id is not None:
        return 2
    return 1 if row.segment is not None else 0


def person_at_level(
    session: Session, tenant: str, executive_id: str, level: GovernanceLevel
) -> str:
    """Who acts at ``level`` for a person: them, their supervisor, or the strategic lead above."""
    person = find_person(session, tenant, executive_id)
    if person.level > level:
        raise GovernanceError(
            f"{executive_id!r} is a {person.role}, already above the "
            f"{Role.at(level)} level"
        )
    while person.level < level:
        if person.supervisor_id is None:
            raise GovernanceError(
                f"{person.person_id!r} ({person.role}) reports to no one, so nobody "
                f"acts at the {Role.at(level)} level for {executive_id!r}; set "
                f"reports_to in {GOVERNANCE_FILE}"
            )
        above = find_person(session, tenant, person.supervisor_id)
        if above.level <= person.level:
            # Levels only go up, which also ends a loop of people reporting in a circle.
            raise GovernanceError(
                f"{person.person_id!r} reports to {above.person_id!r}, who is not above "
                f"a {person.role}; fix reports_to in {GOVERNANCE_FILE}"
            )
        person = above
    return person.person_id


def supervisors_of(session: Session, tenant: str, person_id: str) -> list[str]:
    """The people above a person, nearest first: their supervisor, then the strategic lead."""
    chain: list[str] = []
    person = find_person(session, tenant, person_id)
    # A valid chain has one step per level; the bound also stops a loop in broken data.
    while person.supervisor_id is not None and len(chain) < len(GovernanceLevel):
        chain.append(person.supervisor_id)
        person = find_person(session, tenant, person.supervisor_id)
    return chain


def team_of(session: Session, tenant: str, person_id: str) -> set[str]:
    """Everyone who reports to a person, directly or through someone who does."""
    team: set[str] = set()
    frontier = {person_id}
    while frontier:
        reports = session.exec(
            select(Person.person_id).where(
                Person.tenant == tenant, col(Person.supervisor_id).in_(frontier)
            )
        ).all()
        frontier = set(reports) - team - {person_id}
        team |= frontier
    return team


# -- steering and its audit ------------------------------------------------------------


def reassign_customer(
    engine: Engine,
    tenant: str,
    customer_id: str,
    executive_id: str,
    *,
    actor: str,
    reason: str,
    at: datetime | None = None,
) -> SupervisorAction | None:
    """Give one customer to an executive and audit it; None if they already had it."""
    # Limit: the customer's open tasks keep their assignee; only tasks opened from now
    # on go to the new executive. A command to reassign one task would lift this.
    at = at or utc_now()
    command = SupervisorCommand(actor=actor, reason=reason)
    with session_scope(engine) as session:
        _check_active_executive(session, tenant, executive_id)
        previous = _replace_customer_assignment(
            session, tenant, customer_id, executive_id
        )
        if previous == executive_id:
            return None
        session.add(
            PortfolioAssignment(
                tenant=tenant,
                customer_id=customer_id,
                executive_id=executive_id,
                assigned_at=at,
                assigned_by=actor,
            )
        )
        detail = {"customer_id": customer_id, "from": previous, "to": executive_id}
        action = _audit(session, tenant, None, REASSIGN_CUSTOMER, command, detail, at)
    log.info(
        "reassigned customer %s from %s to %s", customer_id, previous, executive_id
    )
    return action


def _check_active_executive(session: Session, tenant: str, executive_id: str) -> None:
    executive = find_person(session, tenant, executive_id)
    if executive.role != Role.EXECUTIVE:
        raise GovernanceError(
            f"{executive_id!r} has role {executive.role}; a customer is worked by an "
            "executive"
        )
    if not executive.active:
        raise GovernanceError(
            f"{executive_id!r} is no longer in {GOVERNANCE_FILE}; choose an active "
            "executive"
        )


def _replace_customer_assignment(
    session: Session, tenant: str, customer_id: str, executive_id: str
) -> str | None:
    # Returns who had the customer; their rows go unless they already are the executive.
    rows = session.exec(
        select(PortfolioAssignment)
        .where(
            PortfolioAssignment.tenant == tenant,
            PortfolioAssignment.customer_id == customer_id,
        )
        .order_by(col(PortfolioAssignment.id).desc())
    ).all()
    previous = rows[0].executive_id if rows else None
    if previous != executive_id:
        for stale in rows:
            session.delete(stale)
    return previous


def record_supervisor_action(
    engine: Engine,
    tenant: str,
    invoice_number: str | None,
    action: str,
    command: SupervisorCommand,
    detail: dict[str, Any],
    at: datetime,
    *,
    request_id: str | None = None,
) -> SupervisorAction:
    """Write one supervisor command to the audit trail; a repeated request id is stored once."""
    try:
        with session_scope(engine) as session:
            return _audit(
                session, tenant, invoice_number, action, command, detail, at, request_id
            )
    except IntegrityError:
        # A retry of the same request committed between our read and our insert.
        with session_scope(engine) as session:
            return _audit(
                session, tenant, invoice_number, action, command, detail, at, request_id
            )


def _audit(
    session: Session,
    tenant: str,
    invoice_number: str | None,
    action: str,
    command: SupervisorCommand,
    detail: dict[str, Any],
    at: datetime,
    request_id: str | None = None,
) -> SupervisorAction:
    if not command.actor.strip() or not command.reason.strip():
        raise GovernanceError(
            f"{action}: a supervisor command needs an actor and a reason for the audit"
        )
    if request_id is not None:
        earlier = session.exec(
            select(SupervisorAction).where(
                SupervisorAction.tenant == tenant,
                SupervisorAction.request_id == request_id,
            )
        ).first()
        if earlier is not None:
            return earlier
    row = SupervisorAction(
        tenant=tenant,
        invoice_number=invoice_number,
        action=action,
        actor=command.actor,
        reason=command.reason,
        at=at,
        detail_json=json_text(detail),
        request_id=request_id,
    )
    session.add(row)
    session.flush()
    return row


def json_text(value: Any) -> str:
    """Stable JSON text of a detail or an outcome: dates in ISO form, enums by value."""
    return json.dumps(value, sort_keys=True, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")
