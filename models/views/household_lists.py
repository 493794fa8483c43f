"""The households list: filtered on eligibility today, commune, network, plan and category, one page at a time.

Each household's eligibility is worked out in the listing's statement (`models.coverage.standing`) on its
scheme's today, so the list filters and shows "paid", "in grace", "lapsed"… as every channel says them, not the
administrative status. A fixed number of queries whatever the page size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, Integer, Select, and_, literal, select, union_all
from sqlalchemy.orm import Session

from models.base import EligibilityStatus
from models.coverage.standing import covered_column, status_column, valid_until_column, waiting_until_column
from models.inputs import InputError
from models.members.household import Household, Member, Network
from models.schemes.scheme import Plan, Scheme, SubsidyCategory
from models.views.dossiers import member_search_condition
from models.views.listings import Page, paginate

CHOICES_LIMIT = 500


@dataclass(frozen=True)
class HouseholdFilters:
    """Filters of the households lists; None (or empty) means "any"."""

    text: str | None = None  # household or member number, phone or name (the search)
    scheme_id: int | None = None
    statuses: tuple[EligibilityStatus, ...] = ()  # eligibility on the scheme's today, any of these
    commune: str | None = None
    network: str | None = None  # a network's code (in any scheme)
    network_id: int | None = None
    plan: str | None = None
    category: str | None = None  # the subsidy category's code

    def apply(self, query: Select[Any], status: ColumnElement[Any] | None = None) -> Select[Any]:
        """Return the query (over `Household`) restricted by these filters; `status` is the eligibility column."""
        if self.scheme_id is not None:
            query = query.where(Household.scheme_id == self.scheme_id)
        if self.commune:
            query = query.where(Household.commune == self.commune)
        if self.network:
            query = query.where(Household.network_id.in_(select(Network.id).where(Network.code == self.network)))
        if self.network_id is not None:
            query = query.where(Household.network_id == self.network_id)
        if self.plan:
            query = query.where(Household.plan == self.plan)
        if self.category:
            query = query.where(Household.subsidy_category == self.category)
        if self.statuses and status is not None:
            query = query.where(status.in_([s.value for s in self.statuses]))
        return query

    @property
    def any(self) -> bool:
        """Return whether any filter (or the search) is set."""
        return bool(
            self.text
            or self.scheme_id is not None
            or self.statuses
            or self.commune
            or self.network
            or self.network_id is not None
            or self.plan
            or self.category
        )


@dataclass(frozen=True)
class HouseholdChoices:
    """The values the households filters offer."""

    schemes: list[tuple[int, str]]
    communes: list[str]
    networks: list[tuple[str, str]]  # (code, name)
    plans: list[str]
    categories: list[str]
    statuses: list[str] = field(default_factory=lambda: [s.value for s in EligibilityStatus])


def household_choices(session: Session) -> HouseholdChoices:
    """Return the schemes, communes, networks, plans and subsidy categories to filter on (small, distinct lists)."""
    schemes = list(session.execute(select(Scheme.id, Scheme.name).order_by(Scheme.name)).tuples())
    communes = [
        c
        for c in session.scalars(select(Household.commune).distinct().order_by(Household.commune).limit(CHOICES_LIMIT))
        if c is not None
    ]
    networks = list(
        session.execute(
            select(Network.code, Network.name).distinct().order_by(Network.name, Network.code).limit(CHOICES_LIMIT)
        ).tuples()
    )
    codes = session.execute(
        select(literal("plan"), Plan.code).union(select(literal("category"), SubsidyCategory.code))
    ).tuples()
    plans: set[str] = set()
    categories: set[str] = set()
    for kind, code in codes:
        (plans if kind == "plan" else categories).add(code)
    return HouseholdChoices(schemes, communes, networks, sorted(plans), sorted(categories))


def check_household_filters(filters: HouseholdFilters, choices: HouseholdChoices) -> None:
    """Raise InputError naming the filter when a value names no scheme, network, plan or subsidy category."""
    if filters.scheme_id is not None and filters.scheme_id not in {sid for sid, _ in choices.schemes}:
        raise InputError(f"scheme: there is no scheme #{filters.scheme_id}")
    if filters.plan and filters.plan not in choices.plans:
        raise InputError(f"plan must be one of {', '.join(choices.plans)}")
    if filters.category and filters.category not in choices.categories:
        raise InputError(f"category must be one of {', '.join(choices.categories)}")
    complete = len(choices.networks) < CHOICES_LIMIT  # else a code past the list is not refused
    if filters.network and complete and filters.network not in {code for code, _ in choices.networks}:
        raise InputError(f"network: no network has the code {filters.network!r}")


def scheme_days(session: Session, now: datetime) -> Any:
    """Return a subquery of each scheme's today and grace start: (scheme_id, on, since), one row per scheme."""
    rows = [
        select(
            literal(scheme_id, Integer).label("scheme_id"),
            literal(on, Date).label("on"),
            literal(on - timedelta(days=grace_days), Date).label("since"),
        )
        for scheme_id, on, grace_days in _scheme_todays(session, now)
    ]
    if not rows:
        none = select(
            literal(0, Integer).label("scheme_id"), literal(now.date(), Date).label("on"), literal(now.date(), Date)
        )
        return none.where(literal(False)).subquery("days")
    return (union_all(*rows) if len(rows) > 1 else rows[0]).subquery("days")


