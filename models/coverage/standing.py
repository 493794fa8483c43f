"""A household's eligibility as SQL columns: the rules of `eligibility_on` and `amount_due` for lists and reports.

`household_eligibility` answers one household at a time, in a few queries. An admin list filtered on eligibility,
or a report counting statuses and amounts due over every household of a scheme, needs the same answers as
columns of one statement. Each function here is one of those rules written in SQL, correlated to the
`Household` row of the enclosing statement and evaluated on a date given as a SQL expression: a bound
parameter, or a column of a small table of dates (one row per scheme for "today", one per month for a report).
`tests/test_admin_reports.py` compares them with `household_eligibility` for every household of the demo seed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Date, Integer, and_, case, exists, func, literal, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models.base import EligibilityStatus, HouseholdStatus, PremiumKind
from models.coverage.ledger import household_account_columns
from models.coverage.money import Allocation, CoveragePeriod
from models.coverage.premiums import FULL_SHARE_BP, band_monthly_column
from models.members.household import Household, Member, active_member_clause

Date_ = ColumnElement[Any]  # a date-typed SQL expression

# Statuses that hold a funded period on the date: the cover was paid (by the household or its funder).
PAID = (EligibilityStatus.ACTIVE, EligibilityStatus.WAITING)
# Statuses whose amount due is what must be paid now (`eligibility_on`'s `paying`).
PAYING = (EligibilityStatus.PENDING, EligibilityStatus.GRACE, EligibilityStatus.LAPSED)


class DayAfter(FunctionElement[Any]):
    """The day after a date column, in SQL (`x + 1` on PostgreSQL, `date(x, '+1 day')` on SQLite)."""

    type = Date()
    name = "day_after"
    inherit_cache = True


@compiles(DayAfter)
def _day_after(element: DayAfter, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} + 1)"


@compiles(DayAfter, "sqlite")
def _day_after_sqlite(element: DayAfter, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)}, '+1 day')"


def _live(period: Any, known_by: Date_ | None = None) -> ColumnElement[bool]:
    """Return the condition that a period alias is one of the enclosing household's unreversed periods.

    `known_by`: only the periods funded by money effective on or before that date (their allocation's
    `effective_on`): the books as they stood then.
    """
    condition = and_(period.household_id == Household.id, period.reversed_at.is_(None))
    if known_by is not None:
        funded = _correlated(
            exists().where(Allocation.id == period.allocation_id, Allocation.effective_on <= known_by), Allocation
        )
        condition = and_(condition, or_(period.allocation_id.is_(None), funded))
    return condition


def _correlated(subquery: Any, *own: Any) -> Any:
    """Return the subquery correlated to every table but its own, at any depth.

    SQLAlchemy's automatic correlation looks only at the statement right around a subquery: one nested deeper
    would otherwise add the household (or the table of dates) to its own FROM list, uncorrelated.
    """
    return subquery.correlate_except(*own)


def status_column(on: Date_, since: Date_, known_by: Date_ | None = None) -> ColumnElement[str]:
    """Return the household's `EligibilityStatus` value on a date (`since`: the date less the scheme's grace days).

    The rules of `eligibility_on`: suspended or closed by staff first; then the first period (by start) that holds
    the date, waiting until its `waiting_until`; else a period ended within grace; else any period ended before
    the date (lapsed); else never paid (pending). `known_by`: from the periods funded by then only (`_live`).
    """
    holding, earlier, ended = aliased(CoveragePeriod), aliased(CoveragePeriod), aliased(CoveragePeriod)
    holds = and_(_live(holding, known_by=known_by), holding.start_on <= on, holding.end_on >= on)
    earlier_holds = exists().where(
        _live(earlier, known_by=known_by),
        earlier.start_on <= on,
        earlier.end_on >= on,
        earlier.start_on < holding.start_on,
    )
    waiting = exists().where(holds, holding.waiting_until >= on, not_(_correlated(earlier_holds, earlier)))
    in_grace = exists().where(_live(ended, known_by=known_by), ended.end_on < on, ended.end_on >= since)
    lapsed = exists().where(_live(ended, known_by=known_by), ended.end_on < on)
    return case(
        (Household.status == HouseholdStatus.SUSPENDED, literal(EligibilityStatus.SUSPENDED.value)),
        (Household.status == HouseholdStatus.CLOSED, literal(EligibilityStatus.INACTIVE.value)),
        (_correlated(waiting, holding), literal(EligibilityStatus.WAITING.value)),
        (_correlated(exists().where(holds), holding), literal(EligibilityStatus.ACTIVE.value)),
        (_correlated(in_grace, ended), literal(EligibilityStatus.GRACE.value)),
        (_correlated(lapsed, ended), literal(EligibilityStatus.LAPSED.value)),
        else_=literal(EligibilityStatus.PENDING.value),
    )


def covered_column(status: ColumnElement[Any], grace_covered: Any) -> ColumnElement[bool]:
    """Return `Eligibility.covered` from the status column: active, or in grace where the scheme covers grace."""
    return (status == EligibilityStatus.ACTIVE.value) | (
        (status == EligibilityStatus.GRACE.value) & (grace_covered == True)  # noqa: E712 - SQL, not Python
    )


def cover_end_column(on: Date_, known_by: Date_ | None = None) -> ColumnElement[Any]:
    """Return the last day of the run of back-to-back periods that holds the date (`valid_until` when covered).

    The first end on or after the date that no live period continues (none holds its next day): the run is
    unbroken up to it, and broken right after it (`_covered_run_end`). `known_by`: as in `status_column`.
    """
    period, following = aliased(CoveragePeriod), aliased(CoveragePeriod)
    continued = exists().where(
        _live(following, known_by=known_by),
        following.start_on <= DayAfter(period.end_on),
        following.end_on > period.end_on,
    )
    return _correlated(
        select(func.min(period.end_on))
        .where(_live(period, known_by=known_by), period.end_on >= on, not_(_correlated(continued, following)))
        .scalar_subquery(),
        period,
    )


def last_end_column(on: Date_) -> ColumnElement[Any]:
    """Return the last end of a live period before the date (`valid_until` in grace or lapsed)."""
    period = aliased(CoveragePeriod)
    return _correlated(
        select(func.max(period.end_on)).where(_live(period), period.end_on < on).scalar_subquery(), period
    )


def valid_until_column(status: ColumnElement[Any], on: Date_) -> ColumnElement[Any]:
    """Return `Eligibility.valid_until` from the status column: the cover's end, or the last end before the date."""
    return case(
        (status.in_([s.value for s in PAID]), cover_end_column(on)),
        (status.in_([EligibilityStatus.GRACE.value, EligibilityStatus.LAPSED.value]), last_end_column(on)),
        else_=None,
    )


