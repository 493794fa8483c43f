"""A campaign's progress day by day, from its first day to a day asked: the funnel of `campaign_progress` each day.

Each day's figures are those `campaign_progress` gives for that day — the enrolments submitted from the campaign's
first day to that day, by their state at its end (the scheme's time zone), cumulative — for the whole campaign or
one network or commune. Two statements, whatever the number of days:

- one row per enrolment: the day it was submitted, decided and first paid (the first allocation of the household's
  own money, as `paid` reads it), bucketed by day here;
- the households covered on each day, counted and grouped by day in SQL over a table of the days
  (`models.coverage.standing.standing_on_dates`, the eligibility rules as `campaign_progress` applies them).

Both are ORM statements, so a reader kept to some mutuelles (`models.views.scope`) counts only their networks.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, DateTime, Integer, and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from models.coverage.money import Allocation
from models.coverage.standing import covered_column, standing_on_dates, without_jit
from models.enrolment.campaigns import Campaign
from models.enrolment.tables import Enrolment, EnrolmentMember, EnrolmentStatus, HouseholdChange
from models.members.household import Account, Network
from models.schemes.scheme import utc_start
from models.views.campaigns import SUBSIDY_REF_PREFIX, Funnel, Stage

MAX_DAYS = 400  # a longer campaign shows its last 400 days (the counts still start on its first day)
STAGE_NAMES = ("submitted", "validated", "rejected", "paid", "covered")


class UnknownFilter(ValueError):
    """The network or commune asked for is not one of the campaign's scheme (the reader sees)."""


@dataclass(frozen=True)
class Day:
    """A day's cumulative funnel (its `target` the line's)."""

    day: date
    funnel: Funnel


@dataclass
class CampaignDays:
    """A campaign's funnel on each day from its first to `until`, for all of it or one network or commune."""

    campaign_id: int
    name: str
    network: str | None  # the code filtered on
    commune: str | None
    target: int
    days: list[Day]

    @property
    def top(self) -> int:
        """Return the beneficiaries a chart's full height stands for: the target, or more if validated exceed it."""
        highest = max((d.funnel.validated.beneficiaries for d in self.days), default=0)
        return max(self.target, highest, 1)


def campaign_days(
    session: Session,
    campaign: Campaign,
    until: date,
    *,
    network: str | None = None,
    commune: str | None = None,
) -> CampaignDays:
    """Return the campaign's funnel each day from its first day to `until` (at most its last), maybe filtered."""
    scheme = campaign.scheme
    zone = ZoneInfo(scheme.timezone)
    last = min(until, campaign.end_on)
    first = max(campaign.start_on, last - timedelta(days=MAX_DAYS - 1))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)] if last >= first else []
    without_jit(session)
    networks = list(session.scalars(select(Network).where(Network.scheme_id == campaign.scheme_id)))
    ours = _ours(campaign, zone, last)
    chosen: list[Network] | None = None
    if network:
        chosen = [n for n in networks if n.code.upper() == network.strip().upper()]
        if not chosen:
            raise UnknownFilter(f"no network {network}")
        ours.append(Enrolment.network_id == chosen[0].id)
    elif commune:
        chosen = [n for n in networks if (n.commune or "").lower() == commune.strip().lower()]
        of_commune = [Enrolment.network_id.in_([n.id for n in chosen])] if chosen else []
        ours.append(or_(*of_commune, and_(Enrolment.network_id.is_(None), Enrolment.commune == commune.strip())))
    seen = {n.id for n in networks}  # the reader's networks: another mutuelle's targets are not counted
    kept = {n.id for n in chosen} if chosen is not None else seen
    target = sum(t.beneficiaries for t in campaign.targets if t.network_id in kept and t.network_id in seen)
    if not days:
        return CampaignDays(campaign.id, campaign.name, network, commune, target, [])

    members = (
        select(EnrolmentMember.enrolment_id, func.count().label("n"))
        .group_by(EnrolmentMember.enrolment_id)
        .subquery("beneficiaries")
    )
    size = func.coalesce(members.c.n, 0)
    first_paid = (
        select(func.min(Allocation.effective_on))
        .select_from(Allocation)
        .join(Account, Account.id == Allocation.account_id)
        .where(
            Account.household_id == Enrolment.household_id,
            Allocation.amount > 0,
            Allocation.reversed_at.is_(None),
            Allocation.source_ref.not_like(f"{SUBSIDY_REF_PREFIX}%"),
        )
        .correlate(Enrolment)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Enrolment.created_at, Enrolment.status, Enrolment.decided_at, size, first_paid)
        .select_from(Enrolment)
        .outerjoin(members, members.c.enrolment_id == Enrolment.id)
        .where(*ours)
    ).all()
    # Each enrolment adds to the day it reached a stage; the days' sums are the cumulative counts.
    steps: dict[str, dict[date, list[int]]] = {name: defaultdict(lambda: [0, 0]) for name in STAGE_NAMES}

    def add(stage: str, day: date, people: int) -> None:
        step = steps[stage][max(day, first)]
        step[0] += 1
        step[1] += people

    def local(instant: datetime) -> date:
        return instant.replace(tzinfo=UTC).astimezone(zone).date()

    for created_at, status, decided_at, people, paid_on in rows:
        people = int(people)
        add("submitted", local(created_at), people)
        if decided_at is None or status not in (EnrolmentStatus.VALIDATED, EnrolmentStatus.REJECTED):
            continue
        decided = local(decided_at)
        if status == EnrolmentStatus.VALIDATED:
            add("validated", decided, people)
            if paid_on is not None:
                add("paid", max(decided, paid_on), people)
        else:
            add("rejected", decided, people)

    covered = _covered_by_day(session, campaign, ours, days, zone, size, members)
    result: list[Day] = []
    running = {name: [0, 0] for name in STAGE_NAMES if name != "covered"}
    for n, day in enumerate(days):
        funnel = Funnel(target=target)
        for name, total in running.items():
            step = steps[name].get(day)
            if step is not None:
                total[0] += step[0]
                total[1] += step[1]
            setattr(funnel, name, Stage(total[0], total[1]))
        households, people = covered.get(n, (0, 0))
        funnel.covered = Stage(households, people)
        result.append(Day(day, funnel))
    return CampaignDays(campaign.id, campaign.name, network, commune, target, result)


