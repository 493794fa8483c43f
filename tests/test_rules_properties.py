"""Properties: any history keeps the ledger invariants, and the USSD reads the cover the ORM rules give.

A history is a sequence of payments, network payments paid out to the network's households, reversals (of
either: a reversal after the money was spent leaves arrears), subsidy runs, members leaving or dying, staff
suspending, closing or reinstating the household, and date moves.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, MemberStatus
from models.coverage.allocation import pay_network_households, reverse
from models.coverage.ledger import account_state, get_or_create_account
from models.coverage.periods import add_months, book_subsidised_period, live_periods
from models.coverage.premiums import amount_due, is_fully_subsidised, period_price
from models.members.household import Household
from tests import factories
from tests.coverage_reads import orm_coverage, ussd_coverage
from tests.factories import make_household, make_network, pay
from tests.ledger_invariants import check_invariants

START = date(2026, 11, 20)
_phones = itertools.count(1)

# An amount of money: any, or what the household owes today (all of it, part of it, or a period more).
amounts = st.one_of(st.integers(1, 40_000), st.sampled_from(["due", "part", "ahead"]))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), amounts),
        st.tuples(st.just("network"), amounts),  # to the network, paid out to its households that fall due
        st.tuples(st.just("reverse"), st.integers(0, 30)),
        st.tuples(st.just("wait"), st.one_of(st.integers(0, 450), st.sampled_from([1, 31, 46, 366]))),
        st.tuples(st.just("subsidy"), st.just(0)),
        st.tuples(st.just("leave"), st.integers(0, 90)),  # a member leaves in so many days (0: today, or dies)
        st.tuples(st.just("status"), st.sampled_from(list(HouseholdStatus))),
    ),
    min_size=1,
    max_size=10,
)
households = st.sampled_from(
    [
        ("cmu-thies", "yearly", "standard"),
        ("cmu-thies", "half-yearly", "standard"),
        ("cmu-thies", "yearly", "bsf"),
        ("sky-cambodia", "monthly", "standard"),
        ("sky-cambodia", "monthly", "idpoor"),
    ]
)


def check_reads(session: Session, household_id: int, phone: str, on: date) -> None:
    """Assert that the USSD's one-statement reads (on the dial, and on their own) give the ORM rules' answer.

    Today, the day after the cover ends, the day after its grace, and long after (beyond the dial's window of
    periods).
    """
    household = session.get(Household, household_id)
    assert household is not None
    days = {on, on + timedelta(days=500)}
    periods = live_periods(session, household_id)
    if periods:
        last_end = max(p.end_on for p in periods)
        days |= {last_end + timedelta(days=1), last_end + timedelta(days=household.scheme.grace_days + 1)}
    session.commit()  # the reads run on their own connection: they see what is committed
    for day in sorted(days):
        assert ussd_coverage(session, phone, day) == orm_coverage(session, household_id, day), day


def money(session: Session, household: Household, amount: int | str, on: date) -> int:
    """Return an amount of money: a number, or what the household owes on the day (`due`, `part`, `ahead`)."""
    if isinstance(amount, int):
        return amount
    due = amount_due(session, household, on)
    owed = due.total or due.period or 1_000
    session.commit()
    return {"due": owed, "part": max(1, owed // 2), "ahead": owed + due.period}[amount]


# Always tried: credit spent then taken back (arrears); a network paying its households, a payout reversed, and
# members leaving (a smaller premium band).
@example(
    kind=("cmu-thies", "yearly", "standard"),
    size=3,
    in_network=False,
    ops=[("pay", "part"), ("pay", "due"), ("reverse", 0)],
)
@example(
    kind=("sky-cambodia", "monthly", "standard"),
    size=5,
    in_network=True,
    ops=[("network", "ahead"), ("leave", 20), ("wait", 31), ("reverse", 1), ("network", "due"), ("leave", 0)],
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=households, size=st.integers(1, 9), in_network=st.booleans(), ops=operations)
def test_any_history_keeps_the_invariants(
    session: Session, kind: tuple[str, str, str], size: int, in_network: bool, ops: list[tuple[str, Any]]
) -> None:
    scheme_code, plan, category = kind
    scheme = factories.scheme(session, scheme_code)
    network = make_network(session, scheme)
    phone = f"+2217600{next(_phones):05d}"
    household = make_household(
        session, scheme, size=size, plan=plan, category=category, phone=phone, network=network if in_network else None
    )
    on = START
    refs: list[str] = []
    reversed_any = False
    for op, value in ops:
        if op == "pay":
            result = pay(session, household, money(session, household, value, on), on)
            refs.append(result.source_ref)
            if not reversed_any and not is_fully_subsidised(household):
                # Credit never sits on a fundable period: it is short of the share, or the cap stops it.
                share = period_price(session, household, on).household_share
                last = live_periods(session, household.id)[-1:] or None
                cap_reached = last is not None and last[0].end_on + timedelta(days=1) > add_months(
                    on, scheme.max_advance_months
                )
                fee_missing = not account_state(session, household_id=household.id).fee_paid
                assert result.credit < share or cap_reached or fee_missing
                session.commit()
        elif op == "network":
            received = pay(session, network, money(session, household, value, on), on)
            refs.append(received.source_ref)
            account = get_or_create_account(session, network=network)
            session.commit()  # the payout run starts its own write transaction
            refs.extend(p.source_ref for p in pay_network_households(session, account, on, received.source_ref))
            session.commit()
        elif op == "reverse" and refs:
            reverse(session, refs[value % len(refs)], "property test", on)
            session.commit()
            reversed_any = True
        elif op == "wait":
            on += timedelta(days=value)
        elif op == "subsidy":
            book_subsidised_period(session, household, on)
            session.commit()
        elif op == "leave":
            staying = [m for m in household.members[1:] if m.status == MemberStatus.ACTIVE and m.left_on is None]
            if staying:  # the head (the phone's member) stays
                member = staying[-1]
                if value == 0:
                    member.status, member.left_on = MemberStatus.DECEASED, on
                else:
                    member.left_on = on + timedelta(days=value)
                session.commit()
        elif op == "status":
            household.status = value
            session.commit()
        check_invariants(session, household.id, reversed_any)
        check_reads(session, household.id, phone, on)
        session.commit()  # end the reads: the money functions start their own write transaction


@given(st.dates(date(1900, 1, 1), date(2200, 12, 31)), st.integers(-1200, 1200))
def test_add_months_is_relativedelta(day: date, months: int) -> None:
    """Calendar months added as relativedelta adds them: the same day, clamped to the end of a shorter month."""
    assert add_months(day, months) == day + relativedelta(months=months)
