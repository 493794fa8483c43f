"""Payment notifications in (Wave, Safaricom Daraja C2B, sandbox, forwarded operator texts).

Each route turns its payload into one normalised report, stores it (payment + evidence) in one transaction, answers
2xx once committed, then enqueues `reconcile`. A database failure answers 503 with nothing stored; a Redis failure
after the commit is logged only (the clock's sweeper re-enqueues payments left in RECEIVED). A payload that cannot
be taken is answered 400 naming what is wrong and kept in `rejected_callbacks` for review (once per raw body).

Authentication, each source its own (handlers.guards): Wave by its `Wave-Signature` HMAC (or the Bearer shared
secret) alone; Daraja by `DARAJA_CALLBACK_TOKEN` (+ `DARAJA_ALLOWED_IPS`); the sandbox by the Africa's Talking
callback token (development only); a collection device by its own key, `Authorization: Bearer <device key>`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from extensions import db, settings
from handlers.guards import callback, daraja_callback, device_callback, signed_callback
from logs import mask_phone
from models.access.devices import KeyVerdict, authenticate_device, bearer_key
from models.db import begin_write
from models.inputs import InputError, check_text
from models.payments.intake import IntakeResult, Report, payment_view, record_report
from models.payments.rejections import keep_rejected
from models.payments.sources import (
    PayloadError,
    account_parameter,
    daraja_amount_valid,
    daraja_report,
    is_known_account,
    load_json,
    operator_patterns,
    sandbox_report,
    take_forwarded_text,
    verify_wave_bearer,
    verify_wave_signature,
    wave_report,
)
from models.schemes.mutuelle import ReportedAccount, mutuelles_of_account
from models.views.scope import scope_session
from workers.reconcile import reconcile_after_commit

bp = Blueprint("payments", __name__)
log = logging.getLogger(__name__)

DARAJA_ACCEPTED = {"ResultCode": "0", "ResultDesc": "Accepted"}
DARAJA_REJECT_ACCOUNT = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
DARAJA_REJECT_AMOUNT = {"ResultCode": "C2B00013", "ResultDesc": "Rejected"}
DARAJA_REJECT_OTHER = {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}


@bp.errorhandler(HTTPException)
def json_error(error: HTTPException) -> ResponseReturnValue:
    """Answer refusals (401, 403, 413, 429…) as JSON naming what is wrong."""
    return jsonify(status=error.name.lower(), error=error.description), error.code or 400


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails: the transaction is rolled back, so nothing is stored."""
    log.error("payment intake: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return jsonify(status="unavailable"), 503


def _writer() -> Session:
    """Return the request's session inside a write transaction (BEGIN IMMEDIATE on SQLite).

    Adapters read (currency exponents, devices) before intake writes; on SQLite a transaction that began as a
    reader cannot safely become a writer under concurrent requests, so a storing route starts as a writer.
    """
    session = db()
    begin_write(session)
    return session


def _store(report: Report) -> IntakeResult:
    """Store the report, commit, then enqueue reconcile when the payment needs it."""
    return _committed(report, record_report(db(), report))


def _committed(report: Report, result: IntakeResult) -> IntakeResult:
    """Commit a recorded report, log it, then enqueue reconcile when the payment needs it."""
    if result.needs_reconcile:
        reconcile_after_commit(db(), [result.payment_id], settings())
    db().commit()
    log.info(
        "payment %s %s/%s from %s: %s (%s), payer %s",
        result.payment_id,
        report.provider,
        report.provider_txn_id,
        report.route,
        result.outcome.value,
        result.status.value,
        mask_phone(report.payer_phone),
    )
    return result


def _stored_reply(result: IntakeResult) -> dict[str, Any]:
    return {"status": "stored", "outcome": result.outcome.value, "payment_status": result.status.value}


def reject(source: str, body: bytes, reason: str, status: int = 400, device_id: int | None = None) -> None:
    """Keep a payment notification we refused for staff review (once per raw body); never dropped."""
    keep_rejected(db(), source, body, reason, status, content_type=request.content_type, device_id=device_id)
    log.warning("payment notification to %s refused (%s) and kept for review: %s", source, status, reason)


def _invalid(source: str, body: bytes, exc: InputError, device_id: int | None = None) -> ResponseReturnValue:
    reject(source, body, str(exc), 400, device_id)
    return jsonify(status="invalid", error=str(exc)), 400


@bp.post("/payments/wave")
@signed_callback
def wave() -> ResponseReturnValue:
    """Store a Wave payment event signed with the webhook secret (or the Bearer shared secret)."""
    body = request.get_data(cache=True)
    current = settings()
    signed = verify_wave_signature(request.headers.get("Wave-Signature"), body, current.WAVE_WEBHOOK_SECRET)
    if not signed and not verify_wave_bearer(request.headers.get("Authorization"), current.WAVE_SHARED_SECRET):
        return jsonify(status="unauthorized"), 401
    try:
        account = account_parameter(request.args.get("account"))
        report = wave_report(_writer(), load_json(body), body.decode("utf-8"), account)
    except InputError as exc:
        return _invalid("wave", body, exc)
    if report is None:
        return jsonify(status="ignored"), 200
    return jsonify(_stored_reply(_store(report))), 200


@bp.post("/payments/daraja/validate")
@daraja_callback
def daraja_validate() -> ResponseReturnValue:
    """Accept a C2B payment whose BillRefNumber names an open request, household, member or network."""
    try:
        payload = load_json(request.get_data())
    except InputError:
        return jsonify(DARAJA_REJECT_OTHER)
    if not isinstance(payload, dict):
        return jsonify(DARAJA_REJECT_OTHER)
    session = db()
    if not daraja_amount_valid(session, payload):
        return jsonify(DARAJA_REJECT_AMOUNT)
    # The paybill paid names its mutuelles: the account number must be one of theirs (the lookups below are kept
    # to them, as a scoped admin's are); a paybill no mutuelle lists accepts any mutuelle's.
    shortcode = payload.get("BusinessShortCode")
    if isinstance(shortcode, str | int) and not isinstance(shortcode, bool):
        scope_session(session, mutuelles_of_account(session, ReportedAccount("mpesa", str(shortcode))))
    if not is_known_account(session, payload.get("BillRefNumber")):
        return jsonify(DARAJA_REJECT_ACCOUNT)
    return jsonify(DARAJA_ACCEPTED)


@bp.post("/payments/daraja/confirm")
@daraja_callback
def daraja_confirm() -> ResponseReturnValue:
    """Store a C2B confirmation (Safaricom does not retry: an unreadable one is answered 400 and kept for review)."""
    body = request.get_data()
    try:
        report = daraja_report(_writer(), load_json(body), body.decode("utf-8"))
    except InputError as exc:
        reject("daraja_confirm", body, str(exc))
        return jsonify({**DARAJA_REJECT_OTHER, "error": str(exc)}), 400
    _store(report)
    return jsonify(DARAJA_ACCEPTED)


@bp.post("/payments/sandbox")
@callback
def sandbox() -> ResponseReturnValue:
    """Store a sandbox payment `{txn_id, amount, currency, phone, reference, account?}` (not in production)."""
    if settings().is_production:
        abort(404)
    body = request.get_data()
    try:
        report = sandbox_report(_writer(), load_json(body), body.decode("utf-8"))
    except InputError as exc:
        return jsonify(status="invalid", error=str(exc)), 400
    return jsonify(_stored_reply(_store(report))), 200


@bp.post("/payments/sms-forward")
@device_callback
def sms_forward() -> ResponseReturnValue:
    """Store an operator text forwarded by a collection device with its own key: a payment, or kept for review."""
    body = request.get_data()
    session = db()
    try:
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise PayloadError("body must be an object")
        claimed = check_text(payload.get("device"), "device", 80) or None
    except InputError as exc:
        payload, claimed = None, None
        problem: InputError | None = exc
    else:
        problem = None
    auth = authenticate_device(session, bearer_key(request.headers.get("Authorization")), claimed)
    if auth.verdict is not KeyVerdict.OK or auth.device is None:
        if auth.device is None:
            return jsonify(status="forbidden", error=auth.verdict.value), 403
        # A registered phone without its current key (rotated, revoked, or never re-keyed): kept for review.
        reject("sms_forward", body, auth.verdict.value, 403, device_id=auth.device.id)
        return jsonify(status="forbidden", error=auth.verdict.value), 403
    device = auth.device
    if problem is not None:
        return _invalid("sms_forward", body, problem, device.id)
    session.rollback()
    begin_write(session)  # a writer from here (SQLite): the device reloads in this transaction
    try:
        patterns = operator_patterns(settings().OPERATOR_SMS_FILE)
        intake = take_forwarded_text(session, patterns, device, payload, body.decode("utf-8"))
    except InputError as exc:
        return _invalid("sms_forward", body, exc, device.id)
    forwarded = intake.forwarded
    if intake.result is None:
        session.commit()
        sender = mask_phone(forwarded.sender) if any(c.isdigit() for c in forwarded.sender) else forwarded.sender
        log.info("forwarded text from %s on device %s kept for review", sender, device.id)
        return jsonify(status="ignored" if forwarded.not_a_payment else "review", reason=forwarded.reason), 200
    assert forwarded.report is not None
    return jsonify(_stored_reply(_committed(forwarded.report, intake.result))), 200


@bp.get("/api/payments/<provider>/<path:provider_txn_id>")
def payment_status(provider: str, provider_txn_id: str) -> ResponseReturnValue:
    """Answer a facility's or auditor's question: where is this operator transaction? (Bearer API token)."""
    from handlers.api import require_token

    token = require_token()
    session = db()
    try:
        provider = check_text(provider, "provider", 40, required=True)
        provider_txn_id = check_text(provider_txn_id, "provider_txn_id", 80, required=True)
    except InputError as exc:
        session.commit()  # the token's use
        return jsonify(error="Bad Request", detail=str(exc)), 400
    view = payment_view(session, provider, provider_txn_id)
    log.info(
        "payment lookup by %s: %s/%s → %s", token.facility, provider, provider_txn_id, view.status if view else 404
    )
    session.commit()  # the token's last use
    if view is None:
        return jsonify(error="unknown payment"), 404
    return jsonify(asdict(view))
