"""Payment notifications in (Wave, Safaricom Daraja C2B, sandbox, forwarded operator texts).

Each route turns its payload into one normalised report, stores it (payment + evidence) in one transaction, answers
2xx once committed, then enqueues `reconcile`. A database failure answers 503 with nothing stored; a Redis failure
after the commit is logged only (the clock's sweeper re-enqueues payments left in RECEIVED).

Authentication: Daraja, sandbox and SMS forwards carry the callback token (`@callback`). Wave signs its webhooks:
the `Wave-Signature` HMAC (or the Bearer shared secret) is the authority there, so the callback token is optional on
`/payments/wave` — but a wrong one is still refused (403).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from extensions import db, settings
from handlers.guards import callback, signed_callback
from logs import mask_phone
from models.db import begin_write
from models.payment_intake import IntakeResult, Report, payment_view, record_report, store_unparsed
from models.payment_sources import (
    PayloadError,
    daraja_amount_valid,
    daraja_report,
    find_device,
    is_known_account,
    load_json,
    operator_patterns,
    sandbox_report,
    take_forwarded_text,
    verify_wave_bearer,
    verify_wave_signature,
    wave_report,
)
from models.tokens import authenticate_token
from workers.connections import get_queue
from workers.reconcile import enqueue_reconcile

bp = Blueprint("payments", __name__)
log = logging.getLogger(__name__)

DARAJA_ACCEPTED = {"ResultCode": "0", "ResultDesc": "Accepted"}
DARAJA_REJECT_ACCOUNT = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
DARAJA_REJECT_AMOUNT = {"ResultCode": "C2B00013", "ResultDesc": "Rejected"}
DARAJA_REJECT_OTHER = {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}


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
    if result.needs_reconcile:
        try:
            enqueue_reconcile(get_queue(settings().REDIS_URL, settings().RQ_QUEUE), result.payment_id)
        except RedisError as exc:
            log.warning("payment %s stored but not enqueued (%s): the sweeper will", result.payment_id, exc)
    return result


def _stored_reply(result: IntakeResult) -> dict[str, Any]:
    return {"status": "stored", "outcome": result.outcome.value, "payment_status": result.status.value}


def _review(sender: str, text: str, reason: str) -> None:
    """Keep a payment notification we could not read for staff review (never dropped)."""
    session = db()
    store_unparsed(session, None, sender, text, reason)
    session.commit()
    log.warning("payment notification from %s kept for review: %s", sender, reason)


@bp.post("/payments/wave")
@signed_callback
def wave() -> ResponseReturnValue:
    """Store a Wave payment event signed with the webhook secret (or the Bearer shared secret)."""
    body = request.get_data(cache=True)
    current = settings()
    signed = verify_wave_signature(request.headers.get("Wave-Signature"), body, current.WAVE_WEBHOOK_SECRET)
    if not signed and not verify_wave_bearer(request.headers.get("Authorization"), current.WAVE_SHARED_SECRET):
        return jsonify(status="unauthorized"), 401
    raw = body.decode("utf-8", errors="replace")
    try:
        report = wave_report(_writer(), load_json(body), raw)
    except PayloadError as exc:
        _review("wave", raw, f"wave event unreadable: {exc}")
        return jsonify(status="review"), 200
    if report is None:
        return jsonify(status="ignored"), 200
    return jsonify(_stored_reply(_store(report))), 200


@bp.post("/payments/daraja/validate")
@callback
def daraja_validate() -> ResponseReturnValue:
    """Accept a C2B payment whose BillRefNumber names an open request, household, member or network."""
    try:
        payload = load_json(request.get_data())
    except PayloadError:
        return jsonify(DARAJA_REJECT_OTHER)
    if not isinstance(payload, dict):
        return jsonify(DARAJA_REJECT_OTHER)
    session = db()
    if not daraja_amount_valid(session, payload):
        return jsonify(DARAJA_REJECT_AMOUNT)
    if not is_known_account(session, payload.get("BillRefNumber")):
        return jsonify(DARAJA_REJECT_ACCOUNT)
    return jsonify(DARAJA_ACCEPTED)


@bp.post("/payments/daraja/confirm")
@callback
def daraja_confirm() -> ResponseReturnValue:
    """Store a C2B confirmation (Safaricom does not retry: an unreadable one is kept for review)."""
    body = request.get_data()
    raw = body.decode("utf-8", errors="replace")
    try:
        report = daraja_report(_writer(), load_json(body), raw)
    except PayloadError as exc:
        _review("daraja", raw, f"C2B confirmation unreadable: {exc}")
        return jsonify(DARAJA_ACCEPTED)
    _store(report)
    return jsonify(DARAJA_ACCEPTED)


@bp.post("/payments/sandbox")
@callback
def sandbox() -> ResponseReturnValue:
    """Store a sandbox payment `{txn_id, amount, currency, phone, reference}` (not in production)."""
    if settings().is_production:
        abort(404)
    body = request.get_data()
    try:
        report = sandbox_report(_writer(), load_json(body), body.decode("utf-8", errors="replace"))
    except PayloadError as exc:
        return jsonify(status="invalid", error=str(exc)), 400
    return jsonify(_stored_reply(_store(report))), 200


@bp.post("/payments/sms-forward")
@callback
def sms_forward() -> ResponseReturnValue:
    """Store an operator text forwarded by a registered collection device: a payment, or kept for review."""
    body = request.get_data()
    raw = body.decode("utf-8", errors="replace")
    try:
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise PayloadError("body must be an object")
        session = _writer()
        device = find_device(session, payload.get("device"))
        if device is None:
            return jsonify(status="forbidden", error="unknown device"), 403
        intake = take_forwarded_text(session, operator_patterns(settings().OPERATOR_SMS_FILE), device, payload, raw)
    except PayloadError as exc:
        return jsonify(status="invalid", error=str(exc)), 400
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
    scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    session = db()
    token = authenticate_token(session, presented.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return jsonify(error="unauthorized"), 401, {"WWW-Authenticate": "Bearer"}
    view = payment_view(session, provider, provider_txn_id)
    log.info(
        "payment lookup by %s: %s/%s → %s", token.facility, provider, provider_txn_id, view.status if view else 404
    )
    session.commit()  # the token's last use
    if view is None:
        return jsonify(error="unknown payment"), 404
    return jsonify(asdict(view))
