"""Who has not renewed: households whose cover ends soon, in grace, or lapsed lately — a page at a time or all of them.

A household's kind follows the last day of its last live period (`last_end`), on the date `on`:
- `ending`: `on` ≤ last_end ≤ `on` + N days (still covered, or waiting);
- `grace`: the cover ended, within the scheme's grace days (last_end + grace ≥ `on`);
- `lapsed`: it lapsed (the day after last_end + grace) within the last N days.

Only households that are asked to pay are listed: active (not suspended or closed by staff) and not fully subsidised
(their funder's periods are booked by the clock). Each row carries the household's eligibility and next payment
(`household_standings`: the rules every channel answers from), its last payment (the last payment entry of its
account not reversed: its own, or its share of a network payment) and the last renewal reminder sent to it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from models.base import HouseholdStatus, LedgerKind, MessageDirection, MessageStatus
from models.bulk import among
from models.coverage.eligibility import Eligibility
from models.coverage.money import LedgerEntry
from models.coverage.premiums import funder_pays_all
from models.members.household import Account, Household, Member, Network
from models.messaging.message import Message
from models.messaging.reminders import BEFORE_TEMPLATE, LAPSED_TEMPLATE
from models.schemes.scheme import Scheme
from models.views.exports import cell
from models.views.listings import EXPORT_BATCH, Cursor, Page, paginate
from models.views.selection import HouseholdSelection
from models.views.standing import household_standings, load_schemes

DEFAULT_DAYS = 30
MAX_DAYS = 3660


class RenewalKind(enum.StrEnum):
    """Where a household that has not renewed stands."""

    ENDING = "ending"
    GRACE = "grace"
    LAPSED = "lapsed"


@dataclass(frozen=True)
class RenewalFilters:
    """The renewal list's filters: a kind (None: all three), the window in days and the households."""

    kind: RenewalKind | None = None
    days: int = DEFAULT_DAYS
    households: HouseholdSelection = field(default_factory=HouseholdSelection)


def renewal_kind(on: date, last_end: date, grace_days: int) -> RenewalKind:
    """Return where cover that ended (or ends) on `last_end` stands on a date: ending, in grace, or lapsed."""
    if last_end >= on:
        return RenewalKind.ENDING
    if last_end + timedelta(days=grace_days) >= on:
        return RenewalKind.GRACE
    return RenewalKind.LAPSED


def _window(kind: RenewalKind, on: date, days: int, grace_days: int) -> tuple[date, date]:
    """Return the first and last `last_end` of a kind on a date (inclusive; empty when first > last)."""
    if kind is RenewalKind.ENDING:
        return on, on + timedelta(days=days)
    if kind is RenewalKind.GRACE:
        return on - timedelta(days=grace_days), on - timedelta(days=1)
    # Lapsed on last_end + grace + 1, at most `days` days ago.
    return on - timedelta(days=days + grace_days + 1), on - timedelta(days=grace_days + 1)


@dataclass(frozen=True)
class RenewalRow:
    """A household that has not renewed, with what a manager calls it about."""

    household: Household
    kind: RenewalKind
    last_end: date
    head_name: str
    head_phone: str | None
    network_code: str | None
    network_name: str | None
    answer: Eligibility  # status, next payment and its date, on the list's date
    last_payment_on: date | None
    last_payment_amount: int | None
    last_payment_id: int | None
    last_reminder_at: datetime | None
    last_reminder_kind: str | None  # before-14, before-3, lapsed
    last_reminder_status: MessageStatus | None

    @property
    def currency(self) -> str:
        """Return the currency of the household's amounts."""
        return self.answer.currency


# (column, meaning) of `renewals.csv`; docs/exports.md documents the same columns.
RENEWAL_COLUMNS = [
    ("household_no", "household number"),
    ("scheme", "scheme code"),
    ("kind", "ending, grace or lapsed"),
    ("cover_end", "last day of the household's last paid period"),
    ("coverage_status", "eligibility status on the list's date"),
    ("head_name", "head of household's first and last name"),
    ("head_phone", "head's phone, E.164"),
    ("sms_opt_in", "false after the household sent STOP: no reminder goes to it"),
    ("commune", "commune"),
    ("network_code", "network (réseau) code"),
    ("network_name", "network name"),
    ("plan", "payment plan"),
    ("subsidy_category", "subsidy category"),
    ("amount", "the payment that renews the cover (fee, arrears and credit counted)"),
    ("due_on", "its due date: the last day of cover, or the list's date once the cover has ended"),
    ("currency", "ISO 4217 currency of the amounts"),
    ("last_payment_on", "effective date of the household's last payment not reversed"),
    ("last_payment_amount", "its amount"),
    ("last_reminder_at", "when the last renewal reminder was queued (UTC)"),
    ("last_reminder_kind", "before-14, before-3 (days before the end) or lapsed"),
    ("last_reminder_status", "that SMS's delivery status"),
    ("on", "the list's date"),
]


