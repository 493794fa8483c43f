"""A facility's FHIR lookup of one member: the eligibility API's check (logged, channel `fhir`) and its cover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import CheckChannel
from models.coverage.checks import check_member, find_member
from models.coverage.money import CoveragePeriod
from models.fhir.resources import Cover, Person
from models.schemes.scheme import Scheme
from models.views.standing import Span, cover_run


@dataclass(frozen=True)
class PatientCheck:
    """What a FHIR answer about a known member is built from."""

    scheme: Scheme
    person: Person
    cover: Cover


def benefit_start(session: Session, household_id: int, on: date, joined_on: date) -> date | None:
    """Return the first day of the household's run of cover holding the date (else the last before), not before joining.

    The exports' `coverage_start` (`models.views.standing.cover_run`), for one household.
    """
    period = CoveragePeriod
    spans = [
        Span(start_on, end_on, waiting_until)
        for start_on, end_on, waiting_until in session.execute(
            select(period.start_on, period.end_on, period.waiting_until)
            .where(period.household_id == household_id, period.reversed_at.is_(None))
            .order_by(period.start_on)
        ).tuples()
    ]
    run = cover_run(spans, on)
    return max(run[0], joined_on) if run else None


def check_patient(
    session: Session, member_no: str, on: date | None, facility: str, api_token_id: int
) -> PatientCheck | None:
    """Answer a facility's FHIR lookup of a member on a date (default: the scheme's today), logged; None if unknown.

    The answer is `check_member`'s, so it is the eligibility API's; the caller commits (the log).
    """
    member = find_member(session, member_no)
    day = on or (member.household.scheme.local_today() if member is not None else None)
    answer = check_member(session, member_no, day, CheckChannel.FHIR, facility, api_token_id=api_token_id)
    if member is None or answer is None or day is None:
        return None
    eligibility = answer.eligibility
    # The benefit period ends on `valid_until`, the API's; an inactive member has none (as in the members export).
    end = eligibility.valid_until
    start = benefit_start(session, member.household_id, day, member.joined_on) if end is not None else None
    if start is not None and end is not None and start > end:
        start = None
    person = Person(answer.member_no, answer.first_name, answer.sex, answer.birth_year)
    return PatientCheck(member.household.scheme, person, Cover(day, eligibility, start, end))
