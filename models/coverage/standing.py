"""A household's eligibility as SQL: the rules of `eligibility_on` and `amount_due` for lists and reports.

`household_eligibility` answers one household at a time, in a few queries. An admin list filtered on eligibility,
or a report counting statuses and amounts due over every household of a scheme, needs the same answers inside
one statement. Here are those rules in SQL, in two forms:

- columns correlated to the `Household` row of the enclosing statement, on a date given as a SQL expression (a
  bound parameter, or a column of a table with one row per scheme for "today"): for a page of a list, which stops
  at the page's last row;
- `standing_on_dates`: every household of a set on every date of a small table of dates, as grouped aggregates
  of their periods, members and ledger entries (a report's months), with the books as they stood on a date.

Both end in `status_of`, the one order of the rules. `tests/test_admin_reports.py` compares them with
`household_eligibility` household by household, on the demo seed and on a constructed history.
"""

from __future__ import annotations

import typing
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Exists, ScalarSelect

from models.base import EligibilityStatus, HouseholdStatus, PremiumKind
from models.coverage.ledger import net_fee_count
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.premiums import FULL_SHARE_BP, band_monthly_column
from models.members.household import Account, Household, Member, active_member_clause

_Correlatable = TypeVar("_Correlatable", bound=Exists | ScalarSelect[Any])

Date_ = ColumnElement[Any]  # a date-typed SQL expression

# Statuses that hold a funded period on the date: the cover was paid (by the household or its funder).
PAID = (EligibilityStatus.ACTIVE, EligibilityStatus.WAITING)
# Statuses whose amount due is what must be paid now (`eligibility_on`'s `paying`).
PAYING = (EligibilityStatus.PENDING, EligibilityStatus.GRACE, EligibilityStatus.LAPSED)
# Before any money: the funding date of a period booked without an allocation (known on every date).
EARLIEST = date(1900, 1, 1)


def without_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT compiler off for the rest of the session's transaction.

    A statement of these columns holds dozens of small subplans: the planner's cost estimate grows with them
    past `jit_above_cost`, and compiling the plan then costs seconds where running it costs milliseconds
    (20,000 households: 5 s of JIT for a 50 ms list page).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


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


def status_of(
    household_status: Any,
    *,
    waiting: ColumnElement[bool],
    holding: ColumnElement[bool],
    in_grace: ColumnElement[bool],
    lapsed: ColumnElement[bool],
) -> ColumnElement[str]:
    """Return the `EligibilityStatus` value the rules of `eligibility_on` give, from conditions on the periods.

    Suspended or closed by staff first; then the first period (by start) that holds the date, waiting until its
    `waiting_until` (`waiting`) or not (`holding`: any period holds it); else a period ended within grace; else
    any period ended before the date (lapsed); else never paid (pending).
    """
    return case(
        (household_status == HouseholdStatus.SUSPENDED, literal(EligibilityStatus.SUSPENDED.value)),
        (household_status == HouseholdStatus.CLOSED, literal(EligibilityStatus.INACTIVE.value)),
        (waiting, literal(EligibilityStatus.WAITING.value)),
        (holding, literal(EligibilityStatus.ACTIVE.value)),
        (in_grace, literal(EligibilityStatus.GRACE.value)),
        (lapsed, literal(EligibilityStatus.LAPSED.value)),
        else_=literal(EligibilityStatus.PENDING.value),
    )


def covered_column(status: ColumnElement[Any], grace_covered: Any) -> ColumnElement[bool]:
    """Return `Eligibility.covered` from the status column: active, or in grace where the scheme covers grace."""
    return or_(
        status == EligibilityStatus.ACTIVE.value,
        and_(status == EligibilityStatus.GRACE.value, grace_covered == True),  # noqa: E712 - SQL, not Python
    )


# ---------------------------------------------------------------- one household per row (lists)


def _live(period: Any) -> ColumnElement[bool]:
    """Return the condition that a period alias is one of the enclosing household's unreversed periods."""
    return and_(period.household_id == Household.id, period.reversed_at.is_(None))


def _correlated(subquery: _Correlatable, *own: Any) -> _Correlatable:
    """Return the subquery correlated to every table but its own, at any depth.

    SQLAlchemy's automatic correlation looks only at the statement right around a subquery: one nested deeper
    would otherwise add the household (or the table of dates) to its own FROM list, uncorrelated.
    """
    return typing.cast(_Correlatable, subquery.correlate_except(*own))  # each class's Self, lost in the union


