"""Household changes through the enrolment flow (HTTP contract and CLI): a birth, a member who left or died, a new
phone; idempotent by client id, 422 naming each bad field, another mutuelle's household refused, validated into the
household with the head told by SMS, and the premium changed from the next period only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.access.tokens import issue_token
from models.base import MemberStatus, MessageStatus, utcnow
from models.coverage.money import CoveragePeriod, LedgerEntry
from models.coverage.premiums import amount_due
from models.enrolment.tables import Enrolment, EnrolmentEvent, EnrolmentStatus, HouseholdChange
from models.members.household import Household, Member
from models.messaging.message import Message
from tests import factories
from tests.enrolment_helpers import HEAD_PHONE, collector_key, household_form, post, read_back, validate
from tests.members_helpers import cli

__all__ = ["cli"]  # the fixture


def today() -> date:
    """Return the CMU's today (Dakar is on UTC)."""
    return utcnow().date()


def birth(client_id: str, household_no: str, **member: Any) -> dict[str, Any]:
    """Return a change adding a newborn child to the household."""
    born = {
        "first_name": "Awa",
        "last_name": "Sow",
        "sex": "F",
        "date_of_birth": (today() - timedelta(days=20)).isoformat(),
        "relationship": "child",
        **member,
    }
    return {"client_id": client_id, "household_no": household_no, "changes": [{"action": "add_member", "member": born}]}


def change(client_id: str, household_no: str, *changes: dict[str, Any]) -> dict[str, Any]:
    return {"client_id": client_id, "household_no": household_no, "changes": list(changes)}


@pytest.fixture
def enrolled(cli: Callable[..., Result], client: FlaskClient) -> tuple[str, str]:
    """Return a collector's key and the number of the household it enrolled (head, spouse, child), validated."""
    key = collector_key(cli)
    created = post(client, key, household_form())
    assert created.status_code == 201, created.json
    return key, validate(cli, created.json["id"])


@pytest.fixture
def token(app: Flask, session: Session) -> str:
    _, plain = issue_token(session, name="poste-thies", facility="Poste de sante Thies Nord", now=utcnow())
    session.commit()
    return plain


