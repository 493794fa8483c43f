"""Scheme reports, list filters and the reconciliation export's columns, against the rules household by household.

On the demo seed (every eligibility status, both schemes, a network), on SQLite and PostgreSQL: each figure of a
report, and each household's eligibility in the lists, is compared with what `models.coverage.eligibility`
answers for every household one at a time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.coverage.eligibility import household_eligibility
from models.members.household import Household
from models.views.household_lists import HouseholdFilters, households_page
from tests.admin_helpers import admin_app, db_session, seeded_url

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

# Days from today: now, inside and past the CMU and SKY grace periods, a year back, before the seed's history.
DAY_SHIFTS = [0, -5, -20, -40, -95, -200, -390, -420, -500, 45]


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12, 0))


# ---------------------------------------------------------------- eligibility in SQL: the rules, for every household


@pytest.mark.parametrize("shift", DAY_SHIFTS)
def test_listed_eligibility_is_the_rules_answer_for_every_household(db_session: Session, shift: int) -> None:
    now = _noon(utcnow().date() + timedelta(days=shift))
    rows = households_page(db_session, HouseholdFilters(), now, per_page=200).items
    households = {h.id: h for h in db_session.scalars(select(Household))}
    assert len(rows) == len(households) <= 200
    for row in rows:
        household = households[row.household.id]
        on = household.scheme.local_today(now)
        answer = household_eligibility(db_session, household, on)
        listed = (row.on, row.status, row.covered, row.valid_until, row.waiting_until)
        expected = (on, answer.status, answer.covered, answer.valid_until, answer.waiting_until)
        assert listed == expected, household.household_no
