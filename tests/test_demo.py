"""`demo seed` and `members show`: every eligibility status appears, and every answer agrees with the rules."""

from __future__ import annotations

import re
from datetime import date

from flask import Flask
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from commands.demo_data import DEMO_HOUSEHOLD, DEMO_PHONE
from models.access.tables import Agent, CollectionDevice
from models.access.tokens import issue_token
from models.base import EligibilityStatus, MemberStatus, today_utc, utcnow
from models.coverage.eligibility import member_eligibility
from models.enrolment.campaigns import Campaign
from models.members.household import Household, Member, Network
from models.views.campaigns import campaign_progress
from tests.backends import RQ_QUEUE
from tests.conftest import ROOT, make_test_app

EXPECTED = {
    "cmu active-yearly": "ACTIVE",
    "cmu active-half-yearly": "ACTIVE",
    "cmu waiting": "WAITING",
    "cmu grace": "GRACE",
    "cmu lapsed": "LAPSED",
    "cmu pending": "PENDING",
    "cmu bsf": "ACTIVE",
    "cmu cec": "ACTIVE",
    "cmu suspended": "SUSPENDED",
    "cmu instalment": "PENDING",
    "cmu inactive (deceased member)": "INACTIVE",
    "sky active": "ACTIVE",
    "sky waiting": "WAITING",
    "sky grace": "GRACE",
    "sky lapsed": "LAPSED",
    "sky pending": "PENDING",
    "sky idpoor": "ACTIVE",
}


