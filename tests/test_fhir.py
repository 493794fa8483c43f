"""FHIR R4 through its HTTP routes (docs/fhir.md): every body parsed with fhir.resources' R4B models, every answer
the eligibility API's, tokens and rate limit shared with it, checks logged, errors as OperationOutcome, NDJSON export.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from commands.demo_data import demo_examples
from models.access.tables import EligibilityCheck
from models.access.tokens import issue_token
from models.base import CheckChannel, utcnow
from models.members.household import Household, Member
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import SchemeFileError, parse_scheme_file
from tests import factories
from tests.admin_helpers import admin_app, db_session, seeded_url, signed_in
from tests.conftest import ROOT, make_test_app

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

FHIR_JSON = "application/fhir+json"


def parsed(response: TestResponse, model: type[BaseModel]) -> dict[str, Any]:
    """Return a FHIR answer's body as its R4B model reads it (validated, content type checked), as JSON values."""
    assert response.mimetype == FHIR_JSON, response.get_data(as_text=True)
    return validated(response.get_data(as_text=True), model)


def validated(text: str, model: type[BaseModel]) -> dict[str, Any]:
    """Return a resource's JSON validated by its R4B model, as the model dumps it."""
    resource: dict[str, Any] = json.loads(model.model_validate_json(text).model_dump_json())
    return resource


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def eligibility_request(patient: dict[str, Any], **elements: Any) -> dict[str, Any]:
    """Return a CoverageEligibilityRequest as a FHIR client posts it."""
    return {
        "resourceType": "CoverageEligibilityRequest",
        "status": "active",
        "purpose": ["validation"],
        "patient": patient,
        "created": "2026-12-15T09:30:00+00:00",
        "insurer": {"display": "Mutuelle"},
        **elements,
    }