def status_column(on: Date_, since: Date_) -> ColumnElement[str]:
    """Return the household's `EligibilityStatus` value on a date (`since`: the date less the scheme's grace days)."""
    holding, earlier, ended = aliased(CoveragePeriod), aliased(CoveragePeriod), aliased(CoveragePeriod)
    holds = and_(_live(holding), holding.start_on <= on, holding.end_on >= on)
    earlier_holds = exists().where(
        _live(earlier), earlier.start_on <= on, earlier.end_on >= on, earlier.start_on < holding.start_on
    )
    waiting = exists().where(holds, holding.waiting_until >= on, not_(_correlated(earlier_holds, earlier)))
    return status_of(
        Household.status,
        waiting=_correlated(waiting, holding),
        holding=_correlated(exists().where(holds), holding),
        in_grace=_correlated(exists().where(_live(ended), ended.end_on < on, ended.end_on >= since), ended),
        lapsed=_correlated(exists().where(_live(ended), ended.end_on < on), ended),
    )


def cover_end_column(on: Date_) -> ColumnElement[Any]:
    """Return the last day of the run of back-to-back periods that holds the date (`valid_until` when covered).

    The first end on or after the date that no live period continues (none holds its next day): the run is
    unbroken up to it, and broken right after it (`_covered_run_end`).
    """
    period, following = aliased(CoveragePeriod), aliased(CoveragePeriod)
    continued = exists().where(
        _live(following), following.start_on <= DayAfter(period.end_on), following.end_on > period.end_on
    )
    return _correlated(
        select(func.min(period.end_on))
        .where(_live(period), period.end_on >= on, not_(_correlated(continued, following)))
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


# ---------------------------------------------------------------- many households on many dates (reports)


def standing_on_dates(dates: Any, households: Select[Any]) -> Any:
    """Return each household's standing on each date, as a subquery (household_id, n, …) of grouped aggregates.

    `dates`: a subquery of rows (n, on, since, eve, eve_since), `since` being `on` less the scheme's grace days;
    `households`: a select of the households' ids. Columns: `status` on `on` from every live period (as
    `household_eligibility` reads them today); on `eve`, from the books as they stood then — the periods funded
    by money effective by `eve` (their allocation's `effective_on`) and the ledger entries effective by then —
    `eve_status`, `eve_cover_end` (the end of the run of periods holding `eve`), `members` (active on `eve`),
    `balance` and `fees` (the net fee count). Households without periods, members or entries have no row in
    the respective part: the caller outer-joins and reads NULL as none.
    """
    d = dates.c
    period, funding = aliased(CoveragePeriod), aliased(Allocation)
    following, following_funding = aliased(CoveragePeriod), aliased(Allocation)
    # When a later period first continued this one (the day after its end held): the earliest funding date of
    # one that does. The run holding `eve` ends at the first end on or after `eve` not continued by then.
    continued_since = (
        select(func.min(func.coalesce(following_funding.effective_on, EARLIEST)))
        .select_from(following)
        .outerjoin(following_funding, following_funding.id == following.allocation_id)
        .where(
            following.household_id == period.household_id,
            following.reversed_at.is_(None),
            following.start_on <= DayAfter(period.end_on),
            following.end_on > period.end_on,
        )
        .scalar_subquery()
    )
    live = (
        select(
            period.household_id,
            period.start_on,
            period.end_on,
            period.waiting_until,
            func.coalesce(funding.effective_on, EARLIEST).label("funded_on"),
            continued_since.label("continued_since"),
        )
        .select_from(period)
        .outerjoin(funding, funding.id == period.allocation_id)
        .where(period.reversed_at.is_(None), period.household_id.in_(households))
        .offset(0)  # worked out once per period, not once per period and date (PostgreSQL would inline it)
        .subquery("live")
    )
    p = live.c

    def first_start(condition: ColumnElement[bool]) -> Any:
        return func.min(case((condition, p.start_on), else_=None))

    def any_of(condition: ColumnElement[bool]) -> Any:
        return func.max(case((condition, 1), else_=0))

    known = p.funded_on <= d.eve
    holds_on = and_(p.start_on <= d.on, p.end_on >= d.on)
    holds_eve = and_(known, p.start_on <= d.eve, p.end_on >= d.eve)
    uncontinued = or_(p.continued_since.is_(None), p.continued_since > d.eve)
    periods = (
        select(
            p.household_id,
            d.n,
            first_start(holds_on).label("hold"),
            first_start(and_(holds_on, p.waiting_until >= d.on)).label("wait"),
            any_of(and_(p.end_on < d.on, p.end_on >= d.since)).label("grace"),
            any_of(p.end_on < d.on).label("ended"),
            first_start(holds_eve).label("eve_hold"),
            first_start(and_(holds_eve, p.waiting_until >= d.eve)).label("eve_wait"),
            any_of(and_(known, p.end_on < d.eve, p.end_on >= d.eve_since)).label("eve_grace"),
            any_of(and_(known, p.end_on < d.eve)).label("eve_ended"),
            func.min(case((and_(known, p.end_on >= d.eve, uncontinued), p.end_on), else_=None)).label("cover_end"),
        )
        .select_from(live.join(dates, true()))
        .group_by(p.household_id, d.n)
        .subquery("periods")
    )
    # Members alike (same status and leaving day) counted once, then on each date: a household's members rarely
    # differ in more than that.
    member = Member.__table__.c
    alike = (
        select(member.household_id, member.status, member.left_on, func.count().label("members"))
        .where(member.household_id.in_(households))
        .group_by(member.household_id, member.status, member.left_on)
        .subquery("alike")
    )
    counts = (
        # An integer (PostgreSQL sums bigints as numeric), for the price's integer division.
        select(alike.c.household_id, d.n, cast(func.sum(alike.c.members), Integer).label("members"))
        .select_from(alike.join(dates, active_member_clause(d.eve, alike)))
        .group_by(alike.c.household_id, d.n)
        .subquery("counts")
    )
    # Entries summed per effective day first, then added up to each date.
    reversed_entry, fee_count = net_fee_count()
    daily = (
        select(
            Account.household_id,
            LedgerEntry.effective_on,
            func.sum(LedgerEntry.amount).label("amount"),
            func.sum(fee_count).label("fees"),
        )
        .select_from(LedgerEntry)
        .join(Account, Account.id == LedgerEntry.account_id)
        .outerjoin(reversed_entry, LedgerEntry.reverses_entry_id == reversed_entry.id)
        .where(Account.household_id.in_(households))
        .group_by(Account.household_id, LedgerEntry.effective_on)
        .subquery("daily")
    )
    sums = (
        select(
            daily.c.household_id,
            d.n,
            func.sum(daily.c.amount).label("balance"),
            func.sum(daily.c.fees).label("fees"),
        )
        .select_from(daily.join(dates, daily.c.effective_on <= d.eve))
        .group_by(daily.c.household_id, d.n)
        .subquery("sums")
    )
    grid = (
        select(Household.id.label("household_id"), Household.status.label("household_status"), d.n)
        .select_from(dates)
        .join(Household, Household.id.in_(households))
        .subquery("grid")
    )
    g, f = grid.c, periods.c
    at = and_(f.household_id == g.household_id, f.n == g.n)
    return (
        select(
            g.household_id,
            g.n,
            status_of(
                g.household_status,
                waiting=and_(f.hold.is_not(None), f.wait == f.hold),
                holding=f.hold.is_not(None),
                in_grace=f.grace == 1,
                lapsed=f.ended == 1,
            ).label("status"),
            status_of(
                g.household_status,
                waiting=and_(f.eve_hold.is_not(None), f.eve_wait == f.eve_hold),
                holding=f.eve_hold.is_not(None),
                in_grace=f.eve_grace == 1,
                lapsed=f.eve_ended == 1,
            ).label("eve_status"),
            f.cover_end.label("eve_cover_end"),
            func.coalesce(counts.c.members, 0).label("members"),
            func.coalesce(sums.c.balance, 0).label("balance"),
            func.coalesce(sums.c.fees, 0).label("fees"),
        )
        .select_from(grid)
        .outerjoin(periods, at)
        .outerjoin(counts, and_(counts.c.household_id == g.household_id, counts.c.n == g.n))
        .outerjoin(sums, and_(sums.c.household_id == g.household_id, sums.c.n == g.n))
        .subquery("standing")
    )


# ---------------------------------------------------------------- amounts


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