def _query(filters: RenewalFilters, on: date, schemes: Sequence[Scheme]) -> Select[Any]:
    # The household's last end is stored (`Household.cover_ends_on`, kept by `store_cover_ends`): each scheme's
    # windows are ranges of it, and the index on (cover_ends_on, household_no), the list's order, reads a page's
    # rows in key order from the first window's start: a page reads its own rows, not every household found.
    kinds = [filters.kind] if filters.kind is not None else list(RenewalKind)
    windows: list[ColumnElement[bool]] = []
    reach: list[tuple[date, date]] = []
    for scheme in schemes:
        bounds = [b for b in (_window(kind, on, filters.days, scheme.grace_days) for kind in kinds) if b[0] <= b[1]]
        if not bounds:
            continue
        reach.extend(bounds)
        in_any = or_(*(Household.cover_ends_on.between(first, last) for first, last in bounds))
        # Fully subsidised households are not asked: their categories named (a plain condition the planner
        # estimates, where a correlated NOT EXISTS on two columns was taken to keep one household in a million).
        full = [c.code for c in scheme.subsidy_categories if funder_pays_all(c.share_bp)]
        windows.append(and_(Household.scheme_id == scheme.id, in_any, Household.subsidy_category.not_in(full)))
    head = aliased(Member)
    query = (
        select(
            Household,
            Household.cover_ends_on.label("last_end"),
            Account.id,
            head.first_name,
            head.last_name,
            head.phone,
            Network.code,
            Network.name,
        )
        .outerjoin(Account, Account.household_id == Household.id)
        .outerjoin(head, head.member_no == Household.head_member_no)
        .outerjoin(Network, Network.id == Household.network_id)
        .where(Household.status == HouseholdStatus.ACTIVE)
    )
    if not windows:
        return query.where(false()).order_by(*ORDER)
    # Every window within one range of the index (what the schemes' windows reach together), then each scheme's.
    reaches = Household.cover_ends_on.between(min(b[0] for b in reach), max(b[1] for b in reach))
    # Oldest end first: lapsed, then grace (closest to lapsing first), then ending soonest (`ORDER`).
    return filters.households.apply(query.where(reaches, or_(*windows))).order_by(*ORDER)


# The list's sort keys: the last end, then the household number (unique): the index `ix_households_cover_ends_on`.
ORDER = [Household.cover_ends_on, Household.household_no]
COUNT_LIMIT = 10_000  # the page counts its households up to this many; beyond, "more than" (not a scan of all)


def renewals_page(
    session: Session,
    filters: RenewalFilters,
    on: date,
    number: int = 1,
    per_page: int = 50,
    schemes: Sequence[Scheme] | None = None,
    cursor: Cursor | None = None,
) -> tuple[Page[RenewalRow], int]:
    """Return one page of the households that have not renewed on a date, and how many the filters select (at
    most COUNT_LIMIT + 1: more than COUNT_LIMIT).

    `schemes`: every scheme, loaded by `load_schemes`, when the caller has them.
    """
    schemes = list(load_schemes(session).values()) if schemes is None else schemes
    query = _query(filters, on, schemes)
    # Counted (for "remind them all") up to COUNT_LIMIT + 1: more is shown as "more than COUNT_LIMIT", so a page
    # never reads every household of wide windows. No head, account or network joined per row.
    counted = query.with_only_columns(Household.id).order_by(None).limit(COUNT_LIMIT + 1)
    total = session.scalar(select(func.count()).select_from(counted.subquery())) or 0
    # Keys first (the windows' households in key order), then the page's rows with their head, account and network.
    page = paginate(session, query, number, per_page, order=ORDER, cursor=cursor, narrow=True)
    return page.with_items(_complete(session, page.items, on)), int(total)


def renewal_rows(session: Session, filters: RenewalFilters, on: date) -> Iterator[RenewalRow]:
    """Yield every household the filters select, in batches (a server-side cursor on PostgreSQL)."""
    schemes = list(load_schemes(session).values())
    query = _query(filters, on, schemes).execution_options(yield_per=EXPORT_BATCH)
    for batch in session.execute(query).tuples().partitions():
        yield from _complete(session, list(batch), on)


