"""Properties: any sequence of payments, reversals, subsidy runs and date moves keeps the ledger invariants."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.allocation import reverse
from models.base import EligibilityStatus, LedgerKind
from models.coverage import add_months, book_subsidised_period, live_periods
from models.eligibility import household_eligibility
from models.household import Household
from models.ledger import account_entries, account_state, get_or_create_account
from models.money import Allocation
from models.premiums import is_fully_subsidised, period_price
from tests import factories
from tests.factories import make_household, pay

START = date(2026, 11, 20)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 40_000)),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
        st.tuples(st.just("wait"), st.integers(0, 450)),
        st.tuples(st.just("subsidy"), st.just(0)),
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


def check_invariants(session: Session, household_id: int, reversed_any: bool) -> None:
    household = session.get(Household, household_id)
    assert household is not None
    account = get_or_create_account(session, household=household)
    entries = account_entries(session, account.id)
    state = account_state(session, account_id=account.id)
    # 1. The balance is the sum of the entries.
    assert state.balance == sum(e.amount for e in entries)
    # 2. Every entry is reversed at most once, by an entry of the opposite amount.
    by_id = {e.id: e for e in entries}
    reversed_ids = [e.reverses_entry_id for e in entries if e.reverses_entry_id is not None]
    assert len(reversed_ids) == len(set(reversed_ids))
    for e in entries:
        if e.reverses_entry_id is not None:
            assert e.amount == -by_id[e.reverses_entry_id].amount
    live = [e for e in entries if e.reverses_entry_id is None and e.id not in set(reversed_ids)]
    # 3. At most one live fee, and the fee state agrees with it.
    fees = [e for e in live if e.kind == LedgerKind.FEE]
    assert len(fees) <= 1 and state.fee_paid == bool(fees)
    # 4. Live periods never overlap, and each has exactly one live charge (and its subsidy).
    periods = live_periods(session, household_id)
    for before, after in itertools.pairwise(periods):
        assert after.start_on > before.end_on
    for period in periods:
        charges = [e.amount for e in live if e.period_id == period.id and e.kind == LedgerKind.CHARGE]
        subsidies = [e.amount for e in live if e.period_id == period.id and e.kind == LedgerKind.SUBSIDY]
        assert charges == [-period.price]
        assert sum(subsidies) == period.subsidy_amount
        assert period.price == period.household_share + period.subsidy_amount
    # 5. Money in = money consumed + balance: payments of live allocations pay the fee and live shares.
    payments = session.scalars(
        select(Allocation.amount).where(
            Allocation.account_id == account.id,
            Allocation.reversed_at.is_(None),
            Allocation.source_ref.not_like("subsidy:%"),
        )
    ).all()
    # A funder that pays a fully subsidised household's periods pays its fee too (a subsidy outside any period).
    funded_fee = sum(e.amount for e in live if e.kind == LedgerKind.SUBSIDY and e.period_id is None)
    fee = -sum(e.amount for e in fees) - funded_fee
    assert sum(payments) == fee + sum(p.household_share for p in periods) + state.balance
    if not reversed_any:
        assert state.balance >= 0
    # 6. Covered days are exactly the live periods: inside each (after waiting) ACTIVE, outside never.
    for period in periods:
        for day in (period.start_on, period.end_on):
            status = household_eligibility(session, household, day).status
            expected = (
                EligibilityStatus.WAITING
                if period.waiting_until is not None and day <= period.waiting_until
                else EligibilityStatus.ACTIVE
            )
            assert status == expected
        next_day = period.end_on + timedelta(days=1)
        if not any(p.start_on <= next_day <= p.end_on for p in periods):
            status = household_eligibility(session, household, next_day).status
            assert status not in (EligibilityStatus.ACTIVE, EligibilityStatus.WAITING)
    if periods:
        before_first = periods[0].start_on - timedelta(days=1)
        status = household_eligibility(session, household, before_first).status
        assert status not in (EligibilityStatus.ACTIVE, EligibilityStatus.WAITING)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=households, ops=operations)
def test_any_history_keeps_the_invariants(
    session: Session, kind: tuple[str, str, str], ops: list[tuple[str, int]]
) -> None:
    scheme_code, plan, category = kind
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=3, plan=plan, category=category)
    on = START
    refs: list[str] = []
    reversed_any = False
    for op, value in ops:
        if op == "pay":
            result = pay(session, household, value, on)
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
        elif op == "reverse" and refs:
            reverse(session, refs[value % len(refs)], "property test", on)
            session.commit()
            reversed_any = True
        elif op == "wait":
            on += timedelta(days=value)
        elif op == "subsidy":
            book_subsidised_period(session, household, on)
            session.commit()
        check_invariants(session, household.id, reversed_any)
        session.commit()  # end the reads: the money functions start their own write transaction
