"""A campaign's progress on a day: from enrolled to covered, per network, commune and campaign, against target.

The enrolments counted are the campaign's scheme's (its mutuelle's, if it has one) new households submitted from the
campaign's first day to the day asked (household changes are not enrolment), each counted as a household and as
its members (beneficiaries), by the state they were in at the end of that day (the scheme's time zone):

- **submitted**: every one of them; **validated** / **rejected**: decided so by then;
- **paid**: validated, and money the household (or its network for it) paid was allocated to its account,
  effective by then (its first payment made; a funder's booking of a subsidised period is not a payment);
- **covered**: validated, and the household is covered that day (`models.coverage.standing.status_column`: the
  rules of `eligibility_on` in SQL).

A network **falls behind** when its validated beneficiaries are a smaller share of its target than the share of the
campaign's days gone by. Each network's own money over the campaign (`models.views.network_money`: collected, paid
for its members, balance, savings against target) is counted from the campaign's first day to the day asked (its
last day once it has ended). The counts are one grouped statement; the households validated but **never paid** another:
those nothing was allocated to by then (neither a payment nor, for a subsidised household, a funder's booking).
Both are ORM statements, so a reader kept to some mutuelles (`models.views.scope`) sees only their networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, and_, case, exists, func, literal, select
from sqlalchemy.orm import Session

from models.coverage.money import Allocation
from models.coverage.periods import subsidy_source_ref
from models.coverage.standing import covered_column, status_column, without_jit
from models.enrolment.campaigns import Campaign, CampaignSession
from models.enrolment.tables import Enrolment, EnrolmentMember, EnrolmentStatus, HouseholdChange
from models.members.household import Account, Household, Network
from models.schemes.scheme import utc_start
from models.views.network_money import NetworkMoney, add_up, networks_money

# A funder's booking of a subsidised period is no payment by the household.
SUBSIDY_REF_PREFIX = subsidy_source_ref(0, date.min).split(":", 1)[0] + ":"


@dataclass
class Stage:
    """Households and their beneficiaries (members) at one stage of the funnel."""

    households: int = 0
    beneficiaries: int = 0


@dataclass
class Funnel:
    """A line's enrolments from submitted to covered, and its target of beneficiaries (0: none set)."""

    submitted: Stage = field(default_factory=Stage)
    validated: Stage = field(default_factory=Stage)
    rejected: Stage = field(default_factory=Stage)
    paid: Stage = field(default_factory=Stage)
    covered: Stage = field(default_factory=Stage)
    target: int = 0

    def add(self, other: Funnel) -> None:
        """Add another line's figures to these."""
        for item in fields(self):
            if item.name == "target":
                continue
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            mine.households += theirs.households
            mine.beneficiaries += theirs.beneficiaries
        self.target += other.target

    def percent(self, stage: str) -> float | None:
        """Return a stage's beneficiaries as a percentage of the target (None without a target)."""
        if self.target <= 0:
            return None
        reached: Stage = getattr(self, stage)
        return 100.0 * reached.beneficiaries / self.target


STAGES = ("submitted", "validated", "paid", "covered")  # the funnel shown, rejected beside it


@dataclass
class Line:
    """One network's (or commune's) progress; `behind` when validated lag the share of days gone by."""

    key: str | None  # the network's code, or the commune (None: enrolments of no network)
    label: str
    commune: str | None
    funnel: Funnel
    behind: bool = False


@dataclass(frozen=True)
class NeverPaid:
    """A household the campaign validated whose cover nothing funded yet (no payment, no funder's booking)."""

    household_id: int
    household_no: str
    network: str | None
    commune: str
    validated_on: date | None
    beneficiaries: int


@dataclass(frozen=True)
class PlannedSession:
    """A planned collection session as the page lists it."""

    held_on: date
    place: str
    network: str
    collector: str | None


@dataclass
class CampaignProgress:
    """A campaign's progress on a day, by network and commune, with the total and what is left to chase."""

    campaign_id: int
    name: str
    scheme_name: str
    start_on: date
    end_on: date
    as_of: date
    elapsed_percent: float
    networks: list[Line]
    communes: list[Line]
    total: Funnel
    never_paid: list[NeverPaid]
    sessions: list[PlannedSession]
    money: list[NetworkMoney] = field(default_factory=list)  # the networks' own money, in the order of `networks`

    @property
    def behind(self) -> list[Line]:
        """Return the networks falling behind."""
        return [line for line in self.networks if line.behind]


def elapsed_percent(start_on: date, end_on: date, on: date) -> float:
    """Return the share of a campaign's days gone by at the end of a day, in percent (0 before, 100 after)."""
    if on < start_on:
        return 0.0
    days = (end_on - start_on).days + 1
    return 100.0 * min(days, (on - start_on).days + 1) / days


def is_behind(funnel: Funnel, elapsed: float) -> bool:
    """Return whether validated beneficiaries are a smaller share of the target than the days gone by."""
    done = funnel.percent("validated")
    return done is not None and elapsed > 0 and done < elapsed