def eligibility(client: FlaskClient, token: str, member_no: str) -> dict[str, Any]:
    response = client.get(f"/api/eligibility/{member_no}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.json
    body = response.json
    assert isinstance(body, dict)
    return body


def members_of(session: Session, household_no: str) -> list[Member]:
    session.commit()  # see what the app committed since (the session keeps its objects' values over a commit)
    session.expire_all()
    household = session.scalars(select(Household).where(Household.household_no == household_no)).one()
    return list(session.scalars(select(Member).where(Member.household_id == household.id).order_by(Member.member_no)))


def test_a_birth_sent_twice_is_one_change_numbered_next_and_confirmed_to_the_head(
    cli: Callable[..., Result], client: FlaskClient, session: Session, enrolled: tuple[str, str]
) -> None:
    key, number = enrolled
    first = post(client, key, birth("birth-1", number))
    assert first.status_code == 201, first.json
    assert (first.json["status"], first.json["duplicates"]) == ("SUBMITTED", [])
    again = post(client, key, birth("birth-1", number))
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    session.commit()
    assert session.scalar(select(func.count()).select_from(HouseholdChange)) == 1
    read = read_back(client, key, first.json["id"])
    assert (read["kind"], read["status"], read["household_no"]) == ("change", "SUBMITTED", number)
    assert len(members_of(session, number)) == 3  # nothing changes before staff validate

    assert validate(cli, first.json["id"]) == number
    members = members_of(session, number)
    assert [m.member_no for m in members] == [f"{number}-0{i}" for i in range(1, 5)]
    baby = members[-1]
    assert (baby.first_name, baby.relationship_to_head, baby.status, baby.joined_on) == (
        "Awa",
        "child",
        MemberStatus.ACTIVE,
        today(),
    )
    read = read_back(client, key, first.json["id"])
    assert read["status"] == "VALIDATED"
    assert read["members"] == [{"member": "changes[0].member", "member_no": f"{number}-04"}]

    [told] = session.scalars(select(Message).where(Message.template == "household_changed")).all()
    assert told.phone == HEAD_PHONE and told.status is MessageStatus.QUEUED
    assert number in told.body and "14 000 F CFA" in told.body  # the next period: 4 × 3,500
    actions = session.scalars(
        select(EnrolmentEvent.action).where(EnrolmentEvent.enrolment_id == first.json["id"]).order_by(EnrolmentEvent.id)
    ).all()
    assert actions == ["submit", "validate"]
    assert cli("enrolments", "validate", str(first.json["id"])).exit_code != 0  # once


def test_a_birth_raises_the_next_period_not_the_one_already_bought(
    cli: Callable[..., Result], client: FlaskClient, session: Session, token: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(
        session, cmu, size=3, enrolled_on=today() - timedelta(days=90), phone="+221770001122"
    )
    factories.pay(session, household, 11_500, today() - timedelta(days=90))  # fee + 3 × 3,500
    number, head_no = household.household_no, household.members[0].member_no
    before = eligibility(client, token, head_no)
    assert (before["status"], before["amount_due"], before["next_payment_amount"]) == ("ACTIVE", 0, 10_500)
    due_before = amount_due(session, household, today())
    ledger_before = session.execute(select(LedgerEntry.kind, LedgerEntry.amount).order_by(LedgerEntry.id)).all()
    periods_before = session.execute(
        select(
            CoveragePeriod.start_on, CoveragePeriod.end_on, CoveragePeriod.price, CoveragePeriod.household_share
        ).order_by(CoveragePeriod.id)
    ).all()

    key = collector_key(cli)
    created = post(client, key, birth("birth-2", number))
    assert created.status_code == 201, created.json
    validate(cli, created.json["id"])

    session.commit()
    after = eligibility(client, token, head_no)
    # The period bought is untouched (same cover, nothing charged nor refunded); the next one counts the baby.
    assert (after["status"], after["valid_until"], after["amount_due"]) == ("ACTIVE", before["valid_until"], 0)
    assert after["next_payment_amount"] == 14_000
    assert eligibility(client, token, f"{number}-04")["status"] == "ACTIVE"  # covered by the period bought
    assert session.execute(select(LedgerEntry.kind, LedgerEntry.amount).order_by(LedgerEntry.id)).all() == (
        ledger_before
    )
    periods = session.execute(
        select(
            CoveragePeriod.start_on, CoveragePeriod.end_on, CoveragePeriod.price, CoveragePeriod.household_share
        ).order_by(CoveragePeriod.id)
    )
    assert periods.all() == periods_before
    due_after = amount_due(session, household, today())
    assert (due_before.period, due_after.period) == (10_500, 14_000)


def test_a_deceased_member_is_not_covered_from_the_next_day_nor_counted(
    cli: Callable[..., Result], client: FlaskClient, session: Session, token: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=4, enrolled_on=today() - timedelta(days=90))
    factories.pay(session, household, 15_000, today() - timedelta(days=90))
    number = household.household_no
    spouse = household.members[1].member_no
    assert eligibility(client, token, spouse)["covered"] is True
    died = today() - timedelta(days=3)

    key = collector_key(cli)
    body = change("death-1", number, {"action": "member_deceased", "member_no": spouse.lower(), "on": died.isoformat()})
    created = post(client, key, body)
    assert created.status_code == 201, created.json
    assert eligibility(client, token, spouse)["covered"] is True  # not before staff validate
    validate(cli, created.json["id"])

    gone = next(m for m in members_of(session, number) if m.member_no == spouse)
    assert (gone.status, gone.left_on) == (MemberStatus.DECEASED, died + timedelta(days=1))
    answer = eligibility(client, token, spouse)
    assert (answer["covered"], answer["status"], answer["reason"]) == (False, "INACTIVE", "member deceased")
    assert answer["next_payment_amount"] == 10_500  # three members left
    assert eligibility(client, token, household.members[0].member_no)["covered"] is True
    assert amount_due(session, household, today()).period == 10_500


def test_a_member_who_left_and_a_new_phone_in_one_change(
    cli: Callable[..., Result], client: FlaskClient, session: Session, enrolled: tuple[str, str]
) -> None:
    key, number = enrolled
    left_on = today()  # enrolled today: it cannot be before
    body = change(
        "left-1",
        number,
        {"action": "member_left", "member_no": f"{number}-03", "on": left_on.isoformat()},
        {"action": "phone", "member_no": f"{number}-01", "phone": "00221 77 999 88 77"},
    )
    created = post(client, key, body)
    assert created.status_code == 201, created.json
    shown = cli("enrolments", "show", str(created.json["id"]))
    assert f"change of household {number}" in shown.output and "+221779998877" in shown.output
    listed = cli("enrolments", "list", "--status", "SUBMITTED").output.strip().splitlines()
    assert listed == [f"{created.json['id']}\tSUBMITTED\tSN-TN\tchange of {number}\t2 changes\t0 candidates\t{number}"]
    validate(cli, created.json["id"])

    head, spouse, child = members_of(session, number)
    assert head.phone == "+221779998877"
    assert (child.status, child.left_on) == (MemberStatus.LEFT, today() + timedelta(days=1))
    assert spouse.status is MemberStatus.ACTIVE
    [told] = session.scalars(select(Message).where(Message.template == "household_changed")).all()
    assert told.phone == "+221779998877" and "7 000 F CFA" in told.body  # the new phone; 2 × 3,500


def test_an_added_member_who_looks_like_a_member_is_a_candidate(
    cli: Callable[..., Result], client: FlaskClient, session: Session, enrolled: tuple[str, str]
) -> None:
    key, number = enrolled
    other = factories.make_household(session, factories.scheme(session, "cmu-thies"), phone="+221775550000")
    them = other.members[1]
    assert them.date_of_birth is not None
    body = birth(
        "spouse-1",
        number,
        first_name=them.first_name,
        last_name=them.last_name,
        date_of_birth=them.date_of_birth.isoformat(),
        relationship="spouse",
        sex=them.sex.value,
    )
    response = post(client, key, body)
    assert response.status_code == 201, response.json
    [candidate] = [c for c in response.json["duplicates"] if c.get("member_no") == them.member_no]
    assert candidate["member"] == "changes[0].member" and "same date of birth" in candidate["why"]


def bad(**member: Any) -> list[dict[str, Any]]:
    """Return a birth whose child has these fields changed."""
    born = birth("x", "N")["changes"][0]["member"]
    return [{"action": "add_member", "member": {**born, **member}}]


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ([], "changes", "at least one"),
        ([{"action": "divorce", "member_no": "{no}-02"}], "changes[0].action", "add_member, member_left"),
        (bad(relationship="head"), "changes[0].member.relationship", "has a head"),
        (bad(date_of_birth="2026-02-30"), "changes[0].member.date_of_birth", "not a date"),
        (bad(sex="X"), "changes[0].member.sex", '"F" or "M"'),
        (bad(twin=True), "changes[0].member.twin", "unknown field"),
        ([{"action": "add_member"}], "changes[0].member", "must be an object"),
        (
            [{"action": "member_left", "member_no": "{no}-09", "on": "2026-01-01"}],
            "changes[0].member_no",
            "not a member",
        ),
        ([{"action": "member_left", "member_no": "{no}-02", "on": "2099-01-01"}], "changes[0].on", "future"),
        ([{"action": "member_deceased", "member_no": "{no}-02", "on": "1/2/2026"}], "changes[0].on", "YYYY-MM-DD"),
        ([{"action": "member_deceased", "member_no": "{no}-02", "on": "2000-01-01"}], "changes[0].on", "joined"),
        ([{"action": "member_left", "member_no": "{no}-02"}], "changes[0].on", "required"),
        ([{"action": "phone", "member_no": "{no}-01", "phone": "12"}], "changes[0].phone", ""),
        ([{"action": "phone", "member_no": "{no}-01", "phone": "+85512345678"}], "changes[0].phone", "not a SN number"),
        ([{"action": "phone", "member_no": "{no}-01"}], "changes[0].phone", "required"),
        ([{"action": "phone", "member_no": "{no}-01", "phone": "771234567", "on": "x"}], "changes[0].on", "unknown"),
        (
            [
                {"action": "phone", "member_no": "{no}-02", "phone": "771234567"},
                {"action": "member_left", "member_no": "{no}-02", "on": "2026-01-01"},
            ],
            "changes[1].member_no",
            "already changed by changes[0]",
        ),
    ],
)
def test_each_bad_change_is_named_and_nothing_stored(
    client: FlaskClient,
    session: Session,
    enrolled: tuple[str, str],
    changes: list[dict[str, Any]],
    field: str,
    says: str,
) -> None:
    key, number = enrolled
    filled = json.loads(json.dumps(changes).replace("{no}", number))
    response = post(client, key, change("bad-1", number, *filled))
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert says in response.json["errors"][field]
    session.commit()
    assert session.scalar(select(func.count()).select_from(HouseholdChange)) == 0
    assert session.scalar(select(func.count()).select_from(Enrolment)) == 1  # the household's own enrolment


