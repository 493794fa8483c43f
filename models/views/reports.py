"""Figures of the admin overview and the USSD page, each computed in one bounded aggregate query."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models.base import MessageDirection, MessageStatus, PaymentStatus
from models.messaging.message import Message, UssdSessionRecord
from models.payments.payment import Payment
from models.schemes.scheme import Scheme, utc_start

CHART_DAYS = 30
# Money the scheme holds or is about to: confirmed payments that were not rejected or given back.
COLLECTED = (
    PaymentStatus.RECEIVED,
    PaymentStatus.MATCHED,
    PaymentStatus.ALLOCATED,
    PaymentStatus.UNMATCHED,
    PaymentStatus.CONFLICT,
)
SMS_FAILED = (MessageStatus.FAILED, MessageStatus.REJECTED)
USSD_COMPLETED = "Success"


@dataclass
class Collections:
    """Collections of one scheme (or of payments not yet tied to one) in one currency."""

    scheme: str
    currency: str
    timezone: str = "UTC"  # the days below are the scheme's (payments not tied to a scheme: UTC)
    day: date | None = None  # today in that time zone
    today: int = 0
    today_count: int = 0
    month: int = 0
    month_count: int = 0
    daily: list[tuple[date, int]] = field(default_factory=list)  # the last CHART_DAYS days, oldest first

    @property
    def daily_max(self) -> int:
        """Return the largest day of the chart (at least 1, to scale bars)."""
        return max([amount for _, amount in self.daily] + [1])


@dataclass(frozen=True)
class Backlog:
    """Payments waiting for staff in one status: how many, and since when."""

    status: str
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class Overview:
    """The overview page's figures."""

    today: date
    collections: list[Collections]
    matched_auto: int
    matched_manual: int
    backlogs: list[Backlog]
    sms_failed_7d: int
    unresolved: int = 0  # payments of the same 30 days still in suspense or in conflict

    @property
    def auto_match_percent(self) -> float | None:
        """Return the share of payments the worker's rules matched, in percent (None: no payment yet).

        Out of every payment that needed matching in the window: those matched by rules or by hand, and those
        still in suspense or in conflict (a payment the rules could not place is not a success).
        """
        total = self.matched_auto + self.matched_manual + self.unresolved
        return None if total == 0 else 100.0 * self.matched_auto / total


def _as_date(value: object) -> date:
    # PostgreSQL's date() returns a date, SQLite's a 'YYYY-MM-DD' string.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def overview(session: Session, now: datetime) -> Overview:
    """Return today's and this month's collections per scheme, matching, backlogs and SMS failures.

    A payment counts on its payment date in its scheme's time zone (one not tied to a scheme yet: UTC), so
    "today" and "this month" are the scheme's own; `now` is naive UTC.
    """
    today = now.date()
    names = {sid: (name, tz) for sid, name, tz in session.execute(select(Scheme.id, Scheme.name, Scheme.timezone))}
    by_key: dict[tuple[int | None, str], Collections] = {}
    owners: list[int | None] = [*names, None]
    for scheme_id in owners:
        name, timezone = names[scheme_id] if scheme_id is not None else ("not matched to a scheme yet", "UTC")
        _scheme_collections(session, now, scheme_id, name, timezone, by_key)
    thirty_days_ago = now - timedelta(days=30)
    manual = case((Payment.match_rule == "manual", 1), else_=0)
    unresolved = case((Payment.status.in_([PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT]), 1), else_=0)
    matched = case((Payment.match_rule.is_not(None), 1), else_=0)
    auto_row = session.execute(
        select(
            func.coalesce(func.sum(matched), 0),
            func.coalesce(func.sum(manual), 0),
            func.coalesce(func.sum(unresolved), 0),
        ).where(Payment.created_at >= thirty_days_ago)
    ).one()
    matched_manual = int(auto_row[1])
    matched_auto = int(auto_row[0]) - matched_manual

    waiting = dict.fromkeys((PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT), (0, None))
    for status, count, oldest in session.execute(
        select(Payment.status, func.count(), func.min(Payment.created_at))
        .where(Payment.status.in_(list(waiting)))
        .group_by(Payment.status)
    ):
        waiting[status] = (int(count), oldest)
    backlogs = [Backlog(status.value, count, oldest) for status, (count, oldest) in waiting.items()]

    sms_failed = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.direction == MessageDirection.OUTBOUND,
            Message.created_at >= now - timedelta(days=7),
            Message.status.in_(SMS_FAILED),
        )
    )
    collections = sorted(by_key.values(), key=lambda c: (c.scheme, c.currency))
    return Overview(
        today, collections, matched_auto, matched_manual, backlogs, int(sms_failed or 0), unresolved=int(auto_row[2])
    )


