"""Read APIs for health facilities and auditors, behind hashed bearer tokens."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from extensions import db
from models.access import ApiToken
from models.base import CheckChannel, utcnow
from models.checks import check_member
from models.tokens import authenticate_token

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.errorhandler(HTTPException)
def json_error(error: HTTPException) -> ResponseReturnValue:
    """Answer API errors as JSON."""
    return jsonify(error=error.name, detail=error.description), error.code or 500


def require_token() -> ApiToken:
    """Return the caller's API token, or answer 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    token = authenticate_token(db(), presented.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        abort(401, "a valid API token is required: Authorization: Bearer <token>")
    token.last_used_at = utcnow()
    return token


@bp.get("/eligibility/<member_no>")
def eligibility(member_no: str) -> ResponseReturnValue:
    """Answer whether a member is covered on a date (default: today in the scheme's time zone)."""
    token = require_token()
    on: date | None = None
    if "date" in request.args:
        try:
            on = date.fromisoformat(request.args["date"])
        except ValueError:
            abort(400, "date must be YYYY-MM-DD")
    session = db()
    answer = check_member(session, member_no, on, CheckChannel.API, token.facility, api_token_id=token.id)
    session.commit()
    if answer is None:
        abort(404, f"no member {member_no}")
    return jsonify(answer.as_json())
