"""The scheme manager's report: households by eligibility, money due and collected, matching and subsidies, by month.

For one scheme (amounts in its currency), month by month, in total and by commune or network:

- **enrolled**: households enrolled by the month's last day (today, for the current month); their eligibility on
  that day (`models.coverage.eligibility`): **paid** (a paid period holds the day: active or waiting),
  **covered**, **waiting**, **in grace**, **lapsed**, **never paid** (pending), **stopped** (suspended or
  closed by staff);
- **due**: the next payment of every household whose next payment falls in the month, as the books stood at the
  end of the month before (`next_payment_amount`, when `next_payment_due` is on or before the month's last day,
  from the periods and ledger entries of money effective by then: a renewal paid during the month was due in
  it); households stopped by staff are not asked. **Not renewed**: those of them without a paid period on the
  month's last day (today);
- **collected**: the money received in the month (payment date in the scheme's time zone; confirmed and not
  rejected, reversed or refunded: the overview's definition), by the household's commune and network (a network
  payment: the network's). **Collection rate** = collected ÷ due (above 100 % when people pay ahead);
- **matched automatically**: of the month's payments, those the rules matched ÷ (matched by the rules or by
  hand + still in suspense or in conflict); a payment not yet tied to a scheme counts for the schemes of its
  currency;
- **subsidies**: each funder's share booked in the month (`subsidy` ledger entries less their reversals, by
  effective date): what to claim from the state or another funder.

Three aggregate statements, whatever the number of households and months (`models.coverage.standing` holds the
rules in SQL: each household's periods, members and entries grouped per month); `tests/test_admin_reports.py`
checks every figure against the rules applied household by household.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from models.base import EligibilityStatus, PaymentStatus, PremiumKind, utcnow
from models.coverage.money import LedgerEntry
from models.coverage.standing import (
    PAID,
    PAYING,
    covered_column,
    next_payment_column,
    period_price_column,
    standing_on_dates,
    without_jit,
)
from models.db import begin_write
from models.members.household import Account, Household, Network
from models.payments.payment import Payment
from models.schemes.mutuelle import Mutuelle, scheme_mutuelles
from models.schemes.scheme import Plan, Scheme, SubsidyCategory, utc_start
from models.views.report_snapshots import CELL_FIGURES, ReportCell, ReportMonth
from models.views.reports import COLLECTED

MAX_MONTHS = 24
MANUAL_RULE = "manual"
UNRESOLVED = (PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT)
STOPPED = (EligibilityStatus.SUSPENDED, EligibilityStatus.INACTIVE)


class Grouping(enum.StrEnum):
    """What the report's lines are: the whole scheme, its mutuelles, communes or networks."""

    SCHEME = "scheme"
    COMMUNE = "commune"
    NETWORK = "network"
    MUTUELLE = "mutuelle"


@dataclass(frozen=True)
class ReportFilters:
    """The households (and their money) a report covers; None means all of the scheme's."""

    commune: str | None = None
    network: str | None = None  # a network's code
    mutuelle: str | None = None  # a mutuelle's code


@dataclass
class Figures:
    """The figures of one month for a set of households (a line of the report, or its total)."""

    enrolled: int = 0
    paid: int = 0
    covered: int = 0
    waiting: int = 0
    grace: int = 0
    lapsed: int = 0
    pending: int = 0
    stopped: int = 0
    due_households: int = 0
    due: int = 0
    not_renewed: int = 0
    collected: int = 0
    payments: int = 0
    matched_auto: int = 0
    matched_manual: int = 0
    unresolved: int = 0
    subsidies: dict[str, int] = field(default_factory=dict)  # funder → amount booked in the month

    def add(self, other: Figures) -> None:
        """Add another set's figures to these."""
        for item in fields(self):
            if item.name != "subsidies":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        for funder, amount in other.subsidies.items():
            self.subsidies[funder] = self.subsidies.get(funder, 0) + amount

    @property
    def collection_percent(self) -> float | None:
        """Return collected ÷ due in percent (None: nothing was due)."""
        return None if self.due <= 0 else 100.0 * self.collected / self.due

    @property
    def auto_match_percent(self) -> float | None:
        """Return the share of payments the rules matched, in percent (None: no payment to match)."""
        total = self.matched_auto + self.matched_manual + self.unresolved
        return None if total == 0 else 100.0 * self.matched_auto / total

    @property
    def subsidy_total(self) -> int:
        """Return what every funder owes for the month."""
        return sum(self.subsidies.values())


