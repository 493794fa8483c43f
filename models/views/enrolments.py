"""The staff validation queue: enrolments by status, one enrolment beside its duplicate candidates.

Read under the session's mutuelle scope (models/views/scope.py), like every admin page: staff kept to a mutuelle see
its enrolments, collectors and the candidates among its members and enrolments only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from models.enrolment.changes import describe_change
from models.enrolment.duplicates import Candidate, Person, find_duplicates
from models.enrolment.tables import (
    Collector,
    Enrolment,
    EnrolmentEvent,
    EnrolmentMember,
    EnrolmentStatus,
    HouseholdChange,
)
from models.enrolment.validate import DECIDABLE
from models.members.household import Household, Member, Network
from models.schemes.mutuelle import Mutuelle
from models.views.listings import Cursor, Page, paginate

# What the queue shows unless asked: the enrolments waiting for staff, and those waiting for their collector.
WAITING = (EnrolmentStatus.SUBMITTED, EnrolmentStatus.NEEDS_CHANGES)


@dataclass(frozen=True)
class EnrolmentFilters:
    """Filters of the queue (default: the waiting ones); an empty `statuses` or a None means "any"."""

    statuses: tuple[EnrolmentStatus, ...] = WAITING
    mutuelle_id: int | None = None
    network_id: int | None = None
    collector_id: int | None = None


@dataclass(frozen=True)
class QueueRow:
    """One enrolment of the queue: its head, size, mutuelle, network, collector and household once validated."""

    enrolment: Enrolment
    head: EnrolmentMember | None  # None for a household change (its people are the members it adds, if any)
    members: int
    mutuelle_code: str
    network_name: str | None
    collector_name: str
    household_no: str | None
    changed_household_id: int | None = None  # a change's household
    changed_household_no: str | None = None


@dataclass(frozen=True)
class QueueChoices:
    """The values the queue's filters offer: mutuelles, networks and collectors the reader sees."""

    mutuelles: list[tuple[int, str]]
    networks: list[tuple[int, str]]
    collectors: list[tuple[int, str]]


@dataclass(frozen=True)
class ShownCandidate:
    """A duplicate candidate as staff compare it: the enrolled person it resembles and who it is."""

    candidate: Candidate
    person: EnrolmentMember | None
    name: str
    date_of_birth: date | None
    phone: str | None
    household_id: int | None = None  # a member's household
    household_no: str | None = None
    status: str | None = None  # a pending enrolment's status


@dataclass
class EnrolmentDossier:
    """An enrolment with its people, its candidates now, its audit trail and the decisions staff may take."""

    enrolment: Enrolment
    candidates: list[ShownCandidate] = field(default_factory=list)
    events: list[EnrolmentEvent] = field(default_factory=list)
    decisions: tuple[str, ...] = ()
    # A household change: the household it changes and each change in a line (`describe_change`).
    changed_household: Household | None = None
    changes: list[str] = field(default_factory=list)


def waiting_count(session: Session) -> int:
    """Return how many enrolments wait for a staff decision (SUBMITTED)."""
    query = select(func.count()).select_from(Enrolment).where(Enrolment.status == EnrolmentStatus.SUBMITTED)
    return int(session.scalar(query) or 0)


def queue_choices(session: Session) -> QueueChoices:
    """Return the mutuelles, networks and collectors to filter the queue by."""
    mutuelles = session.execute(select(Mutuelle.id, Mutuelle.code).order_by(Mutuelle.code)).tuples()
    networks = session.execute(select(Network.id, Network.name).order_by(Network.name)).tuples()
    collectors = session.execute(select(Collector.id, Collector.name).order_by(Collector.name, Collector.id)).tuples()
    return QueueChoices(list(mutuelles), list(networks), list(collectors))