def ask(client: FlaskClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/fhir/CoverageEligibilityRequest", json=body, headers=headers(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return parsed(response, CoverageEligibilityResponse)


def api_answer(client: FlaskClient, token: str, member_no: str, on: str | None = None) -> dict[str, Any]:
    query = f"?date={on}" if on else ""
    response = client.get(f"/api/eligibility/{member_no}{query}", headers=headers(token))
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def token(app: Flask, session: Session) -> str:
    _, plain = issue_token(session, name="poste-thies", facility="Poste de sante Thies Nord", now=utcnow())
    session.commit()
    return plain


# ---------------------------------------------------------------- the demo members: FHIR agrees with the API


@pytest.fixture
def demo_client(seeded_url: str, redis_url: str) -> FlaskClient:
    # One facility reads every demo member three ways: more than API_RATE_LIMIT's default minute allows.
    return make_test_app(seeded_url, redis_url, API_RATE_LIMIT="10000/minute").test_client()


@pytest.fixture
def demo_token(db_session: Session) -> str:
    _, plain = issue_token(db_session, name=f"fhir-{uuid.uuid4().hex[:8]}", facility="Centre FHIR", now=utcnow())
    db_session.commit()
    return plain


def test_every_demo_member_gets_the_eligibility_api_answer(
    demo_client: FlaskClient, db_session: Session, demo_token: str
) -> None:
    examples = demo_examples(db_session)
    labels = {example.label for example in examples}
    assert {"cmu active-yearly", "cmu waiting", "cmu lapsed", "sky grace", "cmu inactive (deceased member)"} <= labels
    schemes = {scheme.code: scheme for scheme in db_session.scalars(select(Scheme))}
    for index, example in enumerate(examples):
        number = example.member_no
        scheme = schemes["cmu-thies" if number.startswith("SN") else "sky-cambodia"]
        expected = api_answer(demo_client, demo_token, number)
        # Without a system the value is a member number; with one, the scheme's member system.
        identifier = {"value": number} if index % 2 else {"system": scheme.member_identifier_system, "value": number}
        answer = ask(demo_client, demo_token, eligibility_request({"identifier": identifier}))
        assert answer["outcome"] == "complete", example.label
        assert len(answer["insurance"]) == 1
        insurance = answer["insurance"][0]
        assert insurance["inforce"] is expected["covered"], example.label
        assert answer["disposition"].startswith(expected["status"]), example.label
        assert insurance.get("benefitPeriod", {}).get("end") == expected["valid_until"], example.label
        assert answer["patient"]["identifier"] == {"system": scheme.member_identifier_system, "value": number}

        # The same member's Coverage (a searchset of one) and Patient: what the eligibility API shares.
        found = demo_client.get(f"/fhir/Coverage?beneficiary=Patient/{number}", headers=headers(demo_token))
        bundle = parsed(found, Bundle)
        assert (bundle["type"], bundle["total"], len(bundle["entry"])) == ("searchset", 1, 1)
        cover = validated(json.dumps(bundle["entry"][0]["resource"]), Coverage)
        assert cover["identifier"] == [{"system": scheme.coverage_identifier_system, "value": number}]
        assert cover.get("period", {}).get("end") == expected["valid_until"]
        assert cover["status"] == {"PENDING": "draft", "SUSPENDED": "cancelled", "INACTIVE": "cancelled"}.get(
            expected["status"], "active"
        )
        person = parsed(demo_client.get(f"/fhir/Patient/{number}", headers=headers(demo_token)), Patient)
        assert person["id"] == number
        assert person["name"] == [{"given": [expected["first_name"]]}]  # no more than the eligibility API shares
        assert person["gender"] == {"F": "female", "M": "male"}[expected["sex"]]
        assert person["birthDate"] == str(expected["birth_year"])

    unknown = ask(demo_client, demo_token, eligibility_request({"identifier": {"value": "SN-XX-999999-01"}}))
    assert unknown["outcome"] == "error" and "insurance" not in unknown
    assert unknown["error"][0]["code"]["coding"][0]["code"] == "unknown-member"
    assert api_answer_status(demo_client, demo_token, "SN-XX-999999-01") == 404


def api_answer_status(client: FlaskClient, token: str, member_no: str) -> int:
    return client.get(f"/api/eligibility/{member_no}", headers=headers(token)).status_code


# ---------------------------------------------------------------- eligibility requests


def test_the_date_is_the_service_date_else_created_and_agrees_with_the_api(
    client: FlaskClient, session: Session, token: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=4, enrolled_on=date(2026, 10, 1))
    factories.pay(session, household, 15000, date(2026, 10, 1))
    number = household.members[0].member_no
    patient = {"reference": f"Patient/{number.lower()}"}

    waiting = ask(client, token, eligibility_request(patient, servicedDate="2026-10-15"))
    api = api_answer(client, token, number, "2026-10-15")
    assert (api["status"], api["covered"]) == ("WAITING", False)
    assert waiting["insurance"][0]["inforce"] is False and waiting["servicedDate"] == "2026-10-15"
    assert waiting["disposition"] == "WAITING: waiting period until 2026-10-31"
    assert waiting["insurance"][0]["benefitPeriod"] == {"start": "2026-10-01", "end": api["valid_until"]}

    covered = ask(client, token, eligibility_request(patient))  # no servicedDate: the day it was created
    assert covered["servicedDate"] == "2026-12-15" and covered["insurance"][0]["inforce"] is True
    until = api_answer(client, token, number, "2026-12-15")["valid_until"]
    assert covered["disposition"] == f"ACTIVE: covered until {until}"

    before = ask(client, token, eligibility_request(patient, servicedPeriod={"start": "2026-09-30"}))
    assert before["insurance"] == [{"coverage": before["insurance"][0]["coverage"], "inforce": False}]
    assert before["disposition"] == "PENDING: no premium paid yet"  # nothing covered yet: no benefit period

    # The request is named by its id when the client gave one.
    named = ask(client, token, eligibility_request(patient, id="req-42"))
    assert named["request"]["reference"] == "CoverageEligibilityRequest/req-42"


def test_every_check_is_logged_as_a_facility_check_over_fhir(client: FlaskClient, session: Session, token: str) -> None:
    sky = factories.scheme(session, "sky-cambodia")
    household = factories.make_household(session, sky, size=2)
    number = household.members[1].member_no
    ask(client, token, eligibility_request({"identifier": {"value": number}}, servicedDate="2026-12-01"))
    client.get(f"/fhir/Coverage?beneficiary={number}", headers=headers(token))
    client.get(f"/fhir/Patient/{number}", headers=headers(token))
    ask(client, token, eligibility_request({"identifier": {"value": "KH-PP-999999-01"}}))
    session.rollback()
    checks = session.scalars(select(EligibilityCheck).order_by(EligibilityCheck.id)).all()
    assert [c.channel for c in checks] == [CheckChannel.FHIR] * 4
    assert all(c.facility == "Poste de sante Thies Nord" and c.api_token_id is not None for c in checks)
    assert [(c.member_no, c.status) for c in checks] == [(number, "PENDING")] * 3 + [("KH-PP-999999-01", "UNKNOWN")]
    assert checks[0].on_date == date(2026, 12, 1)


def test_identifier_systems_come_from_the_scheme_file(client: FlaskClient, session: Session, token: str) -> None:
    cmu, sky = factories.scheme(session, "cmu-thies"), factories.scheme(session, "sky-cambodia")
    assert cmu.member_identifier_system == "https://cmu-thies.example/fhir/member-number"  # named in the file
    assert sky.member_identifier_system == "https://mutuelle.example/fhir/sky-cambodia/member"  # the default
    assert sky.coverage_identifier_system == "https://mutuelle.example/fhir/sky-cambodia/coverage"
    number = factories.make_household(session, sky, size=1).members[0].member_no

    by_system = ask(
        client, token, eligibility_request({"identifier": {"system": sky.member_identifier_system, "value": number}})
    )
    assert by_system["outcome"] == "complete" and by_system["insurance"][0]["inforce"] is False
    search = f"/fhir/Coverage?beneficiary:identifier={sky.member_identifier_system}|{number}"
    assert parsed(client.get(search, headers=headers(token)), Bundle)["total"] == 1

    # Another system's identifier is no member number here: an error outcome, nothing looked up.
    foreign = ask(client, token, eligibility_request({"identifier": {"system": "urn:oid:1.2.3", "value": number}}))
    assert foreign["outcome"] == "error" and "insurance" not in foreign
    empty = parsed(
        client.get(f"/fhir/Coverage?beneficiary:identifier=urn:oid:1.2.3|{number}", headers=headers(token)), Bundle
    )
    assert empty["total"] == 0 and "entry" not in empty
    session.rollback()
    assert session.scalar(select(func.count()).select_from(EligibilityCheck)) == 2


def test_a_scheme_file_names_valid_systems(tmp_path: Any) -> None:
    text = (ROOT / "schemes" / "sky-cambodia.toml").read_text(encoding="utf-8")
    for table, field in (
        ('[fhir]\nmember_identifier_system = "not a uri"\n', "fhir.member_identifier_system"),
        (
            '[fhir]\nmember_identifier_system = "urn:x:m"\ncoverage_identifier_system = "urn:x:m"\n',
            "fhir.coverage_identifier_system",
        ),
    ):
        path = tmp_path / "scheme.toml"
        path.write_text(text + "\n" + table, encoding="utf-8")
        with pytest.raises(SchemeFileError) as raised:
            parse_scheme_file(path)
        assert raised.value.field_name == field


# ---------------------------------------------------------------- metadata, errors, limits


def test_metadata_is_public_and_a_capability_statement(client: FlaskClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = parsed(response, CapabilityStatement)
    assert (statement["fhirVersion"], statement["kind"]) == ("4.0.1", "instance")
    resources = statement["rest"][0]["resource"]
    offered = {resource["type"]: [i["code"] for i in resource["interaction"]] for resource in resources}
    assert offered == {"Patient": ["read"], "Coverage": ["search-type"], "CoverageEligibilityRequest": ["create"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/fhir/CoverageEligibilityRequest", eligibility_request({"identifier": {"value": "SN-TN-000001-01"}})),
        ("get", "/fhir/Coverage?beneficiary=SN-TN-000001-01", None),
        ("get", "/fhir/Patient/SN-TN-000001-01", None),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc"])
def test_without_a_valid_token_the_answer_is_a_401_outcome_and_nothing_is_logged(
    client: FlaskClient, session: Session, token: str, method: str, path: str, body: Any, header: str | None
) -> None:
    response = getattr(client, method)(path, json=body, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    outcome = parsed(response, OperationOutcome)
    assert (outcome["issue"][0]["code"], outcome["issue"][0]["severity"]) == ("login", "error")
    assert session.scalars(select(EligibilityCheck)).all() == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"resourceType": "Patient"}, "CoverageEligibilityRequest"),
        (eligibility_request({"display": "Awa"}), "patient"),
        (eligibility_request({"identifier": {"system": "urn:x"}}), "patient.identifier.value"),
        (eligibility_request({"reference": "Practitioner/12"}), "patient.reference"),
        (eligibility_request({"identifier": {"value": "SN-TN-000001-01"}}, servicedDate="15/12/2026"), "servicedDate"),
        (eligibility_request({"identifier": {"value": "SN-TN-000001-01"}}, created="2026-12"), "created"),
        (eligibility_request({"identifier": {"value": "X" * 45}}), "patient.identifier.value"),
    ],
)
def test_an_unreadable_request_is_a_400_outcome_naming_the_element(
    client: FlaskClient, session: Session, token: str, body: dict[str, Any], named: str
) -> None:
    response = client.post("/fhir/CoverageEligibilityRequest", json=body, headers=headers(token))
    assert response.status_code == 400
    outcome = parsed(response, OperationOutcome)
    assert outcome["issue"][0]["code"] == "invalid" and named in outcome["issue"][0]["diagnostics"]


def test_other_errors_are_outcomes_too(client: FlaskClient, session: Session, token: str) -> None:
    not_json = client.post("/fhir/CoverageEligibilityRequest", data=b"{nope", headers=headers(token))
    assert not_json.status_code == 400 and parsed(not_json, OperationOutcome)["issue"][0]["code"] == "invalid"
    unknown = client.get("/fhir/Patient/SN-XX-999999-01", headers=headers(token))
    assert unknown.status_code == 404 and parsed(unknown, OperationOutcome)["issue"][0]["code"] == "not-found"
    no_search = client.get("/fhir/Coverage", headers=headers(token))
    assert no_search.status_code == 400
    assert "beneficiary" in parsed(no_search, OperationOutcome)["issue"][0]["diagnostics"]
    too_big = client.post(
        "/fhir/CoverageEligibilityRequest", data=json.dumps({"x": "y" * 70_000}), headers=headers(token)
    )
    assert too_big.status_code == 413 and parsed(too_big, OperationOutcome)["issue"][0]["code"] == "too-costly"


def test_the_rate_limit_is_the_read_apis_and_answers_an_outcome(db_url: str, redis_url: str, session: Session) -> None:
    app = make_test_app(db_url, redis_url, API_RATE_LIMIT="3/minute")
    _, plain = issue_token(session, name="limited", facility="Poste", now=utcnow())
    session.commit()
    client = app.test_client()
    codes = [
        client.get("/api/eligibility/SN-XX-1", headers=headers(plain)).status_code,
        client.get("/fhir/Patient/SN-XX-1", headers=headers(plain)).status_code,
        client.get("/fhir/Coverage?beneficiary=SN-XX-1", headers=headers(plain)).status_code,
    ]
    assert codes == [404, 404, 200]
    refused = client.get("/fhir/Patient/SN-XX-1", headers=headers(plain))
    assert refused.status_code == 429 and parsed(refused, OperationOutcome)["issue"][0]["code"] == "throttled"
    assert client.get("/fhir/metadata").status_code == 200  # public, never limited


# ---------------------------------------------------------------- bulk export (admin)


def test_the_ndjson_export_holds_every_selected_member_as_valid_resources(
    admin_app: Flask, db_session: Session
) -> None:
    client = signed_in(admin_app)
    cmu = db_session.scalars(select(Scheme).where(Scheme.code == "cmu-thies")).one()
    members = db_session.scalar(
        select(func.count()).select_from(Member).join(Household).where(Household.scheme_id == cmu.id)
    )
    with client.get(f"/admin/exports/fhir-patient.ndjson?scheme={cmu.id}") as response:
        assert response.status_code == 200 and response.mimetype == "application/fhir+ndjson"
        lines = response.get_data(as_text=True).splitlines()
    patients = [validated(line, Patient) for line in lines]
    assert len(patients) == members
    assert all(p["identifier"][0]["system"] == cmu.member_identifier_system for p in patients)
    assert all(p["name"][0]["family"] and len(p["birthDate"]) == 10 for p in patients)  # the export's full identity

    with client.get(f"/admin/exports/fhir-coverage.ndjson?scheme={cmu.id}&on=2026-12-15") as response:
        covers = [validated(line, Coverage) for line in response.get_data(as_text=True).splitlines()]
    assert len(covers) == members
    assert {c["status"] for c in covers} == {"active", "draft", "cancelled"}
    assert all(c["subscriberId"] and c["payor"] == [{"display": cmu.name}] for c in covers)
    # Another scheme, another file; anonymous, the sign-in page.
    with client.get("/admin/exports/fhir-patient.ndjson?scheme=999999") as response:
        assert response.get_data() == b""
    with admin_app.test_client().get("/admin/exports/fhir-coverage.ndjson") as response:
        assert response.status_code == 302


def test_the_exports_page_offers_the_fhir_files(admin_app: Flask) -> None:
    client = signed_in(admin_app)
    page = client.get("/admin/exports").get_data(as_text=True)
    actions = re.findall(r'<form class="filters" method="get" action="([^"]+\.ndjson)"', page)
    assert actions == ["/admin/exports/fhir-patient.ndjson", "/admin/exports/fhir-coverage.ndjson"]
    models: tuple[type[BaseModel], ...] = (Patient, Coverage)
    for action, model in zip(actions, models, strict=True):  # the forms' defaults: everyone, today
        with client.get(f"{action}?scheme=&commune=&network=&plan=&category=&on={date.today()}") as response:
            lines = response.get_data(as_text=True).splitlines()
        assert len(lines) > 150 and all(validated(line, model)["resourceType"] == model.__name__ for line in lines[:20])
