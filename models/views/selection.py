"""Which households a renewal list or an export is about: the filters their query strings share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models.members.household import Household, Network
from models.schemes.scheme import Scheme
from models.views.listings import loose_distinct


@dataclass(frozen=True)
class HouseholdSelection:
    """Households of a scheme, commune, network, plan and subsidy category; None means "any"."""

    scheme_id: int | None = None
    commune: str | None = None
    network_ids: tuple[int, ...] | None = None  # the networks a `network=` code names (one per scheme at most)
    plan: str | None = None
    category: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Return the query (which selects from `households`) restricted to the selected households."""
        if self.scheme_id is not None:
            query = query.where(Household.scheme_id == self.scheme_id)
        if self.commune:
            query = query.where(Household.commune == self.commune)
        if self.network_ids is not None:
            query = query.where(Household.network_id.in_(self.network_ids))
        if self.plan:
            query = query.where(Household.plan == self.plan)
        if self.category:
            query = query.where(Household.subsidy_category == self.category)
        return query


def networks_named(session: Session, text: str) -> tuple[int, ...]:
    """Return the ids of the networks a `network=` value names: by code (any case), else a number by id."""
    ids = tuple(session.scalars(select(Network.id).where(func.upper(Network.code) == text.strip().upper())))
    if not ids and text.strip().isdigit():
        ids = tuple(session.scalars(select(Network.id).where(Network.id == int(text))))
    return ids


@dataclass(frozen=True)
class SelectionChoices:
    """The values the filter drop-downs offer (small, distinct lists)."""

    schemes: list[tuple[int, str]]
    communes: list[str]
    networks: list[tuple[str, str]]  # code, name
    plans: list[str]
    categories: list[str]


def selection_choices(session: Session, schemes: Iterable[Scheme]) -> SelectionChoices:
    """Return the schemes, communes, network codes, plans and categories to filter on (two queries).

    `schemes`: every scheme, with its plans and categories loaded (`models.views.standing.load_schemes`).
    """
    schemes = sorted(schemes, key=lambda scheme: scheme.name)
    found = session.scalars(select(loose_distinct(Household.commune).c.value).limit(500))
    communes = sorted(commune for commune in found if commune is not None)
    networks = list(
        session.execute(select(Network.code, Network.name).distinct().order_by(Network.name).limit(500)).tuples()
    )
    return SelectionChoices(
        schemes=[(scheme.id, scheme.name) for scheme in schemes],
        communes=communes,
        networks=networks,
        plans=sorted({plan.code for scheme in schemes for plan in scheme.plans}),
        categories=sorted({category.code for scheme in schemes for category in scheme.subsidy_categories}),
    )