def waiting_until_column(status: ColumnElement[Any], on: Date_) -> ColumnElement[Any]:
    """Return `Eligibility.waiting_until`: while waiting, the last day of the first period's wait holding the date."""
    period = aliased(CoveragePeriod)
    first = _correlated(
        select(period.waiting_until)
        .where(_live(period), period.start_on <= on, period.end_on >= on)
        .order_by(period.start_on)
        .limit(1)
        .scalar_subquery(),
        period,
    )
    return case((status == EligibilityStatus.WAITING.value, first), else_=None)


def active_members_column(on: Date_) -> ColumnElement[Any]:
    """Return how many of the household's members count for the premium on the date (`active_member_count`)."""
    members = Member.__table__
    return _correlated(
        select(func.count())
        .select_from(members)
        .where(members.c.household_id == Household.id, active_member_clause(on, members))
        .scalar_subquery(),
        members,
    )


def account_columns(until: Date_) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Return the household's balance and net fee count from the entries effective on or before a date."""
    return household_account_columns(Household.id, until=until)


def period_price_column(
    kind: ColumnElement[Any],
    amount: ColumnElement[Any],
    per_months: ColumnElement[Any],
    plan_months: ColumnElement[Any],
    members: ColumnElement[Any],
    scheme_id: ColumnElement[Any],
) -> ColumnElement[Any]:
    """Return `price_of` in SQL: the premium band × months, or the per-person price rounded half up."""
    banded = func.coalesce(band_monthly_column(scheme_id, members), 0) * plan_months
    per_person = (2 * amount * members * plan_months + per_months) // (2 * per_months)
    return case(
        (members <= 0, 0),
        (kind == PremiumKind.BANDS.value, banded),
        else_=per_person,
    )


def next_payment_column(
    price: ColumnElement[Any],
    share_bp: ColumnElement[Any],
    fee: ColumnElement[Any],
    fees_paid: ColumnElement[Any],
    balance: ColumnElement[Any],
) -> ColumnElement[Any]:
    """Return `AmountDue.total` in SQL: the fee if unpaid + the household's share of the price − the balance, ≥ 0.

    A fully subsidised household owes neither share nor fee (`due_of`); `fees_paid` is the net fee count.
    """
    subsidised = share_bp >= FULL_SHARE_BP
    share = case((subsidised, 0), else_=price - price * share_bp // FULL_SHARE_BP)
    fee_due = case((subsidised | (fees_paid > 0), 0), else_=fee)
    total = fee_due + share - balance
    return case((total > 0, total), else_=literal(0, Integer))
