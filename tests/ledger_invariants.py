"""The ledger invariants every history of payments, reversals and subsidies keeps (checked by several test modules)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, LedgerKind
from models.coverage.eligibility import household_eligibility
from models.coverage.ledger import account_entries, account_state, get_or_create_account
from models.coverage.money import Allocation, CoveragePeriod
from models.coverage.periods import live_periods
from models.members.household import Household


def check_invariants(session: Session, household_id: int, reversed_any: bool) -> None:
    """Assert the ledger invariants of a household's account, its periods and its eligibility around them."""
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
    # 6. Covered days are exactly the live periods: inside each (after waiting) ACTIVE, outside never (for an
    # active household: a suspended or closed one reads its status).
    if household.status == HouseholdStatus.ACTIVE:
        check_cover(session, household, periods)


def check_cover(session: Session, household: Household, periods: Sequence[CoveragePeriod]) -> None:
    """Assert that an active household is covered exactly on its live periods (waiting first, when it applies)."""
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
