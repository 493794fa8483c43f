"""Premium rules as docs/rules.md states them: period prices, subsidy shares, the amount due."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.orm import Session

from models.base import MemberStatus
from models.coverage.premiums import amount_due, period_price, plan_price, split_price
from models.schemes.scheme import SubsidyCategory
from tests import factories
from tests.factories import make_household, pay

D = date(2026, 11, 20)


@pytest.mark.parametrize(
    ("scheme_code", "plan", "size", "category", "price", "household_share", "funder_share"),
    [
        # CMU: 7,000 F per person per year, the state pays half (standard) or all (bsf, cec).
        ("cmu-thies", "yearly", 4, "standard", 28_000, 14_000, 14_000),
        ("cmu-thies", "yearly", 1, "standard", 7_000, 3_500, 3_500),
        ("cmu-thies", "half-yearly", 4, "standard", 14_000, 7_000, 7_000),
        ("cmu-thies", "half-yearly", 1, "standard", 3_500, 1_750, 1_750),
        ("cmu-thies", "yearly", 4, "bsf", 28_000, 0, 28_000),
        ("cmu-thies", "yearly", 6, "cec", 42_000, 0, 42_000),
        # SKY: household bands by size, monthly, no subsidy for standard households.
        ("sky-cambodia", "monthly", 1, "standard", 2_000, 2_000, 0),
        ("sky-cambodia", "monthly", 2, "standard", 3_600, 3_600, 0),
        ("sky-cambodia", "monthly", 4, "standard", 6_400, 6_400, 0),
        ("sky-cambodia", "monthly", 7, "standard", 10_000, 10_000, 0),
        ("sky-cambodia", "monthly", 8, "standard", 11_000, 11_000, 0),
        ("sky-cambodia", "monthly", 11, "standard", 11_000, 11_000, 0),
        ("sky-cambodia", "monthly", 3, "idpoor", 5_000, 0, 5_000),
    ],
)
def test_period_price(
    session: Session,
    scheme_code: str,
    plan: str,
    size: int,
    category: str,
    price: int,
    household_share: int,
    funder_share: int,
) -> None:
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=size, category=category, plan=plan)
    result = period_price(session, household, D)
    assert (result.price, result.household_share, result.subsidy) == (price, household_share, funder_share)
    assert result.members == size
    assert result.currency == scheme.currency
    assert result.funder == (scheme.subsidy(category).funder if funder_share else None)


@pytest.mark.parametrize(
    ("amount", "per_months", "members", "months", "price"),
    [
        (7000, 12, 3, 1, 1750),  # 21,000 / 12 = 1,750 exactly
        (7000, 12, 1, 1, 583),  # 583.33 rounds down
        (7000, 12, 1, 5, 2917),  # 2,916.67 rounds up
        (1000, 12, 1, 3, 250),
        (100, 8, 1, 1, 13),  # 12.5 rounds half up
        (7000, 12, 0, 12, 0),  # nobody left to cover
    ],
)
def test_per_person_price_rounds_in_integers(
    session: Session, amount: int, per_months: int, members: int, months: int, price: int
) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    scheme.premium_amount, scheme.premium_per_months = amount, per_months
    plan = scheme.plan("yearly")
    plan.months = months
    assert plan_price(scheme, plan, members) == price
    session.rollback()


@pytest.mark.parametrize(
    ("price", "share_bp", "household", "funder"),
    [(28_000, 5000, 14_000, 14_000), (7_001, 5000, 3_501, 3_500), (5_000, 10_000, 0, 5_000), (999, 0, 999, 0)],
)
def test_split_price_gives_the_odd_unit_to_the_household(
    price: int, share_bp: int, household: int, funder: int
) -> None:
    category = SubsidyCategory(code="x", share_bp=share_bp, funder="state")
    assert split_price(price, category) == (household, funder)


def test_only_active_members_count(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme, size=5)
    members = household.members
    members[1].status = MemberStatus.DECEASED
    members[2].status = MemberStatus.LEFT
    members[3].left_on = date(2027, 3, 1)  # still active in status, leaving in March
    session.commit()
    assert period_price(session, household, date(2027, 2, 28)).members == 3
    assert period_price(session, household, date(2027, 3, 1)).members == 2
    assert period_price(session, household, date(2027, 3, 1)).household_share == 7_000


@pytest.mark.parametrize(
    ("scheme_code", "size", "category", "payments", "fee", "period", "credit", "total"),
    [
        ("cmu-thies", 4, "standard", [], 1_000, 14_000, 0, 15_000),
        ("cmu-thies", 4, "standard", [500], 1_000, 14_000, 500, 14_500),  # not enough for the fee yet
        ("cmu-thies", 4, "standard", [5_000], 0, 14_000, 4_000, 10_000),  # the fee is paid first
        ("cmu-thies", 4, "standard", [15_000], 0, 14_000, 0, 14_000),  # fee paid once: next time only the share
        ("cmu-thies", 4, "standard", [15_000, 20_000], 0, 14_000, 6_000, 8_000),
        ("cmu-thies", 4, "bsf", [], 0, 0, 0, 0),  # the state pays it all, fee included
        ("sky-cambodia", 3, "standard", [], 0, 5_000, 0, 5_000),
        ("sky-cambodia", 3, "standard", [12_000], 0, 5_000, 2_000, 3_000),
    ],
)
def test_amount_due(
    session: Session,
    scheme_code: str,
    size: int,
    category: str,
    payments: list[int],
    fee: int,
    period: int,
    credit: int,
    total: int,
) -> None:
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=size, category=category)
    for amount in payments:
        pay(session, household, amount, D)
    due = amount_due(session, household, D)
    assert (due.fee, due.period, due.credit, due.total) == (fee, period, credit, total)
    assert due.currency == scheme.currency


def test_amount_due_is_never_negative(session: Session) -> None:
    scheme = factories.scheme(session, "sky-cambodia")
    household = make_household(session, scheme, size=1)
    # Twelve months ahead is the cap: the rest of 100,000 stays as credit far above one period.
    pay(session, household, 100_000, D)
    due = amount_due(session, household, D)
    assert due.credit > due.period
    assert due.total == 0
