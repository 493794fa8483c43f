"""Coverage periods funded from money: the membership fee first, then whole periods, the rest as credit.

Period dates:
- a period of m months runs by calendar months, `start + m months - 1 day` inclusive (2026-11-20 + 12
  months ends 2027-11-19; month-ends clamp: 2027-01-31 + 1 month ends 2027-02-27);
- the next period starts the day after the previous live (non-reversed) one ends when the money arrives
  no later than `grace_days` after that end (or before it: a renewal in advance); otherwise it starts on
  the payment's effective date — lapsed months are never bought back;
- the plan's waiting period runs from the start of the first period after enrolment or after a lapse
  (`waiting_until` is the last day of waiting, inclusive); a contiguous renewal adds none, but carries on
  a waiting period that is still running (a 1-month plan with a 2-month wait);
- a fully subsidised household's first period is funded from enrolment: the periods run back to back from
  `enrolled_on` and the one that holds the booking date is booked (with the funder paying the membership fee
  too), so a household enrolled last year is covered on the day it is imported. Its waiting period runs from
  enrolment, so it is usually long over. The clock then only renews (`book_subsidised_periods`).
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, LedgerKind, utcnow
from models.bulk import among, insert_many, insert_rows, table_of
from models.coverage.ledger import (
    account_state,
    account_states,
    add_entry,
    get_or_create_account,
    lock_account,
    start_write,
)
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.premiums import (
    PeriodPrice,
    active_member_counts,
    funder_pays_all,
    funder_share,
    is_fully_subsidised,
    period_price,
    plan_price,
)
from models.members.household import Account, Household
from models.schemes.scheme import Scheme

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class PeriodDates:
    """Where the next period would sit: its dates, its waiting period, and whether it renews the last one."""

    start_on: date
    end_on: date
    waiting_until: date | None
    contiguous: bool


def add_months(day: date, months: int) -> date:
    """Return the same day `months` calendar months later, clamped to the end of a shorter month.

    What `day + relativedelta(months=months)` returns, in a fraction of its time (a batch adds months thousands of
    times).
    """
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    month += 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


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


def store_cover_ends(session: Session, household_ids: Iterable[int]) -> None:
    """Store on each of these households the end of its last live period (`Household.cover_ends_on`).

    The one place the stored end is kept: every writer of periods (an allocation, a network payout, a subsidy
    booking, a prior-cover import) and every reversal or refund calls it for the households it touched, in its
    own transaction, after the periods are written. Read again from the periods (not worked out by the caller),
    so a period written or reversed by any path leaves the right end. `updated_at` is kept: not an edit.
    """
    ids = sorted(set(household_ids))
    latest = (
        select(func.max(CoveragePeriod.end_on))
        .where(CoveragePeriod.household_id == Household.id, CoveragePeriod.reversed_at.is_(None))
        .scalar_subquery()
    )
    for start in range(0, len(ids), BOOKING_CHUNK):
        session.execute(
            update(Household)
            .where(among(session, Household.id, ids[start : start + BOOKING_CHUNK]))
            .values(cover_ends_on=latest, updated_at=Household.updated_at)
            .execution_options(synchronize_session="fetch")
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


def enrolment_period_dates(enrolled_on: date, months: int, waiting_months: int, on: date) -> PeriodDates:
    """Return the period holding `on` of a run of back-to-back periods from enrolment (the first one before it).

    The waiting period runs from enrolment: it is kept only while it still reaches into the period.
    """
    start = enrolled_on
    while on >= add_months(start, months):
        start = add_months(start, months)
    waiting = period_end(enrolled_on, waiting_months) if waiting_months > 0 else None
    if waiting is not None and waiting < start:
        waiting = None
    return PeriodDates(start, period_end(start, months), waiting, contiguous=False)


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
    if not funder_pays_all(category.share_bp) or household.status != HouseholdStatus.ACTIVE:
        return None
    if household.enrolled_on > on:
        return None
    account = lock_account(session, get_or_create_account(session, household=household).id)
    last = last_live_period(session, household.id)
    if last is not None and last.end_on > on:
        return None
    plan = scheme.plan(household.plan)
    if last is None:
        # Funded from enrolment: the run of periods from `enrolled_on`, however late the booking.
        dates = enrolment_period_dates(household.enrolled_on, plan.months, plan.waiting_months, on)
    else:
        dates = next_period_dates(last, on, plan.months, plan.waiting_months, scheme.grace_days)
    ref = subsidy_source_ref(household.id, dates.start_on)
    if session.scalar(select(exists().where(Allocation.source_ref == ref))):
        return None
    price = period_price(session, household, on)
    if price.price <= 0:
        return None
    # The funder pays the membership fee of the households it pays for: the allocation holds it with the price, as a
    # payment's allocation does and the set-based bookings (`insert_bookings`) do.
    fee = 0
    if scheme.membership_fee > 0 and not account_state(session, account_id=account.id).fee_paid:
        fee = scheme.membership_fee
    allocation = Allocation(
        source_ref=ref, account_id=account.id, amount=price.price + fee, currency=scheme.currency, effective_on=on
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
    store_cover_ends(session, [household.id])
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
    if fee:
        add_entry(session, account, LedgerKind.SUBSIDY, fee, on, allocation=allocation, funder=category.funder)
        add_entry(session, account, LedgerKind.FEE, -fee, on, allocation=allocation)
    return period


def book_subsidised_periods(session: Session, scheme: Scheme, on: date, after: int = 0, upto: int | None = None) -> int:
    """Book every due funder-paid period of the scheme's fully subsidised households; return how many.

    The households with ids in (`after`, `upto`] (`upto` None: to the last), so the clock walks a million of them
    a window at a time, each its own short transaction. Set-based, `BOOKING_CHUNK` households at a time: the due
    set in one statement, their accounts locked in one, their live periods, member counts and fees in three, then
    the bookings in three multi-row INSERTs (`insert_bookings`). The rules are `book_subsidised_period`'s.
    Idempotent per household and period start (`subsidy:<household>:<start>` allocations), so the clock may run it
    any number of times a day. Starts its own write transaction; the caller commits.
    """
    start_write(session)
    codes = {c.code: c for c in scheme.subsidy_categories if funder_pays_all(c.share_bp)}
    if not codes:
        return 0
    booked = 0
    while True:
        rows = _due_subsidised(session, scheme, list(codes), on, after, upto)
        if not rows:
            return booked
        booked += _book_due(session, scheme, codes, rows, on)
        if len(rows) < BOOKING_CHUNK:
            return booked
        after = rows[-1][0]


def _due_subsidised(
    session: Session, scheme: Scheme, categories: list[str], on: date, after: int, upto: int | None
) -> list[Any]:
    """Return (id, enrolled_on, plan, category, account id or None) of the next households due a funder-paid period.

    Active households of the categories, enrolled by `on`, without a live period running past `on`, in id order
    after `after` (at most `BOOKING_CHUNK`).
    """
    still_covered = exists().where(
        CoveragePeriod.household_id == Household.id,
        CoveragePeriod.reversed_at.is_(None),
        CoveragePeriod.end_on > on,
    )
    query = (
        select(Household.id, Household.enrolled_on, Household.plan, Household.subsidy_category, Account.id)
        .outerjoin(Account, Account.household_id == Household.id)
        .where(
            Household.scheme_id == scheme.id,
            Household.subsidy_category.in_(categories),
            Household.status == HouseholdStatus.ACTIVE,
            Household.enrolled_on <= on,
            Household.id > after,
            ~still_covered,
        )
        .order_by(Household.id)
        .limit(BOOKING_CHUNK)
    )
    if upto is not None:
        query = query.where(Household.id <= upto)
    return list(session.execute(query).all())


def _book_due(session: Session, scheme: Scheme, codes: dict[str, Any], rows: list[Any], on: date) -> int:
    """Book the next funder-paid period of each due household of `rows` (`_due_subsidised`); return how many."""
    booked = 0
    for household_id, *_rest, account_id in rows:
        if account_id is None:  # never had an account: created (and booked) one household at a time
            household = session.get(Household, household_id)
            assert household is not None
            booked += book_subsidised_period(session, household, on) is not None
    rows = [row for row in rows if row[4] is not None]
    if not rows:
        return booked
    # The accounts' rows are the allocation lock: held until the commit, in id order (no deadlock with a drain).
    session.execute(
        select(Account.id)
        .where(among(session, Account.id, [row[4] for row in rows]))
        .order_by(Account.id)
        .with_for_update()
    )
    ids = [row[0] for row in rows]
    last: dict[int, PeriodDates | None] = dict.fromkeys(ids)
    # Read under the locks: a period another transaction booked before we got them is seen.
    for household_id, start_on, end_on, waiting_until in session.execute(
        select(
            CoveragePeriod.household_id, CoveragePeriod.start_on, CoveragePeriod.end_on, CoveragePeriod.waiting_until
        )
        .where(among(session, CoveragePeriod.household_id, ids), CoveragePeriod.reversed_at.is_(None))
        .order_by(CoveragePeriod.household_id, CoveragePeriod.end_on)
    ):
        last[household_id] = PeriodDates(start_on, end_on, waiting_until, contiguous=False)
    counts = active_member_counts(session, ids, on)
    states = account_states(session, [row[4] for row in rows])
    bookings = []
    for household_id, enrolled_on, plan_code, category_code, account_id in rows:
        previous = last[household_id]
        if previous is not None and previous.end_on > on:
            continue  # booked meanwhile
        plan = scheme.plan(plan_code)
        price = plan_price(scheme, plan, counts[household_id])
        if price <= 0:
            continue
        if previous is None:
            # Funded from enrolment: the run of periods from `enrolled_on`, however late the booking.
            dates = enrolment_period_dates(enrolled_on, plan.months, plan.waiting_months, on)
        else:
            dates = next_period_dates(previous, on, plan.months, plan.waiting_months, scheme.grace_days)
        fee = scheme.membership_fee if not states[account_id].fee_paid else 0
        ref = subsidy_source_ref(household_id, dates.start_on)
        funder = codes[category_code].funder
        bookings.append(Booking(ref, household_id, account_id, plan.code, plan.months, dates, price, 0, funder, fee))
    return booked + insert_bookings(session, scheme, bookings, on)


@dataclass(frozen=True)
class Booking:
    """One period booked without a payment (funder-paid from enrolment, or prior cover on migration)."""

    source_ref: str
    household_id: int
    account_id: int
    plan: str
    months: int
    dates: PeriodDates
    price: int
    share: int  # what the household paid before (an ADJUSTMENT entry), 0 when the funder pays it all
    funder: str | None
    fee: int  # the membership fee this booking marks paid (0: already paid, or none)
    note: str | None = None


def book_enrolment_subsidies(session: Session, scheme: Scheme, household_ids: list[int], on: date) -> int:
    """Book from enrolment the first funder-paid period (and fee) of these households that have none; return how many.

    The set-based twin of `book_subsidised_period` for a member import (a handful of statements per chunk,
    not per household): fully subsidised, active households enrolled by `on` without a live period. The
    caller holds the write transaction (the import's) and commits.
    """
    codes = {c.code: c for c in scheme.subsidy_categories if funder_pays_all(c.share_bp)}
    if not codes or not household_ids:
        return 0
    booked = 0
    for start in range(0, len(household_ids), BOOKING_CHUNK):
        rows = _unbooked(session, scheme, household_ids[start : start + BOOKING_CHUNK], list(codes), on)
        if not rows:
            continue
        counts = active_member_counts(session, [row[0] for row in rows], on)
        states = account_states(session, [row[4] for row in rows])
        bookings = []
        for household_id, enrolled_on, plan_code, category_code, account_id in rows:
            plan = scheme.plan(plan_code)
            price = plan_price(scheme, plan, counts[household_id])
            if price <= 0:
                continue
            dates = enrolment_period_dates(enrolled_on, plan.months, plan.waiting_months, on)
            fee = scheme.membership_fee if not states[account_id].fee_paid else 0
            ref = subsidy_source_ref(household_id, dates.start_on)
            funder = codes[category_code].funder
            bookings.append(
                Booking(ref, household_id, account_id, plan.code, plan.months, dates, price, 0, funder, fee)
            )
        booked += insert_bookings(session, scheme, bookings, on)
    return booked


def book_prior_cover(session: Session, scheme: Scheme, paid_until: dict[int, date], on: date, source: str) -> int:
    """Book the cover households already had before the scheme moved here (`paid_until`); return how many.

    One period of the household's plan ending on `paid_until` (starting no earlier than enrolment), its
    share paid before migration booked as an ADJUSTMENT with its `source`, the funder's share as a subsidy,
    the membership fee marked paid, and no waiting period. Only for households without a live period and not
    fully subsidised (those are funded from enrolment); idempotent per household and date.
    """
    codes = [c.code for c in scheme.subsidy_categories if not funder_pays_all(c.share_bp)]
    if not codes or not paid_until:
        return 0
    ids = sorted(paid_until)
    booked = 0
    for start in range(0, len(ids), BOOKING_CHUNK):
        rows = _unbooked(session, scheme, ids[start : start + BOOKING_CHUNK], codes, None)
        if not rows:
            continue
        counts = active_member_counts(session, [row[0] for row in rows], on)
        states = account_states(session, [row[4] for row in rows])
        bookings = []
        for household_id, enrolled_on, plan_code, category_code, account_id in rows:
            plan = scheme.plan(plan_code)
            category = scheme.subsidy(category_code)
            price = plan_price(scheme, plan, counts[household_id])
            end = paid_until[household_id]
            if price <= 0 or end < enrolled_on:
                continue
            first = max(enrolled_on, add_months(end + ONE_DAY, -plan.months))
            dates = PeriodDates(first, end, None, contiguous=False)
            subsidy = funder_share(price, category.share_bp)
            fee = scheme.membership_fee if not states[account_id].fee_paid else 0
            ref = f"prior-cover:{household_id}:{end.isoformat()}"
            note = f"prior cover until {end.isoformat()} ({source})"[:500]
            bookings.append(
                Booking(
                    ref,
                    household_id,
                    account_id,
                    plan.code,
                    plan.months,
                    dates,
                    price,
                    price - subsidy,
                    category.funder if subsidy else None,
                    fee,
                    note,
                )
            )
        booked += insert_bookings(session, scheme, bookings, on)
    return booked


def _unbooked(
    session: Session, scheme: Scheme, household_ids: list[int], categories: list[str], on: date | None
) -> list[Any]:
    """Return (id, enrolled_on, plan, category, account id) of these active households without a live period."""
    has_period = exists().where(CoveragePeriod.household_id == Household.id, CoveragePeriod.reversed_at.is_(None))
    query = (
        select(Household.id, Household.enrolled_on, Household.plan, Household.subsidy_category, Account.id)
        .join(Account, Account.household_id == Household.id)
        .where(
            among(session, Household.id, household_ids),
            Household.scheme_id == scheme.id,
            Household.subsidy_category.in_(categories),
            Household.status == HouseholdStatus.ACTIVE,
            ~has_period,
        )
        .order_by(Household.id)
    )
    if on is not None:
        query = query.where(Household.enrolled_on <= on)
    return list(session.execute(query).all())


def insert_bookings(session: Session, scheme: Scheme, bookings: list[Booking], on: date) -> int:
    """Write the bookings (allocation, period, entries): one `COPY` per table on PostgreSQL (`models.bulk`), one
    multi-row INSERT each on SQLite; return how many.

    A booking whose `source_ref` is already used is skipped, so a second run writes nothing.
    """
    taken = set(
        session.scalars(
            select(Allocation.source_ref).where(among(session, Allocation.source_ref, [b.source_ref for b in bookings]))
        )
    )
    bookings = [b for b in bookings if b.source_ref not in taken]
    if not bookings:
        return 0
    stamp = utcnow()
    allocation_ids = insert_rows(
        session,
        table_of(Allocation),
        [
            {
                "source_ref": b.source_ref,
                "account_id": b.account_id,
                "amount": b.price + b.fee,
                "currency": scheme.currency,
                "effective_on": on,
                "payment_id": None,
                "created_at": stamp,
            }
            for b in bookings
        ],
    )
    period_ids = insert_rows(
        session,
        table_of(CoveragePeriod),
        [
            {
                "household_id": b.household_id,
                "allocation_id": allocation_id,
                "plan": b.plan,
                "months": b.months,
                "start_on": b.dates.start_on,
                "end_on": b.dates.end_on,
                "waiting_until": b.dates.waiting_until,
                "price": b.price,
                "household_share": b.share,
                "subsidy_amount": b.price - b.share,
                "funder": b.funder,
                "created_at": stamp,
            }
            for b, allocation_id in zip(bookings, allocation_ids, strict=True)
        ],
    )
    entries: list[dict[str, Any]] = []
    for b, allocation_id, period_id in zip(bookings, allocation_ids, period_ids, strict=True):
        common: dict[str, Any] = {
            "account_id": b.account_id,
            "allocation_id": allocation_id,
            "currency": scheme.currency,
            "effective_on": on,
            "created_at": stamp,
            "payment_id": None,
            "reverses_entry_id": None,
            "note": b.note,
        }
        if b.share > 0:  # paid before migration
            entries.append(dict(common, kind=LedgerKind.ADJUSTMENT, amount=b.share, funder=None, period_id=period_id))
        if b.price - b.share > 0:
            subsidy = b.price - b.share
            entries.append(dict(common, kind=LedgerKind.SUBSIDY, amount=subsidy, funder=b.funder, period_id=period_id))
        entries.append(dict(common, kind=LedgerKind.CHARGE, amount=-b.price, funder=None, period_id=period_id))
        if b.fee > 0:
            # Fully subsidised: the funder pays the fee; prior cover: the household paid it before migration.
            kind, funder = (LedgerKind.SUBSIDY, b.funder) if b.share == 0 else (LedgerKind.ADJUSTMENT, None)
            entries.append(dict(common, kind=kind, amount=b.fee, funder=funder, period_id=None))
            entries.append(dict(common, kind=LedgerKind.FEE, amount=-b.fee, funder=None, period_id=None))
    insert_many(session, table_of(LedgerEntry), entries)
    store_cover_ends(session, [b.household_id for b in bookings])
    return len(bookings)


BOOKING_CHUNK = 1000