@dataclass(frozen=True)
class Month:
    """A calendar month of the report and the day its households are counted on."""

    first: date
    last: date
    as_of: date  # the month's last day, or today for the current month

    @property
    def eve(self) -> date:
        """Return the last day of the month before (when what falls due in the month is read)."""
        return self.first - timedelta(days=1)

    @property
    def label(self) -> str:
        """Return the month as YYYY-MM."""
        return f"{self.first:%Y-%m}"


def month_of(first: date, today: date) -> Month:
    """Return the month starting on `first` (a first day), counted on its last day or today if sooner."""
    last = first + relativedelta(months=1) - timedelta(days=1)
    return Month(first, last, min(last, today))


@dataclass(frozen=True)
class Line:
    """One commune's or network's figures for the report's month (key None: households without one)."""

    key: str | None  # the commune, or the network's code
    label: str
    figures: Figures


@dataclass(frozen=True)
class SchemeReport:
    """A scheme's report: the months' totals (oldest first) and the last month by commune or network."""

    scheme_name: str
    currency: str
    grouping: Grouping
    filters: ReportFilters
    today: date
    months: list[tuple[Month, Figures]]
    lines: list[Line]
    funders: list[str]
    counted_at: datetime | None = None  # the oldest snapshot read (naive UTC); None: all counted from the records

    @property
    def month(self) -> Month:
        """Return the month the lines are about (the last one)."""
        return self.months[-1][0]

    @property
    def total(self) -> Figures:
        """Return the figures of the report's month over all its lines."""
        return self.months[-1][1]


def scheme_report(
    session: Session,
    scheme: Scheme,
    month: date,
    *,
    grouping: Grouping = Grouping.NETWORK,
    filters: ReportFilters | None = None,
    history: int = 12,
    now: datetime | None = None,
    choices: ReportChoices | None = None,
) -> SchemeReport:
    """Return the scheme's figures for the `history` months up to `month` (any day of it), the last one by group.

    `now` (naive UTC) says which day is today in the scheme's time zone; a month after it is refused. `choices`
    (`report_choices`, for the page's filters) names the lines without reading the names again.
    """
    filters = filters or ReportFilters()
    today = scheme.local_today(now)
    last_first = month.replace(day=1)
    if last_first > today:
        raise ValueError(f"{last_first:%Y-%m} has not started yet")
    count = max(1, min(history, MAX_MONTHS))
    months = [month_of(last_first - relativedelta(months=n), today) for n in range(count - 1, -1, -1)]
    cells: dict[tuple[int, Any], Figures] = defaultdict(Figures)
    stored, funders = read_snapshots(session, scheme, months, grouping, filters, cells)
    # A month read from its snapshot counts the day the snapshot counted (today's, until the clock counts it again).
    months = [replace(m, as_of=stored[m.first][0]) if m.first in stored else m for m in months]
    live = [n for n, m in enumerate(months) if m.first not in stored]
    if live:
        computed, more = compute_cells(session, scheme, [months[n] for n in live], grouping, filters)
        for (i, key), figures in computed.items():
            cells[(live[i], key)] = figures
        funders |= more

    totals = [Figures() for _ in months]
    for (n, _), figures in cells.items():
        totals[n].add(figures)
    labels = _labels(session, scheme, grouping, {key for _, key in cells}, choices)
    last = len(months) - 1
    lines = [
        Line(key, label, cells.get((last, raw), Figures()))
        for raw, (key, label) in labels.items()
        if (last, raw) in cells or grouping is not Grouping.SCHEME
    ]
    lines.sort(key=lambda line: (line.key is None, line.label.lower()))
    return SchemeReport(
        scheme.name,
        scheme.currency,
        grouping,
        filters,
        today,
        list(zip(months, totals, strict=True)),
        lines,
        sorted(funders),
        min((counted_at for _, counted_at in stored.values()), default=None),
    )


