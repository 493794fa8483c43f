"""Figures of the admin overview and the USSD page, each computed in one bounded aggregate query."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models.base import MessageDirection, MessageStatus, PaymentStatus
from models.messaging import Message, UssdSessionRecord
from models.payment import Payment
from models.scheme import Scheme

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

    @property
    def auto_match_percent(self) -> float | None:
        """Return the share of matches made by the worker's rules, in percent (None: no match yet)."""
        total = self.matched_auto + self.matched_manual
        return None if total == 0 else 100.0 * self.matched_auto / total


def _as_date(value: object) -> date:
    # PostgreSQL's date() returns a date, SQLite's a 'YYYY-MM-DD' string.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def overview(session: Session, now: datetime) -> Overview:
    """Return today's and this month's collections per scheme, matching, backlogs and SMS failures (UTC days)."""
    today = now.date()
    month_start = today.replace(day=1)
    chart_start = today - timedelta(days=CHART_DAYS - 1)
    since = datetime.combine(min(month_start, chart_start), datetime.min.time())
    day = func.date(Payment.paid_at)
    rows = session.execute(
        select(Payment.scheme_id, Payment.currency, day, func.sum(Payment.amount), func.count())
        .where(Payment.paid_at >= since, Payment.status.in_(COLLECTED), Payment.confirmed.is_(True))
        .group_by(Payment.scheme_id, Payment.currency, day)
    ).all()
    names = dict(session.execute(select(Scheme.id, Scheme.name)).tuples().all())
    by_key: dict[tuple[int | None, str], Collections] = {}
    daily: dict[tuple[int | None, str], dict[date, int]] = {}
    for scheme_id, currency, raw_day, amount, count in rows:
        key = (scheme_id, currency)
        item = by_key.setdefault(key, Collections(names.get(scheme_id, "not matched to a scheme yet"), currency))
        on = _as_date(raw_day)
        if on == today:
            item.today += int(amount)
            item.today_count += int(count)
        if on >= month_start:
            item.month += int(amount)
            item.month_count += int(count)
        if on >= chart_start:
            daily.setdefault(key, {})[on] = daily.get(key, {}).get(on, 0) + int(amount)
    for key, item in by_key.items():
        per_day = daily.get(key, {})
        item.daily = [
            (chart_start + timedelta(days=n), per_day.get(chart_start + timedelta(days=n), 0))
            for n in range(CHART_DAYS)
        ]

    thirty_days_ago = now - timedelta(days=30)
    manual = case((Payment.match_rule == "manual", 1), else_=0)
    auto_row = session.execute(
        select(func.count(Payment.match_rule), func.coalesce(func.sum(manual), 0)).where(
            Payment.match_rule.is_not(None), Payment.created_at >= thirty_days_ago
        )
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
    return Overview(today, collections, matched_auto, matched_manual, backlogs, int(sms_failed or 0))


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
