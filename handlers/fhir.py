"""FHIR R4 for health facilities (docs/fhir.md): the eligibility API's answers as FHIR resources.

Behind the same API tokens and rate limit as `/api/eligibility` (handlers/api.py), every lookup logged as a
facility check (channel `fhir`); `GET /fhir/metadata` is public. Errors are OperationOutcome resources.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from extensions import db
from handlers.api import require_token
from handlers.guards import limit_body
from models.base import utcnow
from models.fhir.checks import check_patient
from models.fhir.requests import (
    FhirInputError,
    beneficiary_search,
    member_number,
    read_eligibility_request,
    unknown_system_text,
)
from models.fhir.resources import (
    capability_statement,
    coverage,
    eligibility_response,
    operation_outcome,
    patient,
    searchset,
    unknown_member_response,
)
from models.inputs import InputError, check_text

bp = Blueprint("fhir", __name__, url_prefix="/fhir")
log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
BODY_MAX_BYTES = 64 * 1024
# The views limited per token together with the read API (handlers/api.py registers the limit).
LIMITED_ENDPOINTS = ("fhir.eligibility_request", "fhir.coverage_search", "fhir.patient_read")
# HTTP status → OperationOutcome issue type (http://hl7.org/fhir/issue-type).
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}


def fhir_response(resource: BaseModel, status: int = 200) -> Response:
    """Return a resource as `application/fhir+json`."""
    return Response(resource.model_dump_json(), status=status, mimetype=FHIR_JSON)


@bp.errorhandler(HTTPException)
def fhir_error(error: HTTPException) -> ResponseReturnValue:
    """Answer FHIR errors as an OperationOutcome."""
    status = error.code or 500
    outcome = operation_outcome(ISSUE_TYPES.get(status, "exception"), error.description or error.name)
    return fhir_response(outcome, status)


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails (the facility may ask again)."""
    log.error("fhir: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return fhir_response(operation_outcome("transient", "the database does not answer; try again"), 503)


def _refuse(message: str) -> NoReturn:
    db().commit()  # the token's use
    abort(400, message)


def _base_url() -> str:
    return url_for("fhir.metadata", _external=True).removesuffix("/metadata")


@bp.get("/metadata")
def metadata() -> ResponseReturnValue:
    """Answer the CapabilityStatement (public: no token)."""
    return fhir_response(capability_statement(_base_url()))


@bp.post("/CoverageEligibilityRequest")
def eligibility_request() -> ResponseReturnValue:
    """Answer a CoverageEligibilityRequest with a CoverageEligibilityResponse: in force on the date or not."""
    token = require_token()
    limit_body(request, BODY_MAX_BYTES)
    body: Any = request.get_json(force=True, silent=True)
    try:
        question = read_eligibility_request(body)
    except FhirInputError as exc:
        _refuse(str(exc))
    session = db()
    now = utcnow()
    number = member_number(session, question.patient)
    found = None
    if number is not None:
        found = check_patient(session, number, question.on, token.facility, token.id)
    session.commit()
    if found is None:
        text = unknown_system_text(question.patient) if number is None else f"no member {question.patient.value}"
        insurer = question.insurer or "Mutuelle"
        return fhir_response(
            unknown_member_response(question.patient.reference(), text, question.request, insurer, now)
        )
    return fhir_response(eligibility_response(found.scheme, found.person.member_no, found.cover, question.request, now))


@bp.get("/Coverage")
def coverage_search() -> ResponseReturnValue:
    """Answer a Coverage search by beneficiary: a searchset Bundle of the member's Coverage today (or none)."""
    token = require_token()
    try:
        name = beneficiary_search(request.args.to_dict())
    except FhirInputError as exc:
        _refuse(str(exc))
    session = db()
    number = member_number(session, name)
    found = check_patient(session, number, None, token.facility, token.id) if number is not None else None
    session.commit()
    matches = [coverage(found.scheme, found.person.member_no, found.cover)] if found else []
    return fhir_response(searchset(list(matches), request.url, _base_url()))


@bp.get("/Patient/<member_no>")
def patient_read(member_no: str) -> ResponseReturnValue:
    """Answer a member's Patient: member number, first name, gender, birth year (as the eligibility API shares)."""
    token = require_token()
    try:
        number = check_text(member_no, "member number", 44, required=True)
    except InputError as exc:
        _refuse(str(exc))
    session = db()
    found = check_patient(session, number, None, token.facility, token.id)
    session.commit()
    if found is None:
        abort(404, f"no member {number.upper()}")
    return fhir_response(patient(found.scheme, found.person))
