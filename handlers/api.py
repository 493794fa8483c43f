"""Read APIs for health facilities and auditors, behind hashed bearer tokens, rate-limited per token."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import date

from flask import Blueprint, Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RequestLimit
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from extensions import db
from handlers import sync_view
from models.access.tables import ApiToken
from models.access.tokens import authenticate_token, hash_token
from models.base import CheckChannel, utcnow
from models.coverage.checks import check_member
from models.inputs import InputError, check_text, parse_query_date
from models.views.scope import scope_session

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)
# The read-API views limited per token (the payment status view lives with the payment callbacks).
LIMITED_ENDPOINTS = ("api.eligibility", "payments.payment_status")
MEMBER_NO_MAX = 44


@bp.errorhandler(HTTPException)
def json_error(error: HTTPException) -> ResponseReturnValue:
    """Answer API errors as JSON."""
    return jsonify(error=error.name, detail=error.description), error.code or 500


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails (the facility may ask again)."""
    return unavailable(exc)


def unavailable(exc: Exception) -> ResponseReturnValue:
    """Answer 503 JSON after a database failure, the transaction rolled back."""
    log.error("read api: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return jsonify(error="Service Unavailable", detail="the database does not answer; try again"), 503


def _presented() -> str | None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


def require_token() -> ApiToken:
    """Return the caller's API token (its use counted), or answer 401; keep the request to the token's mutuelle.

    A token kept to a mutuelle reads only its members and payments (`scope_session`): another mutuelle's member
    answers as an unknown one.
    """
    presented = _presented()
    token = authenticate_token(db(), presented) if presented else None
    if token is None:
        abort(401, "a valid API token is required: Authorization: Bearer <token>")
    if token.mutuelle_id is not None:
        scope_session(db(), [token.mutuelle_id])
    token.last_used_at = utcnow()
    token.request_count = ApiToken.request_count + 1
    return token


def rate_key() -> str:
    """Return the rate-limit key of a read-API request: the presented token's hash (never the token)."""
    presented = _presented() or ""
    return "api-token:" + hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _count_refusal(_limit: RequestLimit) -> None:
    """Count a 429 against the token that was refused (shown per token in the admin)."""
    presented = _presented()
    if not presented:
        return
    session = db()
    try:
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_token(presented))
            .values(limited_count=ApiToken.limited_count + 1)
        )
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("read api: refusal not counted (%s)", type(exc).__name__)


def register_limits(app: Flask, endpoints: tuple[str, ...] = LIMITED_ENDPOINTS) -> None:
    """Limit the read-API views (and any other token views named) together to `API_RATE_LIMIT` requests per token."""
    limiter: Limiter = app.extensions["admin_limiter"]
    for endpoint in endpoints:
        app.view_functions[endpoint] = limiter.shared_limit(
            lambda: app.config["API_RATE_LIMIT"],
            scope="read-api",
            key_func=rate_key,
            on_breach=_count_refusal,
            error_message="too many requests with this token; slow down",
        )(sync_view(app.view_functions[endpoint]))


@bp.get("/eligibility/<member_no>")
def eligibility(member_no: str) -> ResponseReturnValue:
    """Answer whether a member is covered on a date (default: today in the scheme's time zone)."""
    token = require_token()
    on: date | None = None
    try:
        number = check_text(member_no, "member number", MEMBER_NO_MAX, required=True)
        if "date" in request.args:
            on = parse_query_date(request.args["date"], "date")
    except InputError as exc:
        db().commit()  # the token's use
        abort(400, str(exc))
    session = db()
    answer = check_member(session, number, on, CheckChannel.API, token.facility, api_token_id=token.id)
    session.commit()
    if answer is None:
        abort(404, f"no member {number}")
    return jsonify(answer.as_json())
