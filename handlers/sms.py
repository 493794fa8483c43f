"""Africa's Talking SMS callbacks: delivery reports of outbound messages."""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from extensions import db
from handlers.guards import callback
from models.outbox import record_delivery_report

bp = Blueprint("sms", __name__, url_prefix="/sms")


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