def _allocated(on: date, *, payments_only: bool) -> ColumnElement[bool]:
    """Return whether money was allocated to the enrolment's household by a day (a payment's, or also a funder's)."""
    conditions = [
        Account.household_id == Enrolment.household_id,
        Allocation.account_id == Account.id,
        Allocation.amount > 0,
        Allocation.reversed_at.is_(None),
        Allocation.effective_on <= on,
    ]
    if payments_only:
        conditions.append(Allocation.source_ref.not_like(f"{SUBSIDY_REF_PREFIX}%"))
    return exists().where(*conditions)


def campaign_progress(session: Session, campaign: Campaign, on: date) -> CampaignProgress:
    """Return the campaign's progress at the end of a day (a day after its end counts what it ended with)."""
    scheme = campaign.scheme
    zone = ZoneInfo(scheme.timezone)
    until = min(on, campaign.end_on)
    since, before = utc_start(campaign.start_on, zone), utc_start(until + timedelta(days=1), zone)
    without_jit(session)
    members = (
        select(EnrolmentMember.enrolment_id, func.count().label("n"))
        .group_by(EnrolmentMember.enrolment_id)
        .subquery("beneficiaries")
    )
    size = func.coalesce(members.c.n, 0)
    validated = and_(Enrolment.status == EnrolmentStatus.VALIDATED, Enrolment.decided_at < before)
    rejected = and_(Enrolment.status == EnrolmentStatus.REJECTED, Enrolment.decided_at < before)
    paid = and_(validated, _allocated(on, payments_only=True))
    funded = _allocated(on, payments_only=False)
    day: ColumnElement[Any] = literal(on, Date)
    status = status_column(day, literal(on - timedelta(days=scheme.grace_days), Date))
    covered = and_(validated, covered_column(status, literal(scheme.grace_covered)))
    ours = [
        Enrolment.scheme_id == campaign.scheme_id,
        Enrolment.created_at >= since,
        Enrolment.created_at < before,
        Enrolment.id.not_in(select(HouseholdChange.enrolment_id)),
    ]
    if campaign.mutuelle_id is not None:
        ours.append(Enrolment.mutuelle_id == campaign.mutuelle_id)

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    def beneficiaries(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, size), else_=0)), 0)

    conditions: list[ColumnElement[bool]] = [literal(True), validated, rejected, paid, covered]
    rows = session.execute(
        select(
            Enrolment.network_id,
            Enrolment.commune,
            *(part for c in conditions for part in (count(c), beneficiaries(c))),
        )
        .select_from(Enrolment)
        .outerjoin(members, members.c.enrolment_id == Enrolment.id)
        .outerjoin(Household, Household.id == Enrolment.household_id)
        .where(*ours)
        .group_by(Enrolment.network_id, Enrolment.commune)
    ).all()

    networks = {n.id: n for n in session.scalars(select(Network).where(Network.scheme_id == campaign.scheme_id))}
    by_network: dict[int | None, Funnel] = {}
    communes_of_none: dict[str, Funnel] = {}
    for network_id, commune, *values in rows:
        funnel = Funnel()
        for name, (households, people) in zip(
            ("submitted", "validated", "rejected", "paid", "covered"),
            zip(values[::2], values[1::2], strict=True),
            strict=True,
        ):
            setattr(funnel, name, Stage(int(households), int(people)))
        if network_id is None:
            communes_of_none.setdefault(commune, Funnel()).add(funnel)
        by_network.setdefault(network_id, Funnel()).add(funnel)
    for target in campaign.targets:  # the scope keeps them to the reader's networks
        by_network.setdefault(target.network_id, Funnel()).target += target.beneficiaries

    elapsed = elapsed_percent(campaign.start_on, campaign.end_on, on)
    lines: list[Line] = []
    communes: dict[str | None, Funnel] = {}
    for network_id, funnel in by_network.items():
        network = networks.get(network_id) if network_id is not None else None
        if network_id is not None and network is None:
            continue  # another mutuelle's network (a reader kept to some mutuelles)
        if network is None:
            lines.append(Line(None, "", None, funnel))
            for commune, part in communes_of_none.items():
                communes.setdefault(commune, Funnel()).add(part)
            continue
        lines.append(Line(network.code, network.name, network.commune, funnel, is_behind(funnel, elapsed)))
        communes.setdefault(network.commune, Funnel()).add(funnel)
    lines.sort(key=lambda line: (line.key is None, (line.commune or "").lower(), line.label.lower()))
    commune_lines = [
        Line(commune, commune or "", commune, funnel, is_behind(funnel, elapsed))
        for commune, funnel in sorted(communes.items(), key=lambda item: (item[0] is None, (item[0] or "").lower()))
    ]
    total = Funnel()
    for line in lines:
        total.add(line.funnel)
    shown = [networks[n] for n in by_network if n is not None and n in networks]
    money = networks_money(session, shown, until, since=campaign.start_on)
    by_code = {m.code: m for m in money.values()}
    return CampaignProgress(
        campaign_id=campaign.id,
        name=campaign.name,
        scheme_name=scheme.name,
        start_on=campaign.start_on,
        end_on=campaign.end_on,
        as_of=on,
        elapsed_percent=elapsed,
        networks=lines,
        communes=commune_lines,
        total=total,
        never_paid=_never_paid(session, ours, validated, funded, networks, size, members),
        sessions=_sessions(session, campaign),
        money=[by_code[line.key] for line in lines if line.key in by_code],
    )


