"""Coverage periods funded from money: the membership fee first, then whole periods, the rest as credit.

Period dates:
- a period of m months runs by calendar months, `start + m months - 1 day` inclusive (2026-11-20 + 12
  months ends 2027-11-19; month-ends clamp: 2027-01-31 + 1 month ends 2027-02-27);
- the next period starts the day after the previous live (non-reversed) one ends when the money arrives
  no later than `grace_days` after that end (or before it: a renewal in advance); otherwise it starts on
  the payment's effective date — lapsed months are never bought back;
- the plan's waiting period runs from the start of the first period after enrolment or after a lapse
  (`waiting_until` is the last day of waiting, inclusive); a contiguous renewal adds none, but carries on
  a waiting period that is still running (a 1-month plan with a 2-month wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from dateutil.relativedelta import relativedelta
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, LedgerKind
from models.household import Household
from models.ledger import add_entry, get_or_create_account, lock_account, start_write
from models.money import Allocation, CoveragePeriod
from models.premiums import FULL_SHARE_BP, PeriodPrice, is_fully_subsidised, period_price
from models.scheme import Scheme

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class PeriodDates:
    """Where the next period would sit: its dates, its waiting period, and whether it renews the last one."""

    start_on: date
    end_on: date
    waiting_until: date | None
    contiguous: bool


def add_months(day: date, months: int) -> date:
    """Return the same day `months` calendar months later, clamped to the end of a shorter month."""
    return day + relativedelta(months=months)


def period_end(start_on: date, months: int) -> date:
    """Return the last day (inclusive) of a period of `months` months starting on `start_on`."""
    return add_months(start_on, months) - ONE_DAY


def last_live_period(session: Session, household_id: int) -> CoveragePeriod | None:
    """Return the household's live period that ends last, if any."""
    return session.scalar(
        select(CoveragePeriod)
        .where(CoveragePeriod.household_id == household_id, CoveragePeriod.reversed_at.is_(None))
        .order_by(CoveragePeriod.end_on.desc())
        .limit(1)
    )


def live_periods(session: Session, household_id: int) -> list[CoveragePeriod]:
    """Return the household's live (non-reversed) periods in date order."""
    return list(
        session.scalars(
            select(CoveragePeriod)
            .where(CoveragePeriod.household_id == household_id, CoveragePeriod.reversed_at.is_(None))
            .order_by(CoveragePeriod.start_on)
        )
    )


def next_period_dates(
    last: PeriodEnd | None, on: date, months: int, waiting_months: int, grace_days: int
) -> PeriodDates:
    """Return the dates of the period that money arriving on `on` would fund after `last`."""
    contiguous = last is not None and on <= last.end_on + timedelta(days=grace_days)
    if last is not None and contiguous:
        start = last.end_on + ONE_DAY
        # A renewal owes no new wait, but one still running from the previous start carries on.
        waiting = last.waiting_until if last.waiting_until is not None and last.waiting_until >= start else None
    else:
        start = on
        waiting = period_end(start, waiting_months) if waiting_months > 0 else None
    return PeriodDates(start, period_end(start, months), waiting, contiguous)


class PeriodEnd(Protocol):
    """What the next period's dates depend on of the last live one: a stored period, or one planned in this batch."""

    @property
    def end_on(self) -> date: ...

    @property
    def waiting_until(self) -> date | None: ...


@dataclass(frozen=True)
class Funding:
    """What money on an account would fund: the membership fee, then whole periods at one price."""

    fee: int
    price: PeriodPrice | None
    periods: tuple[PeriodDates, ...]


NOTHING_FUNDED = Funding(fee=0, price=None, periods=())