def compute_cells(
    session: Session, scheme: Scheme, months: list[Month], grouping: Grouping | None, filters: ReportFilters
) -> tuple[dict[tuple[int, Any], Figures], set[str]]:
    """Return the months' figures by (month index, group key) and the funders met, from the records (three statements).

    Grouping None keys each cell by (commune, network id, mutuelle id): the grain report snapshots keep.
    """
    cells: dict[tuple[int, Any], Figures] = defaultdict(Figures)
    without_jit(session)
    _add_households(session, scheme, months, grouping, filters, cells)
    _add_payments(session, scheme, months, grouping, filters, cells)
    funders = _add_subsidies(session, scheme, months, grouping, filters, cells)
    return cells, funders


def _household_keys(grouping: Grouping | None) -> list[Any]:
    if grouping is None:
        return [Household.commune, Household.network_id, Household.mutuelle_id]
    if grouping is Grouping.COMMUNE:
        return [Household.commune]
    if grouping is Grouping.NETWORK:
        return [Household.network_id]
    if grouping is Grouping.MUTUELLE:
        return [Household.mutuelle_id]
    return [literal(0, Integer)]


def _key_labels(keys: list[Any]) -> list[Any]:
    return [key.label(f"key{i}") for i, key in enumerate(keys)]


def _split_key(row: Any, width: int) -> tuple[int, Any, tuple[Any, ...]]:
    """Return a grouped row's month index, its group key (a tuple for several key columns) and the other values."""
    key = tuple(row[1 : 1 + width]) if width > 1 else row[1]
    return int(row[0]), key, tuple(row[1 + width :])


def _network_ids(scheme: Scheme, code: str) -> Select[Any]:
    return select(Network.id).where(Network.scheme_id == scheme.id, Network.code == code)


def _mutuelle_ids(scheme: Scheme, code: str) -> Select[Any]:
    return select(Mutuelle.id).where(Mutuelle.scheme_id == scheme.id, Mutuelle.code == code)


def _months_table(scheme: Scheme, months: list[Month]) -> Any:
    """Return the months as a CTE: n, the day counted (on) and the day before the month (eve), with grace."""
    grace = timedelta(days=scheme.grace_days)
    rows = [
        select(
            literal(n, Integer).label("n"),
            literal(m.as_of, Date).label("on"),
            literal(m.as_of - grace, Date).label("since"),
            literal(m.eve, Date).label("eve"),
            literal(m.eve - grace, Date).label("eve_since"),
            literal(m.last, Date).label("until"),
        )
        for n, m in enumerate(months)
    ]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).cte("months")


def _add_households(
    session: Session,
    scheme: Scheme,
    months: list[Month],
    grouping: Grouping | None,
    filters: ReportFilters,
    cells: dict[tuple[int, Any], Figures],
) -> None:
    """Count each month's households by eligibility and add what falls due in it (one statement)."""
    days = _months_table(scheme, months)
    households = select(Household.id).where(Household.scheme_id == scheme.id)
    if filters.commune:
        households = households.where(Household.commune == filters.commune)
    if filters.network:
        households = households.where(Household.network_id.in_(_network_ids(scheme, filters.network)))
    if filters.mutuelle:
        households = households.where(Household.mutuelle_id.in_(_mutuelle_ids(scheme, filters.mutuelle)))
    standing = standing_on_dates(days, households)
    width = len(_household_keys(grouping))
    query = (
        select(
            standing.c.n,
            *_key_labels(_household_keys(grouping)),
            standing.c.status,
            standing.c.eve_status,
            standing.c.eve_cover_end,
            days.c.until,
            standing.c.members,
            standing.c.balance,
            standing.c.fees,
            Plan.months,
            SubsidyCategory.share_bp,
        )
        .select_from(standing)
        .join(days, days.c.n == standing.c.n)
        .join(Household, Household.id == standing.c.household_id)
        .outerjoin(Plan, and_(Plan.scheme_id == Household.scheme_id, Plan.code == Household.plan))
        .outerjoin(
            SubsidyCategory,
            and_(SubsidyCategory.scheme_id == Household.scheme_id, SubsidyCategory.code == Household.subsidy_category),
        )
        .where(Household.enrolled_on <= days.c.on)
    )
    # OFFSET 0 keeps PostgreSQL from pulling the subquery up into the aggregate, which would work out each
    # household's standing once per figure that reads it instead of once.
    each = query.offset(0).subquery("each")
    price = period_price_column(
        literal(PremiumKind(scheme.premium_kind).value),
        literal(scheme.premium_amount, Integer),
        literal(scheme.premium_per_months, Integer),
        each.c.months,
        each.c.members,
        literal(scheme.id, Integer),
    )
    amount = next_payment_column(
        price, each.c.share_bp, literal(scheme.membership_fee, Integer), each.c.fees, each.c.balance
    )
    falls_due = or_(
        each.c.eve_status.in_([s.value for s in PAYING]),
        and_(each.c.eve_status.in_([s.value for s in PAID]), each.c.eve_cover_end <= each.c.until),
    )
    each_keys = [each.c[f"key{i}"] for i in range(width)]
    priced = select(
        each.c.n,
        *each_keys,
        each.c.status,
        case((falls_due, amount), else_=0).label("due"),
    ).subquery("priced")

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    status, due = priced.c.status, priced.c.due
    priced_keys = [priced.c[f"key{i}"] for i in range(width)]
    rows = session.execute(
        select(
            priced.c.n,
            *priced_keys,
            func.count(),
            count(status.in_([s.value for s in PAID])),
            count(covered_column(status, literal(scheme.grace_covered))),
            count(status == EligibilityStatus.WAITING.value),
            count(status == EligibilityStatus.GRACE.value),
            count(status == EligibilityStatus.LAPSED.value),
            count(status == EligibilityStatus.PENDING.value),
            count(status.in_([s.value for s in STOPPED])),
            count(due > 0),
            func.coalesce(func.sum(due), 0),
            count(and_(due > 0, status.in_([s.value for s in PAYING]))),
        ).group_by(priced.c.n, *priced_keys)
    )
    for row in rows:
        n, key, values = _split_key(row, width)
        figures = cells[(n, key)]
        (
            figures.enrolled,
            figures.paid,
            figures.covered,
            figures.waiting,
            figures.grace,
            figures.lapsed,
            figures.pending,
            figures.stopped,
            figures.due_households,
            figures.due,
            figures.not_renewed,
        ) = (int(v) for v in values)