def _scheme_todays(session: Session, now: datetime) -> list[tuple[int, date, int]]:
    return [
        (scheme.id, scheme.local_today(now), scheme.grace_days)
        for scheme in session.scalars(select(Scheme).order_by(Scheme.id))
    ]


@dataclass(frozen=True)
class HouseholdRow:
    """A household of the list with its head (or the member the search found) and its eligibility today."""

    household: Household
    member: Member | None
    scheme_name: str
    network_code: str | None
    network_name: str | None
    on: date  # the scheme's today
    status: EligibilityStatus
    covered: bool
    valid_until: date | None
    waiting_until: date | None

    @property
    def paid(self) -> bool:
        """Return whether a paid period holds today (active or waiting)."""
        return self.status in {EligibilityStatus.ACTIVE, EligibilityStatus.WAITING}


def households_page(
    session: Session, filters: HouseholdFilters, now: datetime, number: int = 1, per_page: int = 50
) -> Page[HouseholdRow]:
    """Return one page of households by number with their eligibility on their scheme's today (one statement).

    With a search text, one row per member found (as the search shows them); otherwise the head's row.
    """
    days = scheme_days(session, now)
    status = status_column(days.c.on, days.c.since)
    query = (
        select(
            Household,
            Member,
            Scheme.name,
            Network.code,
            Network.name,
            days.c.on,
            status,
            covered_column(status, Scheme.grace_covered),
            valid_until_column(status, days.c.on),
            waiting_until_column(status, days.c.on),
        )
        .join(Scheme, Scheme.id == Household.scheme_id)
        .join(days, days.c.scheme_id == Household.scheme_id)
        .outerjoin(Network, Network.id == Household.network_id)
    )
    if filters.text:
        query = query.join(Member, Member.household_id == Household.id).where(
            member_search_condition(session, filters.text)
        )
    else:
        query = query.outerjoin(
            Member, and_(Member.household_id == Household.id, Member.member_no == Household.head_member_no)
        )
    query = filters.apply(query, status).order_by(Household.household_no, Member.member_no)
    page = paginate(session, query, number, per_page)
    rows = [
        HouseholdRow(
            household,
            member,
            scheme_name,
            code,
            name,
            _as_date(on),
            EligibilityStatus(value),
            bool(covered),
            valid_until,
            waiting,
        )
        for household, member, scheme_name, code, name, on, value, covered, valid_until, waiting in page.items
    ]
    return Page(rows, page.number, page.per_page, page.has_next)


def _as_date(value: Any) -> date:
    # A literal date read back from a subquery: a date on PostgreSQL, 'YYYY-MM-DD' on SQLite.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
