"""Households' eligibility on a date, many at a time: the rules of `household_eligibility` in a fixed number of queries.

The admin's renewal list and the exports show hundreds or millions of households. Each answer comes from the
same rules as every other channel (`models.coverage.premiums.amount_due`, `models.coverage.eligibility.eligibility_on`,
`member_eligibility`'s for a member who left), fed with what four queries read for a whole batch: the schemes with
their plans, bands and categories (once per batch), the account states, the active member counts and the live periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.base import HouseholdStatus
from models.bulk import among
from models.coverage.eligibility import Eligibility, eligibility_on, periods_since
from models.coverage.ledger import AccountState, account_states
from models.coverage.money import CoveragePeriod
from models.coverage.premiums import AmountDue, active_member_counts, amount_due
from models.members.household import Account, Household
from models.schemes.scheme import Scheme

NO_ACCOUNT = AccountState(balance=0, fee_paid=False)


@dataclass(frozen=True)
class Span:
    """A live coverage period's dates (what eligibility reads of it)."""

    start_on: date
    end_on: date
    waiting_until: date | None


@dataclass(frozen=True)
class Standing:
    """A household's eligibility on a date and the run of back-to-back periods it holds or last held."""

    answer: Eligibility
    cover_start: date | None  # first day of that run (None: never covered)
    cover_end: date | None  # last day of that run
    last_end: date | None  # last day of the household's last live period
    members: int  # active members on the date (who the premium counts)


def load_schemes(session: Session) -> dict[int, Scheme]:
    """Return every scheme with its plans, bands and subsidy categories loaded (four queries, however many)."""
    query = select(Scheme).options(
        selectinload(Scheme.plans), selectinload(Scheme.bands), selectinload(Scheme.subsidy_categories)
    )
    return {scheme.id: scheme for scheme in session.scalars(query)}


def cover_run(periods: Sequence[Span], on: date) -> tuple[date, date] | None:
    """Return the first and last day of the run of back-to-back periods holding `on`, else of the last run before it.

    When every period starts after `on`, the first run; None without periods. `periods` are sorted by start.
    """
    runs: list[tuple[date, date]] = []
    for period in periods:
        if runs and period.start_on <= runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], max(runs[-1][1], period.end_on))
        else:
            runs.append((period.start_on, period.end_on))
    if not runs:
        return None
    started = [run for run in runs if run[0] <= on]
    return started[-1] if started else runs[0]


def household_standings(
    session: Session, households: Sequence[Household], on: date, account_ids: dict[int, int] | None = None
) -> dict[int, Standing]:
    """Return each household's standing on a date (`household_eligibility`'s answer), in three queries for all.

    `account_ids` (household id → account id) when the caller read them already (else a fourth query); the
    households' schemes should be in the session (`load_schemes`), or each is loaded on first use.
    """
    ids = [household.id for household in households]
    if not ids:
        return {}
    if account_ids is None:
        query = select(Account.household_id, Account.id).where(among(session, Account.household_id, ids))
        rows = session.execute(query)
        account_ids = {household_id: account_id for household_id, account_id in rows.tuples() if household_id}
    states = account_states(session, list(account_ids.values()))
    counts = active_member_counts(session, ids, on)
    spans: dict[int, list[Span]] = {household_id: [] for household_id in ids}
    period = CoveragePeriod
    for household_id, start_on, end_on, waiting_until in session.execute(
        select(period.household_id, period.start_on, period.end_on, period.waiting_until)
        .where(among(session, period.household_id, ids), period.reversed_at.is_(None))
        .order_by(period.household_id, period.start_on)
    ).tuples():
        spans[household_id].append(Span(start_on, end_on, waiting_until))
    standings = {}
    for household in households:
        account = account_ids.get(household.id)
        state = states[account] if account is not None else NO_ACCOUNT
        due = amount_due(session, household, on, state=state, members=counts[household.id])
        standings[household.id] = _standing(household, spans[household.id], on, due, counts[household.id])
    return standings


def _standing(household: Household, periods: list[Span], due_on: date, due: AmountDue, members: int) -> Standing:
    scheme = household.scheme
    near: list[Span] = []
    lapsed_on: date | None = None
    # What `household_eligibility` reads: nothing for a suspended or closed household; else the periods that
    # still matter on the date, and the last end before it when none does.
    if household.status not in {HouseholdStatus.SUSPENDED, HouseholdStatus.CLOSED}:
        near = [p for p in periods if p.end_on >= periods_since(due_on, scheme.grace_days)]
        if all(p.start_on > due_on for p in near):
            lapsed_on = max((p.end_on for p in periods if p.end_on < due_on), default=None)
    answer = eligibility_on(
        due_on,
        status=household.status,
        status_reason=household.status_reason,
        periods=near,
        grace_days=scheme.grace_days,
        grace_covered=scheme.grace_covered,
        due=due,
        lapsed_on=lapsed_on,
    )
    run = cover_run(periods, due_on)
    return Standing(
        answer,
        run[0] if run else None,
        run[1] if run else None,
        max((p.end_on for p in periods), default=None),
        members,
    )