def _never_paid(
    session: Session,
    ours: list[ColumnElement[bool]],
    validated: ColumnElement[bool],
    funded: ColumnElement[bool],
    networks: dict[int, Network],
    size: Any,
    members: Any,
) -> list[NeverPaid]:
    """Return the households the campaign validated whose cover nobody funded, oldest validation first."""
    rows = session.execute(
        select(
            Household.id, Household.household_no, Enrolment.network_id, Enrolment.commune, Enrolment.decided_at, size
        )
        .select_from(Enrolment)
        .join(Household, Household.id == Enrolment.household_id)
        .outerjoin(members, members.c.enrolment_id == Enrolment.id)
        .where(*ours, validated, ~funded)
        .order_by(Enrolment.decided_at, Enrolment.id)
    ).all()
    return [
        NeverPaid(
            household_id=household_id,
            household_no=household_no,
            network=networks[network_id].code if network_id in networks else None,
            commune=commune,
            validated_on=decided_at.date() if decided_at is not None else None,
            beneficiaries=int(people),
        )
        for household_id, household_no, network_id, commune, decided_at, people in rows
    ]


def _sessions(session: Session, campaign: Campaign) -> list[PlannedSession]:
    rows = session.scalars(
        select(CampaignSession)
        .where(CampaignSession.campaign_id == campaign.id)
        .order_by(CampaignSession.held_on, CampaignSession.id)
    )
    return [
        PlannedSession(s.held_on, s.place, s.network.code, s.collector.name if s.collector is not None else None)
        for s in rows
    ]


# The networks' own money over the campaign (`models.views.network_money`); a commune's and the campaign's add up
# their networks'. Amounts are whole units of the scheme's currency; the percentage is saved ÷ savings target.
MONEY_COLUMNS = [
    "network_payments",
    "network_payments_amount",
    "network_payments_taken_back_amount",
    "collected_amount",
    "paid_for_members_households",
    "paid_for_members_periods",
    "paid_for_members_amount",
    "network_balance",
    "grant_amount",
    "savings_target",
    "saved",
    "saved_percent_of_target",
]

CSV_COLUMNS = [
    "level",
    "commune",
    "network",
    "network_name",
    "target_beneficiaries",
    *(
        f"{stage}_{unit}"
        for stage in ("submitted", "validated", "rejected", "paid", "covered")
        for unit in ("households", "beneficiaries")
    ),
    "validated_percent_of_target",
    "covered_percent_of_target",
    "behind",
    *MONEY_COLUMNS,
]


def progress_rows(progress: CampaignProgress) -> list[list[str]]:
    """Return the progress as CSV rows (CSV_COLUMNS): each network, each commune, then the campaign."""

    money = {m.code: m for m in progress.money}

    def cash(items: list[NetworkMoney]) -> list[str]:
        if not items:
            return [""] * len(MONEY_COLUMNS)
        t = add_up(items)
        percent = t.saved_percent()
        return [
            str(v)
            for v in (
                t.received.count,
                t.received.amount,
                t.taken_back.amount,
                t.collected,
                t.paid_households,
                t.paid_periods,
                t.paid_amount,
                t.balance,
                t.grant_amount,
                "" if t.target is None else t.target,
                t.saved,
                "" if percent is None else f"{percent:.1f}",
            )
        ]

    def row(level: str, commune: str | None, code: str | None, name: str, line: Funnel, behind: bool) -> list[str]:
        stages = [
            str(getattr(getattr(line, s), u))
            for s in ("submitted", "validated", "rejected", "paid", "covered")
            for u in ("households", "beneficiaries")
        ]
        percents = [("" if p is None else f"{p:.1f}") for p in (line.percent("validated"), line.percent("covered"))]
        return [level, commune or "", code or "", name, str(line.target), *stages, *percents, "yes" if behind else "no"]

    rows = [
        row("network", n.commune, n.key, n.label, n.funnel, n.behind) + cash([money[n.key]] if n.key in money else [])
        for n in progress.networks
    ]
    rows += [
        row("commune", c.commune, None, "", c.funnel, c.behind)
        + cash([m for m in progress.money if m.commune == c.commune])
        for c in progress.communes
    ]
    behind = is_behind(progress.total, progress.elapsed_percent)
    rows.append(row("campaign", None, None, progress.name, progress.total, behind) + cash(progress.money))
    return rows