def _month_index(column: Any, starts: list[Any]) -> ColumnElement[Any]:
    """Return which month (0…) a value falls in, given each month's start and the end of the last as `starts`."""
    return case(*[(column < starts[n + 1], literal(n, Integer)) for n in range(len(starts) - 1)], else_=None)


def _add_payments(
    session: Session,
    scheme: Scheme,
    months: list[Month],
    grouping: Grouping | None,
    filters: ReportFilters,
    cells: dict[tuple[int, Any], Figures],
) -> None:
    """Add each month's collections and matching by the payer's commune or network (one statement)."""
    zone = ZoneInfo(scheme.timezone)
    days = [m.first for m in months] + [months[-1].last + timedelta(days=1)]
    starts = [utc_start(d, zone) for d in days]
    paid_to = aliased(Network)
    commune = func.coalesce(Household.commune, paid_to.commune)
    network = func.coalesce(Household.network_id, Payment.network_id)
    keys: list[Any] = [literal(0, Integer)]
    if grouping is None:
        keys = [commune, network, Payment.mutuelle_id]
    elif grouping is Grouping.COMMUNE:
        keys = [commune]
    elif grouping is Grouping.NETWORK:
        keys = [network]
    elif grouping is Grouping.MUTUELLE:
        keys = [Payment.mutuelle_id]
    ours = or_(Payment.scheme_id == scheme.id, and_(Payment.scheme_id.is_(None), Payment.currency == scheme.currency))
    query = (
        select(
            _month_index(Payment.paid_at, starts).label("n"),
            *_key_labels(keys),
            case(
                (and_(Payment.scheme_id == scheme.id, Payment.status.in_(COLLECTED), Payment.confirmed), 1), else_=0
            ).label("collected"),
            Payment.amount,
            case((and_(Payment.match_rule.is_not(None), Payment.match_rule != MANUAL_RULE), 1), else_=0).label("auto"),
            case((Payment.match_rule == MANUAL_RULE, 1), else_=0).label("manual"),
            case((Payment.status.in_(UNRESOLVED), 1), else_=0).label("unresolved"),
        )
        .outerjoin(Household, Household.id == Payment.household_id)
        .outerjoin(paid_to, paid_to.id == Payment.network_id)
        .where(ours, Payment.paid_at >= starts[0], Payment.paid_at < starts[-1])
    )
    if filters.commune:
        query = query.where(commune == filters.commune)
    if filters.network:
        query = query.where(network.in_(_network_ids(scheme, filters.network)))
    if filters.mutuelle:
        query = query.where(Payment.mutuelle_id.in_(_mutuelle_ids(scheme, filters.mutuelle)))
    each = query.subquery("each")
    each_keys = [each.c[f"key{i}"] for i in range(len(keys))]
    rows = session.execute(
        select(
            each.c.n,
            *each_keys,
            func.coalesce(func.sum(each.c.collected * each.c.amount), 0),
            func.coalesce(func.sum(each.c.collected), 0),
            func.coalesce(func.sum(each.c.auto), 0),
            func.coalesce(func.sum(each.c.manual), 0),
            func.coalesce(func.sum(each.c.unresolved), 0),
        ).group_by(each.c.n, *each_keys)
    )
    for row in rows:
        n, row_key, (collected, payments, auto, manual, unresolved) = _split_key(row, len(keys))
        figures = cells[(n, row_key)]
        figures.collected, figures.payments = int(collected), int(payments)
        figures.matched_auto, figures.matched_manual, figures.unresolved = int(auto), int(manual), int(unresolved)


