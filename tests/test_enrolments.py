"""Enrolment through the HTTP contract and the CLI: submitted once per client id, checked field by field, duplicates
listed with why, validated into numbered members whose head is welcomed by SMS and can dial the USSD at once."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extensions import db
from models.base import MessageStatus
from models.coverage.money import CoveragePeriod
from models.enrolment.duplicates import name_key, swapped
from models.enrolment.numbering import has_valid_check_digit, household_number
from models.enrolment.tables import Enrolment, EnrolmentEvent, EnrolmentStatus
from models.members.household import Account, Household, Member
from models.messaging.message import Message
from models.schemes.mutuelle import scheme_mutuelles
from models.schemes.scheme import DEFAULT_HOUSEHOLD_PATTERN
from tests import factories
from tests.enrolment_helpers import HEAD_PHONE, collector_key, household_form, post, read_back
from tests.members_helpers import cli
from tests.ussd_helpers import hops

__all__ = ["cli"]  # the fixture


def count(session: Session, model: type) -> int:
    session.commit()  # see what the app committed since
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_form_sent_twice_is_one_enrolment(cli: Callable[..., Result], client: FlaskClient, session: Session) -> None:
    key = collector_key(cli)
    first = post(client, key, household_form())
    assert first.status_code == 201, first.json
    assert first.json["status"] == "SUBMITTED" and first.json["duplicates"] == []
    again = post(client, key, household_form())
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    assert count(session, Enrolment) == 1
    enrolment = session.scalars(select(Enrolment)).one()
    assert enrolment.commune == "Thiès Nord"  # the mutuelle's spelling
    assert [m.phone for m in enrolment.members] == [HEAD_PHONE, None, None]
    assert enrolment.members[0].id_number == "1234198600123"
    assert (enrolment.plan, enrolment.language.value, enrolment.sms_opt_in) == ("yearly", "fr", True)
    read = read_back(client, key, first.json["id"])
    assert (read["status"], read["reason"], read["household_no"]) == ("SUBMITTED", None, None)


def test_without_a_valid_key_nothing_is_taken(cli: Callable[..., Result], client: FlaskClient) -> None:
    key = collector_key(cli)
    assert client.post("/api/enrolments", json=household_form()).status_code == 401
    assert post(client, key + "x", household_form()).status_code == 401
    created = post(client, key, household_form())
    other = collector_key(cli, "SN-PK")
    response = client.get(f"/api/enrolments/{created.json['id']}", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404


def member_with(**changes: Any) -> dict[str, Any]:
    """Return the enrolment with its head changed."""
    body = household_form()
    body["members"][0] = {**body["members"][0], **changes}
    return body


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (member_with(date_of_birth="1986-13-09"), "members[0].date_of_birth", "not a date"),
        (member_with(date_of_birth="2090-01-01"), "members[0].date_of_birth", "future"),
        (member_with(sex="X"), "members[0].sex", '"F" or "M"'),
        (member_with(first_name=" "), "members[0].first_name", "required"),
        (member_with(phone="12"), "members[0].phone", ""),
        (member_with(phone="+85512345678"), "members[0].phone", "not a SN number"),
        (member_with(phone=None), "members[0].phone", "required for the head"),
        (member_with(id_number=None), "members[0].id_number", "required for the head"),
        (member_with(relationship="cousin"), "members[0].relationship", "head, spouse, child, other"),
        (member_with(relationship="child"), "members", "exactly one member must be the head"),
        (member_with(nickname="Mari"), "members[0].nickname", "unknown field"),
        (household_form(subsidy_category="bsf"), "members[0].card_number", "required for the head of a bsf household"),
        (household_form(subsidy_category="gold"), "subsidy_category", "'gold' is not one of"),
        (household_form(commune="Dakar"), "commune", "not a commune of SN-TN"),
        (household_form(plan="weekly"), "plan", "not one of"),
        (household_form(language="km"), "language", "not one of"),
        (household_form(network="nowhere"), "network", "not a network of mutuelle SN-TN"),
        (household_form(sms_opt_in="yes"), "sms_opt_in", "true or false"),
        (household_form(members=[]), "members", "at least the head"),
        (household_form(client_id=""), "client_id", "required"),
    ],
)
def test_each_bad_field_is_named(
    cli: Callable[..., Result], client: FlaskClient, session: Session, body: dict[str, Any], field: str, says: str
) -> None:
    response = post(client, collector_key(cli), body)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert says in response.json["errors"][field]
    assert count(session, Enrolment) == 0


def test_every_bad_field_at_once(cli: Callable[..., Result], client: FlaskClient) -> None:
    body = household_form()
    body["members"][1]["date_of_birth"] = "20/11/1982"
    body["members"][2]["sex"] = "f"
    response = post(client, collector_key(cli), body)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"members[1].date_of_birth", "members[2].sex"}


def test_a_near_duplicate_of_a_member_is_a_candidate_with_why(
    cli: Callable[..., Result], client: FlaskClient, session: Session
) -> None:
    existing = factories.make_household(session, factories.scheme(session, "cmu-thies"), phone="+221775550000")
    head = existing.head
    assert head is not None and head.date_of_birth is not None
    # Typed again elsewhere: an accent, a different spelling of the last name, day and month swapped.
    born = swapped(head.date_of_birth) or head.date_of_birth
    body = member_with(first_name=head.first_name + " ", last_name="Diopp", date_of_birth=born.isoformat())
    response = post(client, collector_key(cli), body)
    assert response.status_code == 201, response.json
    [candidate] = [c for c in response.json["duplicates"] if c.get("member_no") == head.member_no]
    assert candidate["member"] == "members[0]" and candidate["score"] >= 60
    assert "name" in candidate["why"] and "date of birth" in candidate["why"]
    # A second collector's form for the same family is a candidate of the pending enrolment too.
    again = post(client, collector_key(cli, "SN-TN"), {**body, "client_id": "other-form"})
    ids = [c.get("enrolment_id") for c in again.json["duplicates"]]
    assert response.json["id"] in ids


def test_names_fold_accents_spacing_and_spellings() -> None:
    assert name_key("N'Diaye  Mamadou") == name_key("Ndiaye Mamadu")
    assert name_key("Cheikh Fall") == name_key("Cheick Fal")
    assert name_key("Aïssatou") == name_key("Aissatu")


def test_validation_numbers_members_welcomes_the_head_who_can_dial_at_once(
    cli: Callable[..., Result], app: Flask, client: FlaskClient, session: Session
) -> None:
    key = collector_key(cli)
    created = post(client, key, household_form())
    enrolment_id = created.json["id"]
    result = cli("enrolments", "validate", str(enrolment_id))
    assert result.exit_code == 0, result.output
    number = result.output.strip().splitlines()[-1]
    assert re.fullmatch(r"SN-TN-\d{6}-\d", number), number
    assert has_valid_check_digit(DEFAULT_HOUSEHOLD_PATTERN, number)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not has_valid_check_digit(DEFAULT_HOUSEHOLD_PATTERN, wrong)

    session.commit()
    made = session.scalars(select(Household).where(Household.household_no == number)).one()
    members = session.scalars(select(Member).where(Member.household_id == made.id).order_by(Member.member_no)).all()
    assert [m.member_no for m in members] == [f"{number}-01", f"{number}-02", f"{number}-03"]
    assert made.head_member_no == f"{number}-01" and members[0].phone == HEAD_PHONE
    assert (made.commune, made.subsidy_category, made.plan) == ("Thiès Nord", "standard", "yearly")
    assert session.scalar(select(Account.id).where(Account.household_id == made.id)) is not None

    welcome = session.scalars(select(Message).where(Message.phone == HEAD_PHONE)).one()
    assert welcome.status is MessageStatus.QUEUED and welcome.template == "welcome"
    assert number in welcome.body and "*384*123#" in welcome.body and "PAYER" in welcome.body
    assert "11 500 F CFA" in welcome.body

    read = read_back(client, key, enrolment_id)
    assert (read["status"], read["household_no"]) == ("VALIDATED", number)
    assert read["members"][0]["member_no"] == f"{number}-01"

    replies = hops(client, HEAD_PHONE, "1")
    assert "Ma couverture" in replies[0]
    assert "Mariama" in replies[1] and "11 500 F CFA" in replies[1]  # 1,000 fee + 3 × 3,500

    shown = cli("enrolments", "show", str(enrolment_id))
    assert "validate SUBMITTED → VALIDATED" in shown.output and number in shown.output
    assert cli("enrolments", "validate", str(enrolment_id)).exit_code != 0  # once


def test_a_fully_subsidised_household_is_covered_from_enrolment(
    cli: Callable[..., Result], client: FlaskClient, session: Session
) -> None:
    body = member_with(card_number="PNBSF-0042")
    body["subsidy_category"] = "bsf"
    created = post(client, collector_key(cli), body)
    assert created.status_code == 201, created.json
    result = cli("enrolments", "validate", str(created.json["id"]))
    assert result.exit_code == 0, result.output
    session.commit()
    made = session.scalars(select(Household)).one()
    assert session.scalar(select(func.count()).where(CoveragePeriod.household_id == made.id)) == 1
    welcome = session.scalars(select(Message)).one()
    assert welcome.template == "welcome_subsidised"


def test_a_card_number_already_enrolled_is_a_candidate(cli: Callable[..., Result], client: FlaskClient) -> None:
    key = collector_key(cli)
    body = member_with(card_number="PNBSF-0042")
    body["subsidy_category"] = "bsf"
    first = post(client, key, body)
    assert cli("enrolments", "validate", str(first.json["id"])).exit_code == 0
    other = member_with(card_number="pnbsf 0042", first_name="Awa", last_name="Ba", date_of_birth="1990-01-01")
    other.update(subsidy_category="bsf", client_id="form-2")
    response = post(client, key, other)
    [candidate] = [c for c in response.json["duplicates"] if "same card number" in c["why"]]
    assert candidate["member_no"].endswith("-01") and candidate["member"] == "members[0]"


def test_reject_and_needs_changes_are_audited(
    cli: Callable[..., Result], client: FlaskClient, session: Session
) -> None:
    key = collector_key(cli)
    first = post(client, key, household_form("a"))
    second = post(client, key, household_form("b"))
    assert cli("enrolments", "reject", str(first.json["id"])).exit_code != 0  # a reason is required
    result = cli("enrolments", "reject", str(first.json["id"]), "--reason", "Already a member")
    assert result.exit_code == 0, result.output
    assert cli("enrolments", "needs-changes", str(second.json["id"]), "--reason", "Photo of the ID").exit_code == 0
    read = read_back(client, key, first.json["id"])
    assert (read["status"], read["reason"]) == ("REJECTED", "Already a member")
    listed = cli("enrolments", "list", "--status", "NEEDS_CHANGES").output.strip().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(second.json["id"])]
    assert cli("enrolments", "validate", str(first.json["id"])).exit_code != 0
    session.commit()
    actions = session.scalars(select(EnrolmentEvent.action).order_by(EnrolmentEvent.id)).all()
    assert actions == ["submit", "submit", "reject", "needs-changes"]
    assert session.scalar(select(func.count()).select_from(Household)) == 0
    statuses = set(session.scalars(select(Enrolment.status)))
    assert statuses == {EnrolmentStatus.REJECTED, EnrolmentStatus.NEEDS_CHANGES}


def test_the_collector_must_name_a_known_mutuelle(cli: Callable[..., Result]) -> None:
    result = cli("collectors", "create", "X", "--mutuelle", "NOPE")
    assert result.exit_code != 0 and "no mutuelle" in result.output


def test_numbers_follow_the_scheme_pattern(app: Flask) -> None:
    with app.app_context():
        session = db()
        scheme = factories.scheme(session, "sky-cambodia")
        [only] = scheme_mutuelles(session, scheme.id)
        number = household_number(scheme.household_number_pattern, scheme, only, 42)
        assert re.fullmatch(r"SKY-000042-\d", number)
        assert has_valid_check_digit(scheme.household_number_pattern, number)