def enrolments_page(
    session: Session, filters: EnrolmentFilters, number: int, per_page: int, cursor: Cursor | None = None
) -> Page[QueueRow]:
    """Return a page of the queue, oldest first (the order staff work through it), in one query."""
    head = aliased(EnrolmentMember)
    size = (
        select(func.count(EnrolmentMember.id))
        .where(EnrolmentMember.enrolment_id == Enrolment.id)
        .correlate(Enrolment)
        .scalar_subquery()
    )
    changed = aliased(Household)
    query = (
        select(
            Enrolment,
            head,
            size,
            Mutuelle.code,
            Network.name,
            Collector.name,
            Household.household_no,
            changed.id,
            changed.household_no,
        )
        .outerjoin(head, (head.enrolment_id == Enrolment.id) & (head.relationship_to_head == "head"))
        .join(Mutuelle, Mutuelle.id == Enrolment.mutuelle_id)
        .join(Collector, Collector.id == Enrolment.collector_id)
        .outerjoin(Network, Network.id == Enrolment.network_id)
        .outerjoin(Household, Household.id == Enrolment.household_id)
        .outerjoin(HouseholdChange, HouseholdChange.enrolment_id == Enrolment.id)
        .outerjoin(changed, changed.id == HouseholdChange.household_id)
    )
    if filters.statuses:
        query = query.where(Enrolment.status.in_(filters.statuses))
    if filters.mutuelle_id is not None:
        query = query.where(Enrolment.mutuelle_id == filters.mutuelle_id)
    if filters.network_id is not None:
        query = query.where(Enrolment.network_id == filters.network_id)
    if filters.collector_id is not None:
        query = query.where(Enrolment.collector_id == filters.collector_id)
    page = paginate(session, query, number, per_page, order=[Enrolment.created_at, Enrolment.id], cursor=cursor)
    return page.with_items([QueueRow(*row) for row in page.items])


def enrolment_dossier(session: Session, enrolment_id: int) -> EnrolmentDossier | None:
    """Return an enrolment with its candidates computed now (none once validated), or None when not seen."""
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None:
        return None
    dossier = EnrolmentDossier(
        enrolment,
        events=list(enrolment.events),
        decisions=tuple(action for action, allowed in DECIDABLE.items() if enrolment.status in allowed),
    )
    if enrolment.change is not None:
        dossier.changed_household = enrolment.change.household
        dossier.changes = [describe_change(item, enrolment) for item in enrolment.change.changes]
    if enrolment.status is EnrolmentStatus.VALIDATED:
        return dossier  # its people are members now: they would be their own candidates
    people = [
        Person(m.first_name, m.last_name, m.date_of_birth, m.phone, m.id_number, m.card_number)
        for m in enrolment.members
    ]
    candidates = find_duplicates(session, enrolment.scheme_id, people, exclude_enrolment=enrolment.id)
    dossier.candidates = _shown(session, enrolment, candidates)
    return dossier


def _shown(session: Session, enrolment: Enrolment, candidates: list[Candidate]) -> list[ShownCandidate]:
    numbers = [c.member_no for c in candidates if c.member_no]
    ids = [c.enrolment_id for c in candidates if c.enrolment_id is not None]
    members = {
        row.member_no: row
        for row in session.execute(
            select(
                Member.member_no,
                Member.first_name,
                Member.last_name,
                Member.date_of_birth,
                Member.phone,
                Household.id.label("household_id"),
                Household.household_no,
            )
            .join(Household, Household.id == Member.household_id)
            .where(Member.member_no.in_(numbers))
        )
    }
    heads = {
        row.id: row
        for row in session.execute(
            select(
                Enrolment.id,
                Enrolment.status,
                EnrolmentMember.first_name,
                EnrolmentMember.last_name,
                EnrolmentMember.date_of_birth,
                EnrolmentMember.phone,
            )
            .join(EnrolmentMember, EnrolmentMember.enrolment_id == Enrolment.id)
            .where(Enrolment.id.in_(ids), EnrolmentMember.relationship_to_head == "head")
        )
    }
    by_position = {m.position: m for m in enrolment.members}
    shown = []
    for c in candidates:
        person = by_position.get(c.member)
        if c.member_no is not None:
            member = members.get(c.member_no)
            if member is None:
                continue  # not the reader's to see
            shown.append(
                ShownCandidate(
                    c,
                    person,
                    f"{member.first_name} {member.last_name}",
                    member.date_of_birth,
                    member.phone,
                    household_id=member.household_id,
                    household_no=member.household_no,
                )
            )
        elif c.enrolment_id in heads:
            other = heads[c.enrolment_id]
            shown.append(
                ShownCandidate(
                    c,
                    person,
                    f"{other.first_name} {other.last_name}",  # its head: the candidate may be another of its people
                    None,
                    None,
                    status=EnrolmentStatus(other.status).value,
                )
            )
    return shown