def _add_subsidies(
    session: Session,
    scheme: Scheme,
    months: list[Month],
    grouping: Grouping | None,
    filters: ReportFilters,
    cells: dict[tuple[int, Any], Figures],
) -> set[str]:
    """Add each month's subsidies booked per funder (one statement); return the funders met."""
    starts = [m.first for m in months] + [months[-1].last + timedelta(days=1)]
    query = (
        select(
            _month_index(LedgerEntry.effective_on, starts).label("n"),
            *_key_labels(_household_keys(grouping)),
            LedgerEntry.funder,
            LedgerEntry.amount,
        )
        .join(Account, Account.id == LedgerEntry.account_id)
        .join(Household, Household.id == Account.household_id)
        .where(
            Household.scheme_id == scheme.id,
            LedgerEntry.funder.is_not(None),
            LedgerEntry.effective_on >= starts[0],
            LedgerEntry.effective_on < starts[-1],
        )
    )
    if filters.commune:
        query = query.where(Household.commune == filters.commune)
    if filters.network:
        query = query.where(Household.network_id.in_(_network_ids(scheme, filters.network)))
    if filters.mutuelle:
        query = query.where(Household.mutuelle_id.in_(_mutuelle_ids(scheme, filters.mutuelle)))
    each = query.subquery("each")
    width = len(_household_keys(grouping))
    each_keys = [each.c[f"key{i}"] for i in range(width)]
    funders = set()
    for row in session.execute(
        select(each.c.n, *each_keys, each.c.funder, func.sum(each.c.amount)).group_by(
            each.c.n, *each_keys, each.c.funder
        )
    ):
        n, key, (funder, amount) = _split_key(row, width)
        cells[(n, key)].subsidies[str(funder)] = int(amount)
        funders.add(str(funder))
    return funders


def _labels(
    session: Session, scheme: Scheme, grouping: Grouping, keys: set[Any], choices: ReportChoices | None
) -> dict[Any, tuple[str | None, str]]:
    """Return each raw group key's (key shown in links, label): communes as they are, networks by code and name.

    The page's filter choices, when given, already hold the names (no statement).
    """
    if grouping is Grouping.SCHEME:
        return {0: (None, scheme.name)}
    if grouping is Grouping.COMMUNE:
        return {key: (key, key if key is not None else "(no commune)") for key in keys}
    if grouping is Grouping.MUTUELLE:
        if choices is not None:
            mutuelles = {m_id: (code, f"{name} ({code})") for m_id, (code, name) in choices.mutuelle_ids.items()}
        else:
            mutuelles = {m.id: (m.code, f"{m.name} ({m.code})") for m in scheme_mutuelles(session, scheme.id)}
        found: dict[Any, tuple[str | None, str]] = {
            key: mutuelles.get(key, (None, f"mutuelle #{key}")) for key in keys if key is not None
        }
        if None in keys:
            found[None] = (None, "(no mutuelle)")
        return found
    rows: Any = (
        ((n_id, code, name) for n_id, (code, name) in choices.network_ids.items())
        if choices is not None
        else session.execute(select(Network.id, Network.code, Network.name).where(Network.scheme_id == scheme.id))
    )
    names = {network_id: (code, f"{name} ({code})") for network_id, code, name in rows}
    found = {key: names.get(key, (None, f"network #{key}")) for key in keys if key is not None}
    if None in keys:
        found[None] = (None, "(no network)")
    return found


