"""Bulk export for national systems: every member of the selected households as FHIR Patient or Coverage, NDJSON.

One resource per line (FHIR bulk data's `application/fhir+ndjson`), read in batches of `EXPORT_BATCH` like the CSV
exports, so an export of any size streams in constant memory. Patients carry the full name and date of birth (the
members export's); Coverage the member's cover on a date, as the members export computes it, and the household
number as `subscriberId`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.coverage.eligibility import member_answer
from models.fhir.resources import Cover, Person, coverage, patient
from models.members.household import Account, Household, Member
from models.views.listings import EXPORT_BATCH
from models.views.selection import HouseholdSelection
from models.views.standing import household_standings, load_schemes

RESOURCE_TYPES = ("Patient", "Coverage")


def selected_members(session: Session, selection: HouseholdSelection) -> Iterator[list[tuple[Member, Household, Any]]]:
    """Yield the members of the selected households in batches, with their household and account id, by number.

    The one household query of the FHIR export: a later filter (per mutuelle) belongs in `HouseholdSelection`.
    """
    query = (
        select(Member, Household, Account.id)
        .join(Household, Household.id == Member.household_id)
        .outerjoin(Account, Account.household_id == Household.id)
        .order_by(Household.household_no, Member.member_no)
    )
    for batch in session.execute(selection.apply(query).execution_options(yield_per=EXPORT_BATCH)).partitions():
        yield [(row[0], row[1], row[2]) for row in batch]


def _person(member: Member) -> Person:
    born = member.date_of_birth
    return Person(
        member.member_no, member.first_name, member.sex.value, born.year if born else None, member.last_name, born
    )


def patient_lines(session: Session, selection: HouseholdSelection) -> Iterator[str]:
    """Yield each selected member's Patient as one line of JSON."""
    schemes = load_schemes(session)
    for batch in selected_members(session, selection):
        for member, household, _ in batch:
            yield patient(schemes[household.scheme_id], _person(member)).model_dump_json() + "\n"


def coverage_lines(session: Session, selection: HouseholdSelection, on: date) -> Iterator[str]:
    """Yield each selected member's Coverage on a date as one line of JSON (the members export's cover)."""
    schemes = load_schemes(session)
    for batch in selected_members(session, selection):
        households = list({household.id: household for _, household, _ in batch}.values())
        accounts = {household.id: account for _, household, account in batch if account is not None}
        standings = household_standings(session, households, on, account_ids=accounts)
        for member, household, _ in batch:
            standing = standings[household.id]
            answer = member_answer(member.status, member.left_on, standing.answer, on)
            counted = answer is standing.answer  # an active member: the household's cover is theirs
            start = standing.cover_start if counted else None
            if start is not None and member.joined_on > start:
                start = member.joined_on
            cover = Cover(on, answer, start, standing.cover_end if counted else None, household.household_no)
            yield coverage(schemes[household.scheme_id], member.member_no, cover).model_dump_json() + "\n"