def test_another_mutuelle_s_household_reads_like_no_household(
    cli: Callable[..., Result], client: FlaskClient, session: Session, enrolled: tuple[str, str]
) -> None:
    _key, number = enrolled
    elsewhere = collector_key(cli, "SN-PK")
    theirs = post(client, elsewhere, birth("b-1", number))
    nobody = post(client, elsewhere, birth("b-2", "SN-TN-999999-9"))
    assert theirs.status_code == nobody.status_code == 422
    assert theirs.json["errors"]["household_no"] == f"no household {number!r} in mutuelle SN-PK"
    assert nobody.json["errors"]["household_no"] == "no household 'SN-TN-999999-9' in mutuelle SN-PK"
    unknown = post(client, elsewhere, {**birth("b-3", number), "commune": "Pékesse"})
    assert set(unknown.json["errors"]) == {"household_no", "commune"}  # a change names no commune
    session.commit()
    assert session.scalar(select(func.count()).select_from(HouseholdChange)) == 0


def test_staff_submit_a_change_with_the_cli_and_a_stale_one_is_refused(
    cli: Callable[..., Result], client: FlaskClient, session: Session, enrolled: tuple[str, str], tmp_path: Path
) -> None:
    _key, number = enrolled
    died = today().isoformat()
    form = tmp_path / "change.json"
    ids = []
    for client_id in ("staff-1", "staff-2"):
        body = change(client_id, number.lower(), {"action": "member_deceased", "member_no": f"{number}-02", "on": died})
        form.write_text(json.dumps(body), encoding="utf-8")
        result = cli("enrolments", "change", str(form))
        assert result.exit_code == 0, result.output
        ids.append(int(result.output.strip().splitlines()[-1]))
    again = cli("enrolments", "change", str(form))
    assert again.exit_code == 0 and "already submitted" in again.output and again.output.strip().endswith(str(ids[1]))

    form.write_text(json.dumps(birth("staff-3", number, sex="?")), encoding="utf-8")
    refused = cli("enrolments", "change", str(form))
    assert refused.exit_code != 0 and "changes[0].member.sex" in refused.output

    validate(cli, ids[0])
    stale = cli("enrolments", "validate", str(ids[1]))
    assert stale.exit_code != 0 and f"{number}-02 is no longer in household {number}" in stale.output
    rejected = cli("enrolments", "reject", str(ids[1]), "--reason", "Already recorded")
    assert rejected.exit_code == 0, rejected.output
    session.commit()
    statuses = session.scalars(select(Enrolment.status).where(Enrolment.id.in_(ids)).order_by(Enrolment.id)).all()
    assert statuses == [EnrolmentStatus.VALIDATED, EnrolmentStatus.REJECTED]
    actors = session.scalars(select(EnrolmentEvent.actor).where(EnrolmentEvent.enrolment_id == ids[0])).all()
    assert actors == ["cli", "cli"]
    assert [m.status for m in members_of(session, number)].count(MemberStatus.DECEASED) == 1