@dataclass(frozen=True)
class ReportChoices:
    """The communes and networks of a scheme, to filter its report on."""

    communes: list[str]
    networks: list[tuple[str, str]]  # (code, name)
    mutuelles: list[tuple[str, str]]  # (code, name), those the reader sees
    network_ids: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (code, name)
    mutuelle_ids: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (code, name)


def report_choices(session: Session, scheme: Scheme) -> ReportChoices:
    """Return the scheme's communes (of its households and networks) and networks (two small queries)."""
    communes = sorted(
        {
            c
            for c in session.scalars(
                select(Household.commune)
                .where(Household.scheme_id == scheme.id)
                .union(select(Network.commune).where(Network.scheme_id == scheme.id))
            )
            if c is not None
        }
    )
    rows = session.execute(
        select(Network.id, Network.code, Network.name).where(Network.scheme_id == scheme.id).order_by(Network.name)
    ).all()
    found = scheme_mutuelles(session, scheme.id)
    return ReportChoices(
        communes,
        [(code, name) for _, code, name in rows],
        [(m.code, m.name) for m in found],
        {n_id: (code, name) for n_id, code, name in rows},
        {m.id: (m.code, m.name) for m in found},
    )


# ---------------------------------------------------------------- snapshots (`models.views.report_snapshots`)

# A month is counted again by the clock while money paid late within grace can still change it (its last day
# within the scheme's grace days of today, the current month included) once its snapshot is this old.
SNAPSHOT_MAX_AGE = timedelta(hours=1)
# The clock counts ahead only schemes this large: a smaller one's report is counted from the records in seconds, so
# its readers see the figures of the moment (`flask --app app reports snapshot` counts any scheme asked).
SNAPSHOT_MIN_HOUSEHOLDS = 50_000


def read_snapshots(
    session: Session,
    scheme: Scheme,
    months: list[Month],
    grouping: Grouping,
    filters: ReportFilters,
    cells: dict[tuple[int, Any], Figures],
) -> tuple[dict[date, tuple[date, datetime]], set[str]]:
    """Add the figures of the months counted ahead, summed by group over their cells.

    One statement; return the months found (first day → the day counted and when) and the funders met.
    """
    index = {m.first: n for n, m in enumerate(months)}
    key: Any = literal(0, Integer)
    if grouping is Grouping.COMMUNE:
        key = ReportCell.commune
    elif grouping is Grouping.NETWORK:
        key = ReportCell.network_id
    elif grouping is Grouping.MUTUELLE:
        key = ReportCell.mutuelle_id
    joined = [ReportCell.scheme_id == ReportMonth.scheme_id, ReportCell.month == ReportMonth.month]
    if filters.commune:
        joined.append(ReportCell.commune == filters.commune)
    if filters.network:
        joined.append(ReportCell.network_id.in_(_network_ids(scheme, filters.network)))
    if filters.mutuelle:
        joined.append(ReportCell.mutuelle_id.in_(_mutuelle_ids(scheme, filters.mutuelle)))
    rows = session.execute(
        select(
            ReportMonth.month,
            ReportMonth.as_of,
            ReportMonth.computed_at,
            key.label("key"),
            ReportCell.funder,
            func.count(ReportCell.id),
            *[func.sum(getattr(ReportCell, name)) for name in CELL_FIGURES],
            func.sum(ReportCell.subsidy),
        )
        .outerjoin(ReportCell, and_(*joined))
        .where(
            ReportMonth.scheme_id == scheme.id,
            ReportMonth.month.in_(list(index)),
        )
        .group_by(ReportMonth.month, ReportMonth.as_of, ReportMonth.computed_at, key, ReportCell.funder)
    )
    stored: dict[date, tuple[date, datetime]] = {}
    funders: set[str] = set()
    for month, as_of, computed_at, row_key, funder, found, *values in rows:
        stored[month] = (as_of, computed_at)
        if not found:  # a month stored without a cell (of these filters)
            continue
        figures = cells[(index[month], row_key)]
        if funder is None:
            for name, value in zip(CELL_FIGURES, values, strict=False):
                setattr(figures, name, int(value))
        else:
            figures.subsidies[str(funder)] = int(values[-1])
            funders.add(str(funder))
    return stored, funders


