"""The USSD's one-statement reads give what the ORM rules give, on both backends, and their query counts.

Hand-made scenarios that read like the spec; `tests/test_rules_properties.py` checks the same equality on
generated histories (payments, reversals, arrears, networks, departures).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from menus.data import DatabaseData
from menus.engine import new_state
from menus.values import CallerInfo
from models.base import HouseholdStatus, MemberStatus
from tests.coverage_reads import orm_coverage, ussd_coverage
from tests.factories import ENROLLED_ON, make_household, make_network, pay, scheme


@pytest.fixture
def statements(session: Session) -> Iterator[list[str]]:
    """Yield the SQL statements run on the session's engine while the test runs (SQLite's `BEGIN` hook aside)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):
            seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


SCENARIOS = [
    # scheme, category, size, payments (amount, days after enrolment), status
    ("cmu-thies", "standard", 4, [], HouseholdStatus.ACTIVE),
    ("cmu-thies", "standard", 2, [(8_000, 0)], HouseholdStatus.ACTIVE),  # one year: grace, then lapsed
    ("cmu-thies", "standard", 3, [(100_000, 0)], HouseholdStatus.ACTIVE),
    ("cmu-thies", "standard", 5, [(3_000, 0)], HouseholdStatus.ACTIVE),
    ("cmu-thies", "bsf", 4, [], HouseholdStatus.ACTIVE),
    ("cmu-thies", "standard", 2, [(100_000, 0)], HouseholdStatus.SUSPENDED),
    ("sky-cambodia", "standard", 3, [(15_000, 0), (5_000, 40)], HouseholdStatus.ACTIVE),
    ("sky-cambodia", "standard", 9, [(100_000, 0)], HouseholdStatus.ACTIVE),
    ("sky-cambodia", "idpoor", 2, [], HouseholdStatus.ACTIVE),
]
OFFSETS = [0, 20, 45, 70, 200, 380, 400, 500]  # days after enrolment: waiting, active, grace, lapsed, …


@pytest.mark.parametrize("case", range(len(SCENARIOS)))
def test_the_coverage_read_matches_the_orm_rules(session: Session, case: int) -> None:
    code, category, size, payments, status = SCENARIOS[case]
    phone = f"+2217712{case:05d}"
    household = make_household(session, scheme(session, code), size=size, category=category, phone=phone)
    for amount, days in payments:
        pay(session, household, amount, ENROLLED_ON + timedelta(days=days))
    household.status = status
    session.commit()
    for offset in OFFSETS:
        on = ENROLLED_ON + timedelta(days=offset)
        assert ussd_coverage(session, phone, on) == orm_coverage(session, household.id, on), (code, category, offset)


def test_the_scenarios_cover_every_state_a_member_reads(session: Session) -> None:
    """The equality above is checked for covered, waiting, grace, lapsed, partly paid and refused households."""
    seen = set()
    for case, (code, category, size, payments, status) in enumerate(SCENARIOS):
        household = make_household(session, scheme(session, code), size=size, category=category)
        for amount, days in payments:
            pay(session, household, amount, ENROLLED_ON + timedelta(days=days), ref=f"seen:{case}:{days}")
        household.status = status
        session.commit()
        for offset in OFFSETS:
            answer = orm_coverage(session, household.id, ENROLLED_ON + timedelta(days=offset))
            seen.add(answer["household_status"])
            if answer["household_status"] == "PENDING" and answer["credit"] > 0:
                seen.add("partly paid")
            if answer["refusal"]:
                seen.add(answer["refusal"])
    assert {"ACTIVE", "WAITING", "GRACE", "LAPSED", "PENDING", "partly paid", "suspended", "subsidised"} <= seen


def test_a_member_who_left_is_not_counted_nor_listed(session: Session) -> None:
    phone = "+221771299999"
    household = make_household(session, scheme(session, "cmu-thies"), size=4, phone=phone)
    household.members[3].status = MemberStatus.DECEASED
    household.members[2].left_on = ENROLLED_ON + timedelta(days=10)
    session.commit()
    for offset in (0, 30):
        on = ENROLLED_ON + timedelta(days=offset)
        assert ussd_coverage(session, phone, on) == orm_coverage(session, household.id, on)
    data = DatabaseData(lambda: session, today=lambda _tz: ENROLLED_ON + timedelta(days=30))
    households, _caller, coverages = data.dial(phone)
    assert list(coverages[households[0].id].members) == ["Awa", "Moussa"]
    data.close()


def test_the_dial_reads_households_and_their_coverage_in_one_statement(session: Session, statements: list[str]) -> None:
    phone = "+221771288888"
    network = make_network(session, scheme(session, "cmu-thies"))
    household = make_household(session, scheme(session, "cmu-thies"), size=3, phone=phone, network=network)
    other = make_household(session, scheme(session, "cmu-thies"), size=2, phone=phone)
    pay(session, other, 100_000, ENROLLED_ON)
    data = DatabaseData(lambda: session, today=lambda _tz: ENROLLED_ON + timedelta(days=70))
    statements.clear()
    loaded = data.load("households", new_state(phone))
    assert len(statements) == 1
    households = loaded["households"]
    assert len(households) == 2 and households[0].no == household.household_no
    assert households[0].network == network.name and households[0].head == "Awa"
    assert [m.no for m in households[0].members] == ["01", "02", "03"]
    assert loaded["caller"] == CallerInfo(agent=None, lang=None)
    assert loaded[f"coverage:{household.id}"] == data.coverage(household.id, households)
    assert loaded[f"coverage:{other.id}"] == data.coverage(other.id, households)
    assert not loaded[f"coverage:{household.id}"].covered and loaded[f"coverage:{other.id}"].covered
    statements.clear()
    assert data.load("caller", new_state(phone))["caller"] == loaded["caller"]  # read once per phone
    assert statements == []
    data.close()


def test_a_phone_shared_across_time_zones_gets_each_coverage_on_its_schemes_today(session: Session) -> None:
    phone = "+221771277777"
    dakar = make_household(session, scheme(session, "cmu-thies"), size=2, phone=phone)
    phnom_penh = make_household(session, scheme(session, "sky-cambodia"), size=2, phone=phone)
    late = ENROLLED_ON + timedelta(days=40)  # already tomorrow in Phnom Penh
    days = {"Africa/Dakar": late, "Asia/Phnom_Penh": late + timedelta(days=1)}
    data = DatabaseData(lambda: session, today=lambda zone: days.get(zone, late))
    households, _caller, coverages = data.dial(phone)
    assert set(coverages) == {dakar.id, phnom_penh.id}
    for household in households:
        on = days[household.scheme.timezone]
        assert coverages[household.id].on == on
        assert coverages[household.id] == data.coverage(household.id, households)
    data.close()


def test_a_phone_without_household_gets_its_country_language_in_the_same_statement(
    session: Session, statements: list[str]
) -> None:
    scheme(session, "sky-cambodia")
    data = DatabaseData(lambda: session)
    statements.clear()
    assert data.households("+85512345678") == []
    assert data.caller("+85512345678") == CallerInfo(agent=None, lang="km")
    assert len(statements) == 1  # no household: no coverage to read
    data.close()
    abroad = DatabaseData(lambda: session)
    assert abroad.caller("+33612345678") == CallerInfo(agent=None, lang=None)
    abroad.close()
