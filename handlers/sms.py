"""Africa's Talking SMS callbacks: inbound messages (commands) and delivery reports of outbound messages.

A form that cannot be taken (a field missing, too long, with a NUL byte…) is answered 400 naming the field and
kept in `rejected_callbacks` once per raw body (AT retries a non-200 for hours); 503 only when the database or
Redis is down.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from extensions import db, settings
from handlers.guards import callback
from logs import mask_phone
from models.db import begin_write
from models.inputs import InputError, check_text
from models.messaging.inbound import InboundSms, record_inbound
from models.messaging.outbox import record_delivery_report
from models.payments.rejections import keep_rejected
from workers.connections import get_queue
from workers.inbound import enqueue_inbound

bp = Blueprint("sms", __name__, url_prefix="/sms")
log = logging.getLogger(__name__)
TEXT = {"Content-Type": "text/plain"}
MAX_SMS_TEXT = 1600  # AT concatenates at most ~10 segments
MAX_RETRY_COUNT = 10_000


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails: nothing is stored and AT sends the callback again."""
    log.error("sms callback: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return "unavailable", 503, TEXT


def reject_form(source: str, exc: InputError) -> ResponseReturnValue:
    """Answer 400 naming what is wrong, the raw body kept for review (once per body)."""
    keep_rejected(db(), source, request.get_data(), str(exc), 400, content_type=request.content_type)
    log.warning("%s refused and kept for review: %s", source, exc)
    return str(exc), 400, TEXT


def form_text(name: str, max_length: int, *, required: bool = False, multiline: bool = False) -> str:
    """Return a posted form field, bounded and without control characters (InputError naming it)."""
    return check_text(request.form.get(name, ""), name, max_length, required=required, multiline=multiline)


def _read_inbound() -> InboundSms:
    return InboundSms(
        at_id=form_text("id", 80, required=True),
        phone=form_text("from", 20, required=True),
        text=form_text("text", MAX_SMS_TEXT, multiline=True),
        short_code=form_text("to", 20) or None,
        link_id=form_text("linkId", 80) or None,
        received_at=form_text("date", 40) or None,
    )


@bp.post("/inbound")
@callback
def inbound() -> ResponseReturnValue:
    """Store an AT inbound SMS once per `id` (secrets masked) and enqueue its answer; 200 as soon as stored."""
    try:
        sms = _read_inbound()
    except InputError as exc:
        return reject_form("sms_inbound", exc)
    session = db()
    begin_write(session)
    stored = record_inbound(session, sms)
    session.commit()
    if not stored.created:
        log.info("sms in %s from %s: repeated by AT", sms.at_id[:80], mask_phone(sms.phone))
    if stored.pending:
        try:
            queue = get_queue(settings().REDIS_URL, settings().RQ_QUEUE)
            enqueue_inbound(queue, stored.message_id, sms.text if stored.masked else None)
        except RedisError as exc:
            # Stored but not queued: a non-200 makes AT post it again, and the repeat enqueues it.
            log.warning("sms in message %s stored but not enqueued: %s", stored.message_id, type(exc).__name__)
            return "stored, not queued", 503, TEXT
    return "OK", 200, TEXT


@bp.post("/delivery")
@callback
def delivery() -> ResponseReturnValue:
    """Store an AT delivery report and update the message it is about; unknown ids and statuses are stored too."""
    try:
        provider_message_id = form_text("id", 80, required=True)
        status = form_text("status", 20, required=True)
        phone = form_text("phoneNumber", 20) or None
        network_code = form_text("networkCode", 10) or None
        failure_reason = form_text("failureReason", 200) or None
        retry_count = _retry_count(form_text("retryCount", 12))
    except InputError as exc:
        return reject_form("sms_delivery", exc)
    session = db()
    record_delivery_report(
        session,
        provider_message_id,
        status,
        phone=phone,
        network_code=network_code,
        failure_reason=failure_reason,
        retry_count=retry_count,
    )
    session.commit()
    return "OK", 200, TEXT


def _retry_count(value: str) -> int | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > MAX_RETRY_COUNT:
        raise InputError("retryCount must be a small whole number")
    return int(value)
