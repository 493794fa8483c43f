"""Eligibility as docs/rules.md states it: every status, with its dates, amount due and reason."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus as S
from models.base import HouseholdStatus, MemberStatus
from models.coverage.allocation import reverse
from models.coverage.eligibility import Eligibility, household_eligibility, member_eligibility
from models.coverage.periods import book_subsidised_periods
from models.members.household import Member
from tests import factories
from tests.factories import make_household, pay

d = date
PAID = [(d(2026, 11, 20), 15_000)]  # CMU, 4 people: fee + 14,000 → covered 2026-11-20 … 2027-11-19

# (name, scheme, category, payments, setup, on) → (status, covered, valid_until, waiting_until, amount_due, reason)
ROWS: list[tuple[str, str, str, list[tuple[date, int]], str | None, date, tuple[Any, ...]]] = [
    (
        "enrolled, never paid",
        "cmu-thies",
        "standard",
        [],
        None,
        d(2026, 11, 25),
        (S.PENDING, False, None, None, 15_000, 15_000, d(2026, 11, 25), "no premium paid yet"),
    ),
    (
        "paid, in the month of waiting",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2026, 12, 1),
        (
            S.WAITING,
            False,
            d(2027, 11, 19),
            d(2026, 12, 19),
            0,
            14_000,
            d(2027, 11, 19),
            "waiting period until 2026-12-19",
        ),
    ),
    (
        "last day of waiting",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2026, 12, 19),
        (
            S.WAITING,
            False,
            d(2027, 11, 19),
            d(2026, 12, 19),
            0,
            14_000,
            d(2027, 11, 19),
            "waiting period until 2026-12-19",
        ),
    ),
    (
        "first covered day",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2026, 12, 20),
        (S.ACTIVE, True, d(2027, 11, 19), None, 0, 14_000, d(2027, 11, 19), None),
    ),
    (
        "last day of the period",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2027, 11, 19),
        (S.ACTIVE, True, d(2027, 11, 19), None, 0, 14_000, d(2027, 11, 19), None),
    ),
    (
        "renewed: covered until the end of the renewal",
        "cmu-thies",
        "standard",
        [*PAID, (d(2027, 11, 1), 14_000)],
        None,
        d(2027, 6, 1),
        (S.ACTIVE, True, d(2028, 11, 19), None, 0, 14_000, d(2028, 11, 19), None),
    ),
    (
        "CMU grace is not covered",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2027, 11, 20),
        (
            S.GRACE,
            False,
            d(2027, 11, 19),
            None,
            14_000,
            14_000,
            d(2027, 11, 20),
            "premium unpaid since 2027-11-19, grace until 2027-12-19",
        ),
    ),
    (
        "CMU last day of grace",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2027, 12, 19),
        (
            S.GRACE,
            False,
            d(2027, 11, 19),
            None,
            14_000,
            14_000,
            d(2027, 12, 19),
            "premium unpaid since 2027-11-19, grace until 2027-12-19",
        ),
    ),
    (
        "CMU past grace: lapsed",
        "cmu-thies",
        "standard",
        PAID,
        None,
        d(2027, 12, 20),
        (S.LAPSED, False, d(2027, 11, 19), None, 14_000, 14_000, d(2027, 12, 20), "premium unpaid since 2027-11-19"),
    ),
    (
        "SKY grace is covered",
        "sky-cambodia",
        "standard",
        [(d(2026, 11, 20), 4_000)],
        None,
        d(2027, 1, 25),
        (S.GRACE, True, d(2027, 1, 19), None, 2_000, 2_000, d(2027, 1, 25), None),
    ),
    (
        "SKY past its 15 days of grace",
        "sky-cambodia",
        "standard",
        [(d(2026, 11, 20), 4_000)],
        None,
        d(2027, 2, 4),
        (S.LAPSED, False, d(2027, 1, 19), None, 2_000, 2_000, d(2027, 2, 4), "premium unpaid since 2027-01-19"),
    ),
    (
        "suspended by staff, with their reason",
        "cmu-thies",
        "standard",
        PAID,
        "suspend",
        d(2027, 1, 10),
        (S.SUSPENDED, False, None, None, 0, 14_000, d(2027, 1, 10), "documents under review"),
    ),
    (
        "member deceased",
        "cmu-thies",
        "standard",
        PAID,
        "deceased",
        d(2027, 1, 10),
        (S.INACTIVE, False, None, None, 0, 10_500, d(2027, 11, 19), "member deceased"),
    ),
    (
        "member left on that day",
        "cmu-thies",
        "standard",
        PAID,
        "left",
        d(2027, 3, 1),
        (S.INACTIVE, False, None, None, 0, 10_500, d(2027, 11, 19), "member left the household"),
    ),
    (
        "member leaving later is still covered",
        "cmu-thies",
        "standard",
        PAID,
        "left",
        d(2027, 2, 28),
        (S.ACTIVE, True, d(2027, 11, 19), None, 0, 14_000, d(2027, 11, 19), None),
    ),
    (
        "family-grant household funded by the state",
        "cmu-thies",
        "bsf",
        [],
        "subsidy",
        d(2027, 1, 10),
        (S.ACTIVE, True, d(2027, 11, 19), None, 0, 0, d(2027, 11, 19), None),
    ),
    (
        "reversed payment: back to pending",
        "cmu-thies",
        "standard",
        PAID,
        "reverse",
        d(2027, 1, 10),
        (S.PENDING, False, None, None, 15_000, 15_000, d(2027, 1, 10), "no premium paid yet"),
    ),
    (
        "partly paid: the fee, and part of the period as credit",
        "cmu-thies",
        "standard",
        [(d(2026, 11, 20), 5_000)],
        None,
        d(2026, 11, 25),
        (S.PENDING, False, None, None, 10_000, 10_000, d(2026, 11, 25), "partly paid: 10,000 F CFA still missing"),
    ),
]


@pytest.mark.parametrize(
    ("name", "scheme_code", "category", "payments", "setup", "on", "expected"), ROWS, ids=[r[0] for r in ROWS]
)
def test_member_eligibility(
    session: Session,
    name: str,
    scheme_code: str,
    category: str,
    payments: list[tuple[date, int]],
    setup: str | None,
    on: date,
    expected: tuple[Any, ...],
) -> None:
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=4 if scheme_code == "cmu-thies" else 1, category=category)
    for index, (paid_on, amount) in enumerate(payments):
        pay(session, household, amount, paid_on, ref=f"elig:{household.id}:{index}")
    member = household.members[-1]
    session.commit()
    if setup == "suspend":
        household.status, household.status_reason = HouseholdStatus.SUSPENDED, "documents under review"
    elif setup == "deceased":
        member.status = MemberStatus.DECEASED
    elif setup == "left":
        member.left_on = d(2027, 3, 1)
    elif setup == "subsidy":
        book_subsidised_periods(session, scheme, household.enrolled_on)
    elif setup == "reverse":
        reverse(session, f"elig:{household.id}:0", "operator reversal", d(2026, 12, 1))
    session.commit()

    result = member_eligibility(session, member, on)
    got = (
        result.status,
        result.covered,
        result.valid_until,
        result.waiting_until,
        result.amount_due,
        result.next_payment_amount,
        result.next_payment_due,
        result.reason,
    )
    assert got == expected, name
    assert result.currency == scheme.currency
    assert set(Eligibility.__dataclass_fields__) == {
        "covered",
        "status",
        "valid_until",
        "waiting_until",
        "amount_due",
        "currency",
        "reason",
        "next_payment_amount",
        "next_payment_due",
        "credit",
    }


def test_every_status_has_a_row() -> None:
    assert {row[6][0] for row in ROWS} == set(S)


def test_household_eligibility_matches_its_active_members(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    pay(session, household, 15_000, d(2026, 11, 20))
    on = d(2027, 2, 1)
    assert household_eligibility(session, household, on).status == S.ACTIVE
    assert {member_eligibility(session, m, on).status for m in household.members} == {S.ACTIVE}


def test_a_check_costs_a_handful_of_queries(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    pay(session, household, 15_000, d(2026, 11, 20))
    member_no = household.members[0].member_no
    statements: list[str] = []

    # A fresh session, as a USSD hop has: nothing cached.
    with Session(session.get_bind()) as fresh:
        fresh_member = fresh.scalar(select(Member).where(Member.member_no == member_no))
        assert fresh_member is not None

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        engine = fresh.get_bind()
        event.listen(engine, "before_cursor_execute", count)
        try:
            result = member_eligibility(fresh, fresh_member, d(2027, 2, 1))
            warm = len(statements)
            member_eligibility(fresh, fresh_member, d(2027, 2, 1))
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert result.status == S.ACTIVE
    # Cold: household, scheme, plans, subsidy categories, bands, balance+fee, members, periods.
    assert warm <= 8, statements
    # Warm (scheme and household cached in the session): balance+fee, member count, periods.
    assert len(statements) - warm <= 3, statements[warm:]