def renewal_csv_rows(session: Session, filters: RenewalFilters, on: date) -> Iterator[list[str]]:
    """Yield every household the filters select as CSV cells (`RENEWAL_COLUMNS`)."""
    for row in renewal_rows(session, filters, on):
        household, answer = row.household, row.answer
        yield [
            cell(value)
            for value in (
                household.household_no,
                household.scheme.code,
                row.kind,
                row.last_end,
                answer.status,
                row.head_name,
                row.head_phone,
                household.sms_opt_in,
                household.commune,
                row.network_code,
                row.network_name,
                household.plan,
                household.subsidy_category,
                answer.next_payment_amount,
                answer.next_payment_due,
                answer.currency,
                row.last_payment_on,
                row.last_payment_amount,
                row.last_reminder_at,
                row.last_reminder_kind,
                row.last_reminder_status,
                on,
            )
        ]


def renewal_household_ids(session: Session, filters: RenewalFilters, on: date) -> list[int]:
    """Return the ids of every household the filters select (whom "remind them all" reminds)."""
    schemes = list(load_schemes(session).values())
    query = _query(filters, on, schemes).with_only_columns(Household.id).order_by(None).order_by(Household.id)
    return list(session.scalars(query))


def _complete(session: Session, rows: Sequence[Any], on: date) -> list[RenewalRow]:
    """Return the rows with each household's standing, last payment and last reminder (four queries a batch)."""
    households = [row[0] for row in rows]
    accounts = {row[0].id: row[2] for row in rows if row[2] is not None}
    standings = household_standings(session, households, on, account_ids=accounts)
    payments = _last_payments(session, list(accounts.values()))
    reminders = _last_reminders(session, [household.id for household in households])
    result = []
    for household, last_end, account_id, first_name, last_name, phone, network_code, network_name in rows:
        paid = payments.get(account_id) if account_id is not None else None
        reminder = reminders.get(household.id)
        result.append(
            RenewalRow(
                household=household,
                kind=renewal_kind(on, last_end, household.scheme.grace_days),
                last_end=last_end,
                head_name=" ".join(part for part in (first_name, last_name) if part),
                head_phone=phone,
                network_code=network_code,
                network_name=network_name,
                answer=standings[household.id].answer,
                last_payment_on=paid[0] if paid else None,
                last_payment_amount=paid[1] if paid else None,
                last_payment_id=paid[2] if paid else None,
                last_reminder_at=reminder[0] if reminder else None,
                last_reminder_kind=reminder[1] if reminder else None,
                last_reminder_status=reminder[2] if reminder else None,
            )
        )
    return result


def _last_payments(session: Session, account_ids: list[int]) -> dict[int, tuple[date, int, int | None]]:
    """Return each account's last payment entry not reversed: (effective date, amount, payment id)."""
    if not account_ids:
        return {}
    reversal = aliased(LedgerEntry)
    undone = select(reversal.id).where(reversal.reverses_entry_id == LedgerEntry.id)
    rank = func.row_number().over(
        partition_by=LedgerEntry.account_id, order_by=(LedgerEntry.effective_on.desc(), LedgerEntry.id.desc())
    )
    ranked = (
        select(
            LedgerEntry.account_id,
            LedgerEntry.effective_on,
            LedgerEntry.amount,
            LedgerEntry.payment_id,
            rank.label("rank"),
        )
        .where(
            among(session, LedgerEntry.account_id, account_ids),
            LedgerEntry.kind == LedgerKind.PAYMENT,
            ~undone.exists(),
        )
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.account_id, ranked.c.effective_on, ranked.c.amount, ranked.c.payment_id).where(
            ranked.c.rank == 1
        )
    ).tuples()
    return {account_id: (on, int(amount), payment_id) for account_id, on, amount, payment_id in rows}


def _last_reminders(session: Session, household_ids: list[int]) -> dict[int, tuple[datetime, str, MessageStatus]]:
    """Return the last renewal reminder of each household: (queued at, kind, status)."""
    if not household_ids:
        return {}
    rank = func.row_number().over(partition_by=Message.household_id, order_by=Message.id.desc())
    ranked = (
        select(Message.household_id, Message.created_at, Message.dedupe_key, Message.status, rank.label("rank"))
        .where(
            among(session, Message.household_id, household_ids),
            Message.direction == MessageDirection.OUTBOUND,
            Message.template.in_([BEFORE_TEMPLATE, LAPSED_TEMPLATE]),
        )
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.household_id, ranked.c.created_at, ranked.c.dedupe_key, ranked.c.status).where(
            ranked.c.rank == 1
        )
    ).tuples()
    return {
        household_id: (created_at, _reminder_kind_of(key), status) for household_id, created_at, key, status in rows
    }


def _reminder_kind_of(dedupe_key: str | None) -> str:
    # reminder:<household>:<kind>:<period end> (models.messaging.reminders.reminder_key)
    parts = (dedupe_key or "").split(":")
    return parts[2] if len(parts) == 4 else ""
