"""The households list: filtered on eligibility today, commune, network, plan and category, one page at a time.

Each household's eligibility is worked out in the listing's statement (`models.coverage.standing`) on its
scheme's today, so the list filters and shows "paid", "in grace", "lapsed"… as every channel says them, not the
administrative status. A fixed number of queries whatever the page size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, Integer, Select, String, and_, cast, literal, select, union, union_all
from sqlalchemy.orm import Session

from models.base import EligibilityStatus
from models.coverage.standing import (
    covered_column,
    status_column,
    valid_until_column,
    waiting_until_column,
    without_jit,
)
from models.inputs import InputError
from models.members.household import Household, Member, Network
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Plan, Scheme, SubsidyCategory
from models.views.dossiers import member_search_condition
from models.views.listings import Cursor, Page, loose_distinct, paginate


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
    mutuelle: str | None = None  # a mutuelle's code

    def apply(self, query: Select[Any], status: ColumnElement[Any] | None = None) -> Select[Any]:
        """Return the query (over `Household`) restricted by these filters; `status` is the eligibility column."""
        if self.scheme_id is not None:
            query = query.where(Household.scheme_id == self.scheme_id)
        if self.mutuelle:
            query = query.where(Household.mutuelle_id.in_(select(Mutuelle.id).where(Mutuelle.code == self.mutuelle)))
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


@dataclass(frozen=True)
class HouseholdChoices:
    """The values the households filters offer."""

    schemes: list[tuple[int, str]]
    communes: list[str]
    networks: list[tuple[str, str]]  # (code, name)
    plans: list[str]
    categories: list[str]
    statuses: list[str] = field(default_factory=lambda: [s.value for s in EligibilityStatus])
    mutuelles: list[tuple[str, str]] = field(default_factory=list)  # (code, name), those the reader sees


def all_schemes(session: Session) -> list[Scheme]:
    """Return every scheme by name (the lists read each one's today and name: a handful of rows)."""
    return list(session.scalars(select(Scheme).order_by(Scheme.name, Scheme.id)))


def household_choices(session: Session, schemes: Sequence[Scheme]) -> HouseholdChoices:
    """Return the schemes, communes, networks, plans and subsidy categories to filter on (one query)."""

    def kind(name: str, value: Any, label: Any) -> Select[Any]:
        return select(literal(name).label("kind"), cast(value, String).label("value"), cast(label, String))

    communes = loose_distinct(Household.commune)
    rows = session.execute(
        union(
            select(literal("commune").label("kind"), communes.c.value, communes.c.value),
            kind("network", Network.code, Network.name),
            kind("plan", Plan.code, Plan.code),
            kind("category", SubsidyCategory.code, SubsidyCategory.code),
            kind("mutuelle", Mutuelle.code, Mutuelle.name),
        )
    ).tuples()
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, value, label in rows:
        if value is not None:
            found[name].append((value, label))
    return HouseholdChoices(
        schemes=[(scheme.id, scheme.name) for scheme in schemes],
        communes=sorted(value for value, _ in found["commune"]),
        networks=sorted(found["network"], key=lambda n: (n[1], n[0])),
        plans=sorted(value for value, _ in found["plan"]),
        categories=sorted(value for value, _ in found["category"]),
        mutuelles=sorted(found["mutuelle"]),
    )


def check_household_filters(filters: HouseholdFilters, choices: HouseholdChoices) -> None:
    """Raise InputError naming the filter when a value names no scheme, network, plan or subsidy category."""
    if filters.scheme_id is not None and filters.scheme_id not in {sid for sid, _ in choices.schemes}:
        raise InputError(f"scheme: there is no scheme #{filters.scheme_id}")
    if filters.plan and filters.plan not in choices.plans:
        raise InputError(f"plan must be one of {', '.join(choices.plans)}")
    if filters.category and filters.category not in choices.categories:
        raise InputError(f"category must be one of {', '.join(choices.categories)}")
    if filters.network and filters.network not in {code for code, _ in choices.networks}:
        raise InputError(f"network: no network has the code {filters.network!r}")
    if filters.mutuelle and filters.mutuelle not in {code for code, _ in choices.mutuelles}:
        raise InputError(f"mutuelle: no mutuelle has the code {filters.mutuelle!r}")


def scheme_days(schemes: Sequence[Scheme], now: datetime) -> Any:
    """Return a subquery of each scheme's today and grace start: (scheme_id, on, since), one row per scheme."""
    rows = []
    every: Sequence[Scheme | None] = schemes or [None]
    for scheme in every:
        on = scheme.local_today(now) if scheme is not None else now.date()
        row = select(
            literal(scheme.id if scheme is not None else 0, Integer).label("scheme_id"),
            literal(on, Date).label("on"),
            literal(on - timedelta(days=scheme.grace_days if scheme is not None else 0), Date).label("since"),
        )
        rows.append(row if scheme is not None else row.where(literal(False)))  # no scheme: no row
    return (union_all(*rows) if len(rows) > 1 else rows[0]).subquery("days")


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
    session: Session,
    filters: HouseholdFilters,
    now: datetime,
    number: int = 1,
    per_page: int = 50,
    schemes: Sequence[Scheme] | None = None,
    cursor: Cursor | None = None,
) -> Page[HouseholdRow]:
    """Return one page of households by number with their eligibility on their scheme's today (one statement).

    With a search text, one row per member found (as the search shows them); otherwise the head's row. Pages
    follow the household number (and member number): `paginate` reads a deep page from its cursor.
    `schemes`: every scheme, when the caller has them already.
    """
    days = scheme_days(all_schemes(session) if schemes is None else schemes, now)
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
    query = filters.apply(query, status)
    order = [Household.household_no, Member.member_no] if filters.text else [Household.household_no]
    without_jit(session)
    # A number search finds its members by index first (member_search_condition): read the page's keys, then its rows.
    narrow = any(character.isdigit() for character in filters.text or "")
    page = paginate(session, query, number, per_page, order=order, cursor=cursor, narrow=narrow)
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
    return page.with_items(rows)


def _as_date(value: Any) -> date:
    # A literal date read back from a subquery: a date on PostgreSQL, 'YYYY-MM-DD' on SQLite.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
