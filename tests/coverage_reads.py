"""Helpers for tests: a household's coverage as the USSD's one-statement reads give it and as the ORM rules do."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from menus.data import DatabaseData
from menus.values import Coverage
from models.coverage.eligibility import household_eligibility, pay_offer
from models.coverage.premiums import amount_due
from models.members.household import Household, Member, active_member_clause


def orm_coverage(session: Session, household_id: int, on: date) -> dict[str, Any]:
    """Return what the coverage data must say, from the ORM rules (`amount_due`, `household_eligibility`…)."""
    session.expire_all()
    household = session.get(Household, household_id)
    assert household is not None
    due = amount_due(session, household, on)
    overall = household_eligibility(session, household, on, due)
    offer = pay_offer(session, household, overall, on, due)
    listed = session.scalars(
        select(Member.first_name)
        .where(Member.household_id == household_id, active_member_clause(on))
        .order_by(Member.member_no)
    )
    return {
        "due": overall.amount_due,
        "period": due.period,
        "choices": [[c.periods, c.months, c.amount] for c in offer.choices],
        "refusal": offer.refusal.value if offer.refusal else None,
        "next": overall.next_payment_amount,
        "next_due": overall.next_payment_due.isoformat() if overall.next_payment_due else None,
        "credit": overall.credit,
        "household_status": overall.status.value,
        "covered": overall.covered,
        "until": overall.valid_until.isoformat() if overall.valid_until else None,
        "covered_until": overall.valid_until.isoformat() if overall.covered and overall.valid_until else None,
        "ends": overall.cover_ends.isoformat() if overall.cover_ends else None,
        "waiting": overall.waiting_until.isoformat() if overall.waiting_until else None,
        "members": list(listed),
    }


def ussd_coverage(session: Session, phone: str, on: date, household_id: int | None = None) -> dict[str, Any]:
    """Return the coverage the USSD reads on a date for one of the phone's households (default: the first).

    Read the way a hop reads it (its own session, in autocommit), on the dial and again on its own (a session
    rebuilt without it): both must agree, and so must the record read back from its JSON form (as a later hop
    reads it from Redis). `My household` and `My coverage` list the same active members.
    """
    data = DatabaseData(lambda: Session(session.get_bind()), today=lambda _tz: on)
    try:
        households, _caller, coverages = data.dial(phone)
        chosen = households[0].id if household_id is None else household_id
        coverage = coverages[chosen]
        assert data.coverage(chosen, households) == coverage
    finally:
        data.close()
    assert Coverage.from_json(json.loads(json.dumps(coverage.to_json()))) == coverage
    household = next(h for h in households if h.id == chosen)
    assert [m.first for m in household.members] == list(coverage.members)
    return {
        "due": coverage.due,
        "period": coverage.period,
        "choices": [[c.periods, c.months, c.amount] for c in coverage.choices],
        "refusal": coverage.refusal,
        "next": coverage.next_amount,
        "next_due": _iso(coverage.next_due),
        "credit": coverage.credit,
        "household_status": coverage.status,
        "covered": coverage.covered,
        "until": _iso(coverage.valid_until),
        "covered_until": _iso(coverage.until),
        "ends": _iso(coverage.ends),
        "waiting": _iso(coverage.waiting),
        "members": list(coverage.members),
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
