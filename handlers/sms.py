"""Africa's Talking SMS callbacks: inbound messages (commands) and delivery reports of outbound messages."""

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
from models.outbox import record_delivery_report
from models.sms_inbound import InboundSms, record_inbound
from workers.connections import get_queue
from workers.inbound import enqueue_inbound

bp = Blueprint("sms", __name__, url_prefix="/sms")
log = logging.getLogger(__name__)
TEXT = {"Content-Type": "text/plain"}


@bp.errorhandler(SQLAlchemyError)
def database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Answer 503 when the database fails: nothing is stored and AT sends the callback again."""
    log.error("sms callback: database error %s on %s", type(exc).__name__, request.path)
    with contextlib.suppress(SQLAlchemyError):
        db().rollback()
    return "unavailable", 503, TEXT


@bp.post("/inbound")
@callback
def inbound() -> ResponseReturnValue:
    """Store an AT inbound SMS once per `id` (secrets masked) and enqueue its answer; 200 as soon as stored."""
    form = request.form
    sms = InboundSms(
        at_id=form.get("id", "").strip(),
        phone=form.get("from", "").strip(),
        text=form.get("text", ""),
        short_code=form.get("to") or None,
        link_id=form.get("linkId") or None,
        received_at=form.get("date") or None,
    )
    if not sms.at_id or not sms.phone:
        return "id and from are required", 400, TEXT
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
    """Store an AT delivery report and update the message it is about; unknown ids are stored too."""
    form = request.form
    provider_message_id = form.get("id", "").strip()
    status = form.get("status", "").strip()
    if not provider_message_id or not status:
        return "id and status are required", 400, {"Content-Type": "text/plain"}
    session = db()
    record_delivery_report(
        session,
        provider_message_id[:80],
        status,
        phone=form.get("phoneNumber") or None,
        network_code=form.get("networkCode") or None,
        failure_reason=form.get("failureReason") or None,
        retry_count=_int_or_none(form.get("retryCount")),
    )
    session.commit()
    return "OK", 200, {"Content-Type": "text/plain"}


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