def _scheme_collections(
    session: Session,
    now: datetime,
    scheme_id: int | None,
    name: str,
    timezone: str,
    by_key: dict[tuple[int | None, str], Collections],
) -> None:
    """Add one scheme's collections by currency, on payment days in its time zone (one query)."""
    zone = ZoneInfo(timezone)
    local_now = now.replace(tzinfo=UTC).astimezone(zone)
    today = local_now.date()
    month_start = today.replace(day=1)
    chart_start = today - timedelta(days=CHART_DAYS - 1)
    first = min(month_start, chart_start)
    since = utc_start(first, zone)
    # The zone's offset now (the schemes' zones keep one all year: Dakar, Phnom Penh, Nairobi).
    offset = local_now.utcoffset() or timedelta(0)
    if session.get_bind().dialect.name == "sqlite":
        day = func.date(Payment.paid_at, f"{int(offset.total_seconds())} seconds")
    else:
        day = func.date(Payment.paid_at + offset)
    owner = Payment.scheme_id == scheme_id if scheme_id is not None else Payment.scheme_id.is_(None)
    rows = session.execute(
        select(Payment.currency, day, func.sum(Payment.amount), func.count())
        .where(owner, Payment.paid_at >= since, Payment.status.in_(COLLECTED), Payment.confirmed.is_(True))
        .group_by(Payment.currency, day)
    ).all()
    daily: dict[str, dict[date, int]] = {}
    for currency, raw_day, amount, count in rows:
        item = by_key.setdefault((scheme_id, currency), Collections(name, currency, timezone, today))
        on = _as_date(raw_day)
        if on == today:
            item.today += int(amount)
            item.today_count += int(count)
        if on >= month_start:
            item.month += int(amount)
            item.month_count += int(count)
        if on >= chart_start:
            daily.setdefault(currency, {})[on] = daily.get(currency, {}).get(on, 0) + int(amount)
    for (owner_id, currency), item in by_key.items():
        if owner_id != scheme_id:
            continue
        per_day = daily.get(currency, {})
        item.daily = [
            (chart_start + timedelta(days=n), per_day.get(chart_start + timedelta(days=n), 0))
            for n in range(CHART_DAYS)
        ]


@dataclass(frozen=True)
class UssdFunnel:
    """USSD sessions over a window: how many, how many completed, and where the others stopped."""

    total: int
    completed: int
    drop_offs: list[tuple[str, int]]  # (last screen, sessions not completed there), most first

    @property
    def completion_percent(self) -> float | None:
        """Return the completion rate in percent (None: no session)."""
        return None if self.total == 0 else 100.0 * self.completed / self.total


def ussd_funnel(session: Session, start: datetime, end: datetime) -> UssdFunnel:
    """Return the completion rate and the drop-off by last screen of sessions created in [start, end)."""
    window = (UssdSessionRecord.created_at >= start, UssdSessionRecord.created_at < end)
    completed = case((UssdSessionRecord.status == USSD_COMPLETED, 1), else_=0)
    total, done = session.execute(select(func.count(), func.coalesce(func.sum(completed), 0)).where(*window)).one()
    screen = func.coalesce(UssdSessionRecord.last_screen, "(unknown)")
    drops = session.execute(
        select(screen, func.count())
        .where(*window, UssdSessionRecord.status != USSD_COMPLETED)
        .group_by(screen)
        .order_by(func.count().desc())
        .limit(30)
    ).all()
    return UssdFunnel(int(total), int(done), [(str(name), int(count)) for name, count in drops])