def snapshot_month(session: Session, scheme: Scheme, first: date, now: datetime | None = None) -> ReportMonth:
    """Count a month's figures from the records, cell by cell, and store them in place of its snapshot; commit.

    The statements run first (a reader); the cells are then written in one transaction under the scheme's row
    lock, so two clocks refreshing the same month one after the other leave one snapshot.
    """
    today = scheme.local_today(now)
    month = month_of(first.replace(day=1), today)
    if month.first > today:
        raise ValueError(f"{month.label} has not started yet")
    started = perf_counter()
    cells, _ = compute_cells(session, scheme, [month], None, ReportFilters())
    seconds = perf_counter() - started
    zero = dict.fromkeys((*CELL_FIGURES, "subsidy"), 0)
    rows: list[dict[str, Any]] = []
    for (_, (commune, network_id, mutuelle_id)), figures in cells.items():
        where = {"scheme_id": scheme.id, "month": month.first, "commune": commune}
        where |= {"network_id": network_id, "mutuelle_id": mutuelle_id}
        rows.append(where | zero | {"funder": None} | {name: getattr(figures, name) for name in CELL_FIGURES})
        for funder, amount in figures.subsidies.items():
            rows.append(where | zero | {"funder": funder, "subsidy": amount})
    scheme_id = scheme.id
    session.commit()  # end the read: SQLite writes from a new snapshot
    begin_write(session)
    session.execute(select(Scheme.id).where(Scheme.id == scheme_id).with_for_update())
    session.execute(delete(ReportCell).where(ReportCell.scheme_id == scheme_id, ReportCell.month == month.first))
    session.execute(delete(ReportMonth).where(ReportMonth.scheme_id == scheme_id, ReportMonth.month == month.first))
    stored = ReportMonth(scheme_id=scheme_id, month=month.first, as_of=month.as_of, computed_at=now or utcnow())
    stored.seconds = round(seconds, 3)
    session.add(stored)
    if rows:
        session.execute(insert(ReportCell), rows)
    session.commit()
    return stored


def months_to_snapshot(session: Session, scheme: Scheme, now: datetime | None = None) -> list[date]:
    """Return the first days of the months to count again, newest first, among the last `MAX_MONTHS` (once the scheme
    has a household: months before its first enrolment too, so a page of two years reads every month counted ahead).

    Those without a snapshot or whose snapshot counted another day than the report would (a month counted before
    it ended), and those money paid late within grace can still change, once their snapshot is `SNAPSHOT_MAX_AGE`
    old.
    """
    now = now or utcnow()
    today = scheme.local_today(now)
    current = today.replace(day=1)
    since = session.scalar(select(func.min(Household.enrolled_on)).where(Household.scheme_id == scheme.id))
    if since is None:
        return []
    months = [month_of(current - relativedelta(months=n), today) for n in range(MAX_MONTHS)]
    stored = {
        first: (as_of, computed_at)
        for first, as_of, computed_at in session.execute(
            select(ReportMonth.month, ReportMonth.as_of, ReportMonth.computed_at).where(
                ReportMonth.scheme_id == scheme.id
            )
        )
    }
    open_since = today - timedelta(days=scheme.grace_days)
    wanted = []
    for month in months:
        as_of, computed_at = stored.get(month.first, (None, None))
        if as_of != month.as_of or (month.last >= open_since and computed_at <= now - SNAPSHOT_MAX_AGE):
            wanted.append(month.first)
    return wanted


def refresh_snapshots(
    session: Session, scheme: Scheme, now: datetime | None = None, *, every: bool = False
) -> list[ReportMonth]:
    """Count again the scheme's months that need it (`months_to_snapshot`; `every`: all of them), newest first.

    Each month is committed as it is done, so a run cut short keeps the months it finished.
    """
    now = now or utcnow()
    scheme_id = scheme.id
    if every:
        today = scheme.local_today(now)
        firsts = [today.replace(day=1) - relativedelta(months=n) for n in range(MAX_MONTHS)]
    else:
        firsts = months_to_snapshot(session, scheme, now)
    done = []
    for first in firsts:
        current = session.get(Scheme, scheme_id)
        assert current is not None
        done.append(snapshot_month(session, current, first, now))
    return done
