"""Builders for tests: the shipped schemes, households with members, networks, payments through allocation."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, Language, MemberStatus, Sex
from models.coverage.allocation import AllocationResult, allocate
from models.coverage.ledger import get_or_create_account
from models.members.household import Household, Member, Network
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import load_scheme, parse_scheme_file

SCHEMES_DIR = Path(__file__).resolve().parent.parent / "schemes"
ENROLLED_ON = date(2026, 11, 20)

_numbers = itertools.count(1)
_refs = itertools.count(1)
_FIRST_NAMES = ["Awa", "Moussa", "Fatou", "Ibrahima", "Aminata", "Cheikh", "Khady", "Ousmane", "Ndeye", "Mamadou"]


def scheme(session: Session, code: str) -> Scheme:
    """Return the shipped scheme `schemes/<code>.toml`, loading it into the database on first use."""
    existing = session.scalar(select(Scheme).where(Scheme.code == code))
    if existing is not None:
        return existing
    loaded = load_scheme(session, parse_scheme_file(SCHEMES_DIR / f"{code}.toml"))
    session.commit()
    return loaded


def make_network(session: Session, scheme: Scheme, code: str | None = None) -> Network:
    """Create a network (réseau) of the scheme."""
    number = next(_numbers)
    network = Network(
        scheme_id=scheme.id,
        mutuelle_id=home_mutuelle(session, scheme.id, "Thiès Nord").id,
        code=code or f"RES-{number}",
        name=f"Réseau {number}",
        commune="Thiès Nord",
    )
    session.add(network)
    session.commit()
    return network


class HouseholdOptions(TypedDict, total=False):
    """`make_household`'s options but the phone, for helpers that choose the phone and pass the rest on."""

    size: int
    category: str
    plan: str | None
    enrolled_on: date
    network: Network | None
    household_no: str | None
    status: HouseholdStatus


def make_household(
    session: Session,
    scheme: Scheme,
    size: int = 4,
    category: str = "standard",
    plan: str | None = None,
    enrolled_on: date = ENROLLED_ON,
    phone: str | None = None,
    network: Network | None = None,
    household_no: str | None = None,
    status: HouseholdStatus = HouseholdStatus.ACTIVE,
) -> Household:
    """Create an enrolled household of `size` active members (the first one is the head) and commit."""
    number = household_no or f"{scheme.country}{next(_numbers):06d}"
    default_plan = next(p.code for p in scheme.plans if p.is_default)
    household = Household(
        household_no=number,
        scheme_id=scheme.id,
        mutuelle_id=network.mutuelle_id if network is not None else home_mutuelle(session, scheme.id, "Thiès Nord").id,
        network_id=network.id if network is not None else None,
        head_member_no=f"{number}-01",
        commune="Thiès Nord",
        subsidy_category=category,
        plan=plan or default_plan,
        language=Language(scheme.default_language),
        status=status,
        enrolled_on=enrolled_on,
    )
    session.add(household)
    session.flush()
    for index in range(size):
        session.add(
            Member(
                member_no=f"{number}-{index + 1:02d}",
                household_id=household.id,
                last_name="Diop",
                first_name=_FIRST_NAMES[index % len(_FIRST_NAMES)],
                sex=Sex.F if index % 2 == 0 else Sex.M,
                date_of_birth=date(1980 + index, 1 + index % 12, 1 + index),
                relationship_to_head="head" if index == 0 else "child",
                phone=phone if index == 0 else None,
                status=MemberStatus.ACTIVE,
                joined_on=enrolled_on,
            )
        )
    session.commit()
    return household


def pay(
    session: Session, household: Household | Network, amount: int, on: date, ref: str | None = None
) -> AllocationResult:
    """Allocate a payment to the household's (or network's) account and commit, as the worker does."""
    if isinstance(household, Network):
        account = get_or_create_account(session, network=household)
    else:
        account = get_or_create_account(session, household=household)
    session.commit()
    result = allocate(session, account, amount, ref or f"test:{next(_refs)}", on)
    session.commit()
    return result
