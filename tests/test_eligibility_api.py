"""`GET /api/eligibility/<member_no>`: bearer tokens, the JSON keys of docs/http-contract.md, 401/404, checks logged."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.tables import EligibilityCheck
from models.access.tokens import issue_token, revoke_token
from models.base import utcnow
from models.coverage.eligibility import member_eligibility
from tests import factories

KEYS = {
    "member_no",
    "first_name",
    "sex",
    "birth_year",
    "covered",
    "status",
    "valid_until",
    "waiting_until",
    "amount_due",
    "next_payment_amount",
    "next_payment_due",
    "currency",
    "reason",
}


@pytest.fixture
def token(app: Flask, session: Session) -> str:
    _, plain = issue_token(session, name="poste-thies", facility="Poste de sante Thies Nord", now=utcnow())
    session.commit()
    return plain


def get(client: FlaskClient, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(path, headers=headers)
    return response.status_code, response.get_json()


def test_paid_household_member_is_answered_with_every_key(client: FlaskClient, session: Session, token: str) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=4, enrolled_on=date(2026, 10, 1))
    factories.pay(session, household, 15000, date(2026, 10, 1))
    member_no = household.members[0].member_no

    status, body = get(client, f"/api/eligibility/{member_no}?date=2026-12-15", token)
    assert status == 200
    assert set(body) == KEYS
    assert body["member_no"] == member_no
    assert (body["covered"], body["status"], body["valid_until"]) == (True, "ACTIVE", "2027-09-30")
    assert body["currency"] == "XOF" and isinstance(body["amount_due"], int)
    assert body["reason"] is None
    # Covered: nothing is due; the next period (4 × 3,500) is due the last day of cover.
    assert (body["amount_due"], body["next_payment_amount"], body["next_payment_due"]) == (0, 14_000, "2027-09-30")

    status, body = get(client, f"/api/eligibility/{member_no.lower()}?date=2026-10-15", token)
    assert (status, body["status"], body["covered"], body["waiting_until"]) == (200, "WAITING", False, "2026-10-31")
    assert body["reason"]
    assert (body["amount_due"], body["next_payment_amount"], body["next_payment_due"]) == (0, 14_000, "2027-09-30")

    # Nothing covered on a day before the first period: the next payment is due that day.
    status, body = get(client, f"/api/eligibility/{member_no}?date=2026-09-30", token)
    assert (body["status"], body["next_payment_due"]) == ("PENDING", "2026-09-30")


def test_answer_agrees_with_the_rules(client: FlaskClient, session: Session, token: str) -> None:
    sky = factories.scheme(session, "sky-cambodia")
    household = factories.make_household(session, sky, size=3)
    member = household.members[1]
    _, body = get(client, f"/api/eligibility/{member.member_no}?date=2026-11-25", token)
    expected = member_eligibility(session, member, date(2026, 11, 25))
    assert (body["status"], body["covered"], body["amount_due"]) == (
        expected.status.value,
        expected.covered,
        expected.amount_due,
    )
    assert body["status"] == "PENDING"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
def test_missing_or_bad_token_is_401_and_not_answered(
    client: FlaskClient, session: Session, token: str, header: str | None
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=1)
    headers = {"Authorization": header} if header else {}
    response = client.get(f"/api/eligibility/{household.members[0].member_no}", headers=headers)
    assert response.status_code == 401
    assert "first_name" not in response.get_json()
    assert session.scalars(select(EligibilityCheck)).all() == []


def test_revoked_token_is_refused(client: FlaskClient, session: Session, token: str) -> None:
    revoke_token(session, "poste-thies", utcnow())
    session.commit()
    assert get(client, "/api/eligibility/SN-TN-000001-01", token)[0] == 401


def test_unknown_member_is_404_and_logged(client: FlaskClient, session: Session, token: str) -> None:
    status, body = get(client, "/api/eligibility/SN-XX-999999-01", token)
    assert status == 404 and "error" in body
    session.rollback()
    check = session.scalars(select(EligibilityCheck)).one()
    assert (check.member_no, check.member_id, check.status) == ("SN-XX-999999-01", None, "UNKNOWN")


def test_bad_date_is_400(client: FlaskClient, session: Session, token: str) -> None:
    assert get(client, "/api/eligibility/SN-TN-000001-01?date=15/12/2026", token)[0] == 400


def test_every_check_is_logged_with_facility_member_and_answer(
    client: FlaskClient, session: Session, token: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=2)
    member_no = household.members[0].member_no
    for _ in range(2):
        get(client, f"/api/eligibility/{member_no}?date=2026-12-01", token)
    session.rollback()  # end the test session's read snapshot to see the app's commits
    checks = session.scalars(select(EligibilityCheck).order_by(EligibilityCheck.id)).all()
    assert len(checks) == 2
    assert all(c.facility == "Poste de sante Thies Nord" and c.member_no == member_no for c in checks)
    assert all((c.covered, c.status, c.on_date) == (False, "PENDING", date(2026, 12, 1)) for c in checks)
    assert checks[0].api_token_id is not None and checks[0].channel.value == "api"