def plan_funding(
    session: Session, household: Household, balance: int, fee_paid: bool, last: PeriodEnd | None, members: int, on: date
) -> Funding:
    """Return what a household's credit buys on `on`: the fee if never paid, then whole periods up to the cap.

    Pure given its arguments (`members`: the active member count on `on`); the allocator applies the result.
    A fully subsidised household's periods are booked by `book_subsidised_periods`, so its money stays as
    credit and it is never charged the fee.
    """
    scheme = household.scheme
    if is_fully_subsidised(household):
        return NOTHING_FUNDED
    fee = 0
    if not fee_paid and scheme.membership_fee > 0:
        if balance < scheme.membership_fee:
            return NOTHING_FUNDED
        fee = scheme.membership_fee
        balance -= fee
    price = period_price(session, household, on, members=members)
    if price.household_share <= 0:
        # No active member left: there is nothing to buy (and a zero price would loop forever).
        return Funding(fee=fee, price=None, periods=())
    plan = scheme.plan(price.plan)
    cap = add_months(on, scheme.max_advance_months)
    funded: list[PeriodDates] = []
    while balance >= price.household_share:
        dates = next_period_dates(last, on, plan.months, plan.waiting_months, scheme.grace_days)
        if dates.start_on > cap:
            break
        funded.append(dates)
        last = dates
        balance -= price.household_share
    return Funding(fee=fee, price=price, periods=tuple(funded))


def subsidy_source_ref(household_id: int, start_on: date) -> str:
    """Return the idempotency key of a funder's booking of one household period."""
    return f"subsidy:{household_id}:{start_on.isoformat()}"


def book_subsidised_period(session: Session, household: Household, on: date) -> CoveragePeriod | None:
    """Book the next funder-paid period of a fully subsidised household when it is due on `on`.

    Due at enrolment (a household without a live period) and from the last day of the current
    period (so a check on the first day of the next one never finds a gap). Starts the write
    transaction if none is open and locks the account row; the caller commits.
    """
    start_write(session)
    scheme = household.scheme
    category = scheme.subsidy(household.subsidy_category)
    if category.share_bp < FULL_SHARE_BP or household.status != HouseholdStatus.ACTIVE:
        return None
    if household.enrolled_on > on:
        return None
    account = lock_account(session, get_or_create_account(session, household=household).id)
    last = last_live_period(session, household.id)
    if last is not None and last.end_on > on:
        return None
    plan = scheme.plan(household.plan)
    if last is None and on <= household.enrolled_on + timedelta(days=scheme.grace_days):
        # The first period starts at enrolment, even when the clock ran a little late.
        dates = next_period_dates(None, household.enrolled_on, plan.months, plan.waiting_months, 0)
    else:
        dates = next_period_dates(last, on, plan.months, plan.waiting_months, scheme.grace_days)
    ref = subsidy_source_ref(household.id, dates.start_on)
    if session.scalar(select(exists().where(Allocation.source_ref == ref))):
        return None
    price = period_price(session, household, on)
    if price.price <= 0:
        return None
    allocation = Allocation(
        source_ref=ref, account_id=account.id, amount=price.price, currency=scheme.currency, effective_on=on
    )
    session.add(allocation)
    session.flush()
    period = CoveragePeriod(
        household_id=household.id,
        allocation_id=allocation.id,
        plan=price.plan,
        months=price.months,
        start_on=dates.start_on,
        end_on=dates.end_on,
        waiting_until=dates.waiting_until,
        price=price.price,
        household_share=0,
        subsidy_amount=price.price,
        funder=category.funder,
    )
    session.add(period)
    session.flush()
    add_entry(
        session,
        account,
        LedgerKind.SUBSIDY,
        price.price,
        on,
        allocation=allocation,
        period=period,
        funder=category.funder,
    )
    add_entry(session, account, LedgerKind.CHARGE, -price.price, on, allocation=allocation, period=period)
    return period


def book_subsidised_periods(session: Session, scheme: Scheme, on: date) -> int:
    """Book every due funder-paid period of the scheme's fully subsidised households; return how many.

    Idempotent per household and period start (`subsidy:<household>:<start>` allocations), so the
    clock may run it any number of times a day. Starts its own write transaction; the caller commits.
    """
    start_write(session)
    codes = [c.code for c in scheme.subsidy_categories if c.share_bp >= FULL_SHARE_BP]
    if not codes:
        return 0
    still_covered = exists().where(
        CoveragePeriod.household_id == Household.id,
        CoveragePeriod.reversed_at.is_(None),
        CoveragePeriod.end_on > on,
    )
    households = session.scalars(
        select(Household)
        .where(
            Household.scheme_id == scheme.id,
            Household.subsidy_category.in_(codes),
            Household.status == HouseholdStatus.ACTIVE,
            Household.enrolled_on <= on,
            ~still_covered,
        )
        .order_by(Household.id)
    ).all()
    booked = 0
    for household in households:
        if book_subsidised_period(session, household, on) is not None:
            booked += 1
    return booked
