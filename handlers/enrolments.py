"""The enrolment API for collection officers: submit a household or a change to one, read what became of it.

`Authorization: Bearer <collector key>` (`flask --app app collectors create`). A form sent twice (same `client_id`)
is one enrolment: 201 the first time, 200 with the same id after (after NEEDS_CHANGES, the corrected form replaces
its content and it is SUBMITTED again). Bad fields: 422 naming each one.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from extensions import db
from handlers.guards import limit_body
from models.base import utcnow
from models.enrolment.changes import changed_household, member_label, submit_form
from models.enrolment.collector_views import collector_enrolments, form_choices
from models.enrolment.collectors import authenticate_collector
from models.enrolment.tables import Collector, Enrolment
from models.inputs import InputError, load_json_body

bp = Blueprint("enrolments", __name__, url_prefix="/api/enrolments")
log = logging.getLogger(__name__)
BODY_MAX_BYTES = 64 * 1024  # a household of 30 people is a few kilobytes
# Limited per key together with the read APIs (app.py registers the limit).
LIMITED_ENDPOINTS = ("enrolments.submit", "enrolments.read", "enrolments.listing", "enrolments.choices")


@bp.errorhandler(HTTPException)
def json_error(error: HTTPException) -> ResponseReturnValue:
    """Answer errors as JSON."""
    return jsonify(error=error.name, detail=error.description), error.code or 500


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails (the form may be sent again: it is idempotent)."""
    log.error("enrolments: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return jsonify(error="Service Unavailable", detail="the database does not answer; try again"), 503


def require_collector() -> Collector:
    """Return the collector whose key the request carries, or answer 401."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    key = presented.strip() if scheme.lower() == "bearer" else ""
    collector = authenticate_collector(db(), key) if key else None
    if collector is None:
        abort(401, "a valid collector key is required: Authorization: Bearer <key>")
    return collector


@bp.post("")
def submit() -> ResponseReturnValue:
    """Store a household enrolment (or a change: `household_no`) once per client id; answer id, status, candidates."""
    collector = require_collector()
    limit_body(request, BODY_MAX_BYTES)
    try:
        payload = load_json_body(request.get_data())
    except InputError as exc:
        abort(400, str(exc))
    session = db()
    outcome = submit_form(session, collector, payload, collector.mutuelle.scheme.local_today(utcnow()))
    if outcome.errors:
        session.rollback()
        return jsonify(errors=outcome.errors), 422
    enrolment = outcome.enrolment
    assert enrolment is not None
    session.commit()
    body = {"id": enrolment.id, "status": enrolment.status.value, "duplicates": enrolment.duplicates}
    return jsonify(body), 201 if outcome.created else 200


@bp.get("/<int:enrolment_id>")
def read(enrolment_id: int) -> ResponseReturnValue:
    """Answer what became of one of the collector's enrolments: status, reason, household number (once validated)."""
    collector = require_collector()
    enrolment = db().get(Enrolment, enrolment_id)
    if enrolment is None or enrolment.collector_id != collector.id:
        abort(404, f"no enrolment {enrolment_id} of yours")
    household = changed_household(enrolment)
    return jsonify(
        id=enrolment.id,
        client_id=enrolment.client_id,
        kind=enrolment.kind,
        status=enrolment.status.value,
        reason=enrolment.reason,
        household_no=household.household_no if household is not None else None,
        members=[{"member": member_label(enrolment, m), "member_no": m.member_no} for m in enrolment.members],
    )


@bp.get("")
def listing() -> ResponseReturnValue:
    """Answer the collector's own enrolments, newest first (at most 200): status, reason, household number."""
    collector = require_collector()
    return jsonify(enrolments=collector_enrolments(db(), collector))


@bp.get("/form")
def choices() -> ResponseReturnValue:
    """Answer what the collector's form offers: mutuelle, communes, networks, plans, categories, phone format."""
    collector = require_collector()
    return jsonify(form_choices(db(), collector))