def seed(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--if-empty"])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_seed_covers_every_status_and_prints_what_to_try(app: Flask, session: Session) -> None:
    output = seed(app)
    households = session.execute(select(func.count()).select_from(Household)).scalar_one()
    assert 150 <= households <= 250
    assert "PIN 4821" in output and "+221779999999" in output and "*384*123#" in output

    today = today_utc()
    statuses = {member_eligibility(session, m, today).status for m in session.scalars(select(Member))}
    assert statuses == set(EligibilityStatus)

    shared = session.scalars(select(Member.household_id).where(Member.phone == "+221779999999")).all()
    assert len(set(shared)) == 2
    # One network per commune, each in its commune's mutuelle, with households of that mutuelle only.
    networks = session.scalars(select(Network).order_by(Network.id)).all()
    assert [n.code for n in networks] == ["reseau-thies-nord-1", "reseau-pekesse-1", "reseau-mont-rolland-1"]
    for network in networks:
        members = session.scalars(select(Household).where(Household.network_id == network.id)).all()
        assert members and {h.mutuelle_id for h in members} == {network.mutuelle_id}
    # Their own money: a 20,000,000 F CFA grant each (10 % to save), payments that paid some members, a little kept.
    campaign = session.scalars(select(Campaign)).one()
    money = campaign_progress(session, campaign, today).money
    assert [m.code for m in money] == sorted((n.code for n in networks), key=lambda c: c.split("-")[1])
    for m in money:
        assert (m.grant_amount, m.target) == (20_000_000, 2_000_000), m.code
        assert m.received.count >= 1 and m.paid_households >= 1 and 0 < m.balance < 3_500, m.code
        assert m.saved == m.balance + m.paid_amount and m.taken_back.count == 0, m.code
    assert sum(m.paid_households for m in money) == 4
    assert session.scalar(select(func.count()).select_from(Agent)) == 2
    assert session.scalars(select(CollectionDevice)).one().device_key == "+221700000001"

    for label, expected in EXPECTED.items():
        match = re.search(rf"{re.escape(label)}\s+member (\S+)", output)
        assert match, label
        member = session.scalar(select(Member).where(Member.member_no == match.group(1)))
        assert member is not None
        assert member_eligibility(session, member, today).status.value == expected, label

    # The unknown-phone check needs a date of birth: each example shows its member's, as typed (DDMMYYYY).
    for member_no, born in re.findall(r"member (\S+)\s+born (\d{8})", output):
        member = session.scalar(select(Member).where(Member.member_no == member_no))
        assert member is not None and f"{member.date_of_birth:%d%m%Y}" == born, member_no
    assert len(re.findall(r"born \d{8}", output)) == len(EXPECTED)

    # Seeding again with --if-empty leaves the data alone, and prints the same things to try (every `make run`).
    again = seed(app)
    assert "not seeding" in again
    assert session.scalar(select(func.count()).select_from(Household)) == households
    assert again.split("Database:", 1)[1] == output.split("Database:", 1)[1]
    assert app.test_cli_runner().invoke(args=["demo", "show"]).output == "Database:" + output.split("Database:", 1)[1]


def test_the_terminal_phone_dials_as_an_active_demo_household(app: Flask, session: Session) -> None:
    seed(app)
    head = session.scalar(select(Member).where(Member.phone == DEMO_PHONE))
    assert head is not None and head.household.household_no == DEMO_HOUSEHOLD
    assert member_eligibility(session, head, today_utc()).status is EligibilityStatus.ACTIVE
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"PHONE ?= {DEMO_PHONE}\n" in makefile  # `make phone`'s default caller
    dialled = app.test_cli_runner().invoke(args=["ussd", "--phone", DEMO_PHONE], input="1\n")
    assert dialled.exit_code == 0, dialled.output
    assert DEMO_HOUSEHOLD in dialled.output and "CON " in dialled.output


def test_members_show_and_api_agree_with_the_rules_for_every_demo_member(
    db_url: str, redis_url: str, session: Session
) -> None:
    app = make_test_app(db_url, redis_url, API_RATE_LIMIT="10000/minute")  # reads far more than a facility may
    seed(app)
    _, token = issue_token(session, name="auditor", facility="Audit", now=utcnow())
    session.commit()
    client = app.test_client()
    runner = app.test_cli_runner()
    today = today_utc()
    members = session.scalars(select(Member).order_by(Member.member_no)).all()
    for member in members[::7]:  # a spread over every profile keeps the test quick
        expected = member_eligibility(session, member, today)
        body = client.get(
            f"/api/eligibility/{member.member_no}?date={today.isoformat()}",
            headers={"Authorization": f"Bearer {token}"},
        ).get_json()
        assert (body["status"], body["covered"], body["amount_due"]) == (
            expected.status.value,
            expected.covered,
            expected.amount_due,
        ), member.member_no
        shown = runner.invoke(args=["members", "show", member.member_no, "--date", today.isoformat()]).output
        assert f"status={expected.status.value}" in shown
        assert f"amount_due={expected.amount_due} " in shown
        if member.status is not MemberStatus.ACTIVE:
            assert expected.status is EligibilityStatus.INACTIVE


def test_members_show_prints_periods_and_ledger(app: Flask, session: Session) -> None:
    seed(app)
    output = app.test_cli_runner().invoke(args=["members", "show", "sn-pk-000001-01"]).output
    assert "status=ACTIVE" in output
    assert "coverage periods:" in output and "ledger:" in output
    assert re.search(r"payment\s+\d+ XOF", output) and re.search(r"subsidy\s+\d+ XOF \(state\)", output)
    assert "balance 0 XOF" in output


def test_members_show_unknown_member_fails(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["members", "show", "SN-XX-000000-01"])
    assert result.exit_code != 0 and "no member" in result.output


def test_demo_answers_hold_on_a_later_date(app: Flask, session: Session) -> None:
    seed(app)
    later = date.fromordinal(today_utc().toordinal() + 400)
    member = session.scalar(select(Member).where(Member.member_no == "SN-PK-000001-01"))
    assert member is not None
    assert member_eligibility(session, member, later).status is EligibilityStatus.LAPSED


def test_demo_receipts_are_marked_delivered_not_queued(app: Flask, session: Session, redis_client: Redis) -> None:
    from models.base import MessageStatus
    from models.messaging.message import Message

    seed(app)
    statuses = set(session.scalars(select(Message.status)).all())
    assert statuses == {MessageStatus.SUCCESS}
    assert redis_client.llen(f"rq:queue:{RQ_QUEUE}") == 0
