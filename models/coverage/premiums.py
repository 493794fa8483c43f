"""Premium rules: what a period costs a household, the funder's share, and the amount due on a date."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import ColumnElement, ScalarSelect, SQLColumnExpression, func, select
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, PremiumKind
from models.bulk import among
from models.coverage.ledger import AccountState, account_state
from models.members.household import Household, Member, active_member_clause
from models.schemes.scheme import Plan, PremiumBand, Scheme, SubsidyCategory

FULL_SHARE_BP = 10_000


@dataclass(frozen=True)
class PeriodPrice:
    """The price of one period of a plan and how it splits between the household and its funder."""

    price: int
    household_share: int
    subsidy: int  # the funder's share, booked as a SUBSIDY entry (a receivable from the funder)
    funder: str | None
    months: int
    currency: str
    plan: str
    members: int


@dataclass(frozen=True)
class AmountDue:
    """The pieces of a household's next payment on a date: what funds its next period.

    `total` is the next payment's amount; what is due *now* depends on the household's cover and is
    `models.coverage.eligibility.Eligibility.amount_due` (0 while covered or waiting on a funded period).
    """

    fee: int  # membership fee still to pay (0 once paid, or for fully subsidised households)
    period: int  # the household's share of the next period
    credit: int  # money already on the account (never negative)
    arrears: int  # money owed after a reversal took back funds already consumed
    total: int  # fee + period + arrears - credit, never below 0
    currency: str


def plan_price(scheme: Scheme, plan: Plan, members: int) -> int:
    """Return the full price of one period of the plan for a household of `members` active members."""
    if members <= 0:
        return 0
    monthly = 0
    if scheme.premium_kind == PremiumKind.BANDS:
        monthly = band_monthly(((band.min_size, band.monthly_amount) for band in scheme.bands), members)
    kind, amount, per_months = scheme.premium_kind, scheme.premium_amount, scheme.premium_per_months
    return price_of(kind, amount, per_months, plan.months, members, monthly)


def band_monthly(bands: Iterable[tuple[int, int]], members: int) -> int:
    """Return the monthly premium of a household of `members` under `(min_size, monthly)` bands (0: no band).

    The band is the one with the largest minimum size the household reaches. `band_monthly_column` is this
    rule in SQL.
    """
    best: tuple[int, int] | None = None
    for min_size, monthly in bands:
        if min_size <= members and (best is None or min_size > best[0]):
            best = (min_size, monthly)
    return best[1] if best is not None else 0


def band_monthly_column(scheme_id: ColumnElement[Any], members: ColumnElement[Any]) -> ScalarSelect[Any]:
    """Return `band_monthly` as a SQL scalar subquery for a scheme and a household size (NULL: no band)."""
    band = PremiumBand.__table__
    return (
        select(band.c.monthly_amount)
        .where(band.c.scheme_id == scheme_id, band.c.min_size <= members)
        .order_by(band.c.min_size.desc())
        .limit(1)
        .scalar_subquery()
    )


def price_of(kind: PremiumKind, amount: int, per_months: int, plan_months: int, members: int, band_monthly: int) -> int:
    """Return a period's full price from plain values (`band_monthly`: the band's amount, for banded schemes)."""
    if members <= 0:
        return 0
    if kind == PremiumKind.BANDS:
        return band_monthly * plan_months
    # Integer rounding half up: amount * n * m / per_months without ever going through a float.
    numerator = amount * members * plan_months
    return (2 * numerator + per_months) // (2 * per_months)


def due_of(*, fee: int, fee_paid: bool, share: int, subsidised: bool, balance: int, currency: str) -> AmountDue:
    """Return the amount due from plain values: the rules of `amount_due` (`share`: the household's period share)."""
    fee_due, period = (0, 0) if subsidised else (0 if fee_paid else fee, share)
    credit = max(0, balance)
    arrears = max(0, -balance)
    total = max(0, fee_due + period + arrears - credit)
    return AmountDue(fee=fee_due, period=period, credit=credit, arrears=arrears, total=total, currency=currency)


def funder_share(price: int, share_bp: int) -> int:
    """Return the funder's part of a price under a subsidy share in basis points (rounded down)."""
    return price * share_bp // FULL_SHARE_BP


def funder_pays_all(share_bp: int) -> bool:
    """Return whether a subsidy share is the whole premium: the funder pays all of it (and the fee).

    `funder_pays_all_clause` is this rule in SQL.
    """
    return share_bp >= FULL_SHARE_BP


def funder_pays_all_clause(share_bp: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """Return `funder_pays_all` as a SQL condition on a subsidy category's share column."""
    return share_bp >= FULL_SHARE_BP


def split_price(price: int, category: SubsidyCategory) -> tuple[int, int]:
    """Return (household share, funder share) of a price under a subsidy category."""
    funder = funder_share(price, category.share_bp)
    return price - funder, funder


def is_fully_subsidised(household: Household) -> bool:
    """Return whether the household's funder pays all of its premium (CMU bsf/cec, SKY idpoor)."""
    return funder_pays_all(household.scheme.subsidy(household.subsidy_category).share_bp)


def active_member_count(session: Session, household_id: int, on: date) -> int:
    """Return how many of the household's members count for the premium on a date."""
    count = session.scalar(
        select(func.count()).select_from(Member).where(Member.household_id == household_id, active_member_clause(on))
    )
    return int(count or 0)


def period_price(
    session: Session, household: Household, on: date, plan_code: str | None = None, members: int | None = None
) -> PeriodPrice:
    """Return the price of the household's next period of its plan (or `plan_code`) on a date.

    `members`: the active member count on that date when the caller has already counted it.
    """
    scheme = household.scheme
    plan = scheme.plan(plan_code or household.plan)
    category = scheme.subsidy(household.subsidy_category)
    if members is None:
        members = active_member_count(session, household.id, on)
    price = plan_price(scheme, plan, members)
    share, funder = split_price(price, category)
    return PeriodPrice(
        price=price,
        household_share=share,
        subsidy=funder,
        funder=category.funder if funder else None,
        months=plan.months,
        currency=scheme.currency,
        plan=plan.code,
        members=members,
    )


def active_member_counts(session: Session, household_ids: list[int], on: date) -> dict[int, int]:
    """Return the active member count on a date of each of these households (one query)."""
    rows = session.execute(
        select(Member.household_id, func.count())
        .where(among(session, Member.household_id, household_ids), active_member_clause(on))
        .group_by(Member.household_id)
    )
    counts = dict.fromkeys(household_ids, 0)
    counts.update({household_id: int(n) for household_id, n in rows})
    return counts


def amount_due(
    session: Session,
    household: Household,
    on: date,
    plan_code: str | None = None,
    state: AccountState | None = None,
    members: int | None = None,
) -> AmountDue:
    """Return the pieces of the household's next payment on a date: fee if never paid + next period share - credit.

    A fully subsidised household owes nothing: the funder pays its periods through
    `book_subsidised_periods`, and the state pays "all of it for the poorest" (docs/rules.md), so it is
    not asked for the membership fee either (allocation never books a fee for it).
    """
    scheme = household.scheme
    if state is None:
        state = account_state(session, household_id=household.id)
    subsidised = is_fully_subsidised(household)
    share = 0 if subsidised else period_price(session, household, on, plan_code, members=members).household_share
    return due_of(
        fee=scheme.membership_fee,
        fee_paid=state.fee_paid,
        share=share,
        subsidised=subsidised,
        balance=state.balance,
        currency=scheme.currency,
    )


@dataclass(frozen=True)
class PaymentChoice:
    """One way to pay now: so many periods of the plan, the months they cover, and the amount."""

    periods: int
    months: int
    amount: int


def max_advance_periods(plan_months: int, max_advance_months: int) -> int:
    """Return how many whole periods of a plan may be paid at once under the scheme's advance cap (at least 1)."""
    return max(1, max_advance_months // max(1, plan_months))


def payment_choices(
    due: AmountDue, plan_months: int, max_advance_months: int, *, on: date | None = None, cover_ends: date | None = None
) -> list[PaymentChoice]:
    """Return the amounts a payer may choose: the next period (what is due, or the next payment), then more.

    Paying ahead stays possible, never beyond the advance cap: with cover running until `cover_ends`, only
    the periods starting by `on` + `max_advance_months` (the allocator's cap) are offered — none when the
    household is covered that far already.
    """
    if due.period <= 0:
        return []  # fully subsidised, or no active member: nothing to buy
    ceiling = max_advance_periods(plan_months, max_advance_months)
    if on is not None and cover_ends is not None and cover_ends >= on:
        cap = on + relativedelta(months=max_advance_months)
        start, fundable = cover_ends + timedelta(days=1), 0
        while start <= cap and fundable < ceiling:
            fundable += 1
            start = start + relativedelta(months=plan_months)
        ceiling = fundable
    counts = sorted({1, 2, ceiling, *(n for n in (3, 6, 12) if n < ceiling)} & set(range(1, ceiling + 1)))
    choices: list[PaymentChoice] = []
    for periods in counts:
        amount = max(0, due.fee + periods * due.period + due.arrears - due.credit)
        if amount > 0 and all(choice.amount != amount for choice in choices):
            choices.append(PaymentChoice(periods, periods * plan_months, amount))
    return choices


class PayRefusal(enum.StrEnum):
    """Why a household is not offered Pay (a lapsed one always is)."""

    SUSPENDED = "suspended"  # by staff
    CLOSED = "closed"
    SUBSIDISED = "subsidised"  # its funder pays all of it


def pay_refusal(status: HouseholdStatus, fully_subsidised: bool) -> PayRefusal | None:
    """Return why the household is not offered Pay, or None when it may pay."""
    if status == HouseholdStatus.SUSPENDED:
        return PayRefusal.SUSPENDED
    if status == HouseholdStatus.CLOSED:
        return PayRefusal.CLOSED
    if fully_subsidised:
        return PayRefusal.SUBSIDISED
    return None