def _ours(campaign: Campaign, zone: ZoneInfo, last: date) -> list[ColumnElement[bool]]:
    """Return the conditions of the enrolments a campaign counts (as `campaign_progress`), submitted by `last`."""
    ours = [
        Enrolment.scheme_id == campaign.scheme_id,
        Enrolment.created_at >= utc_start(campaign.start_on, zone),
        Enrolment.created_at < utc_start(last + timedelta(days=1), zone),
        Enrolment.id.not_in(select(HouseholdChange.enrolment_id)),
    ]
    if campaign.mutuelle_id is not None:
        ours.append(Enrolment.mutuelle_id == campaign.mutuelle_id)
    return ours


def _covered_by_day(
    session: Session,
    campaign: Campaign,
    ours: list[ColumnElement[bool]],
    days: list[date],
    zone: ZoneInfo,
    size: Any,
    members: Any,
) -> dict[int, tuple[int, int]]:
    """Return, per day's index, the households (and beneficiaries) validated by its end and covered that day."""
    scheme = campaign.scheme
    grace = timedelta(days=scheme.grace_days)
    rows = [
        select(
            literal(n, Integer).label("n"),
            literal(day, Date).label("on"),
            literal(day - grace, Date).label("since"),
            literal(day, Date).label("eve"),
            literal(day - grace, Date).label("eve_since"),
            literal(utc_start(day + timedelta(days=1), zone), DateTime).label("before"),
        )
        for n, day in enumerate(days)
    ]
    dates = (union_all(*rows) if len(rows) > 1 else rows[0]).cte("campaign_days")
    validated = [*ours, Enrolment.status == EnrolmentStatus.VALIDATED, Enrolment.household_id.is_not(None)]
    households = select(Enrolment.household_id).where(*validated)
    standing = standing_on_dates(dates, households)
    found = session.execute(
        select(standing.c.n, func.count(), func.coalesce(func.sum(size), 0))
        .select_from(standing)
        .join(dates, dates.c.n == standing.c.n)
        .join(Enrolment, Enrolment.household_id == standing.c.household_id)
        .outerjoin(members, members.c.enrolment_id == Enrolment.id)
        .where(
            *validated,
            Enrolment.decided_at < dates.c.before,
            covered_column(standing.c.status, literal(scheme.grace_covered)),
        )
        .group_by(standing.c.n)
    ).all()
    return {int(n): (int(households), int(people)) for n, households, people in found}


DAY_CSV_COLUMNS = [
    "day",
    "target_beneficiaries",
    *(f"{stage}_{unit}" for stage in STAGE_NAMES for unit in ("households", "beneficiaries")),
    "validated_percent_of_target",
    "covered_percent_of_target",
]


def day_rows(days: CampaignDays) -> list[list[str]]:
    """Return the days as CSV rows (DAY_CSV_COLUMNS), the first day first."""
    rows = []
    for each in days.days:
        f = each.funnel
        stages = [str(getattr(getattr(f, s), u)) for s in STAGE_NAMES for u in ("households", "beneficiaries")]
        percents = [("" if p is None else f"{p:.1f}") for p in (f.percent("validated"), f.percent("covered"))]
        rows.append([each.day.isoformat(), str(f.target), *stages, *percents])
    return rows
