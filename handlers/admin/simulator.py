"""The phone simulator: a feature phone in the browser driving the real USSD, SMS and sandbox payment routes.

The browser talks only to these same-origin admin JSON endpoints (signed in, CSRF-checked); they forward to the
real callback views server-side with the callback token, which therefore never reaches the browser.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from extensions import db, settings
from handlers import sync_view
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.params import arg_int, arg_text
from models.base import MessageDirection, StaffRole
from models.messaging.message import Message
from models.schemes.scheme import Scheme

MAX_TEXT = 160
OUTBOX_SHOWN = 5


def _not_in_production() -> None:
    if settings().is_production:
        abort(404)


def _payload() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400)
    return data


def _text(data: dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = data.get(name, "")
    return str(value)[:limit] if isinstance(value, str | int) else ""


def forward(endpoint: str, **request_args: Any) -> Response:
    """Run a callback view in a request of its own, carrying the callback token; return its response."""
    query = {"token": settings().CALLBACK_TOKEN}
    with current_app.test_request_context(method="POST", query_string=query, **request_args):
        return current_app.make_response(sync_view(current_app.view_functions[endpoint])())


@bp.get("/simulator")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def simulator() -> ResponseReturnValue:
    """Show the phone simulator (not in production)."""
    _not_in_production()
    return render_template("admin/simulator.html", service_code=settings().USSD_SERVICE_CODE)


@bp.post("/simulator/ussd")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def simulator_ussd() -> ResponseReturnValue:
    """Send one USSD hop `{session_id, phone, text}` to `POST /ussd`; return the screen."""
    _not_in_production()
    data = _payload()
    session_id = "SIM-" + _text(data, "session_id", 40)
    form = {
        "sessionId": session_id,
        "phoneNumber": _text(data, "phone", 20),
        "text": _text(data, "text", 182),
        "serviceCode": settings().USSD_SERVICE_CODE,
        "networkCode": "99999",
    }
    reply = forward("ussd.ussd", path="/ussd", data=form).get_data(as_text=True)
    ends = not reply.startswith("CON ")
    return jsonify(screen=reply[4:] if reply[:4] in ("CON ", "END ") else reply, ends=ends)


@bp.post("/simulator/sms")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def simulator_sms() -> ResponseReturnValue:
    """Send an SMS `{phone, text}` to `POST /sms/inbound`; return where to look for the reply in the outbox."""
    _not_in_production()
    data = _payload()
    after = db().scalar(select(func.max(Message.id))) or 0
    db().rollback()
    form = {
        "id": f"SIM-{uuid.uuid4().hex}",
        "from": _text(data, "phone", 20),
        "to": "12345",
        "text": _text(data, "text"),
        "date": "",
    }
    response = forward("sms.inbound", path="/sms/inbound", data=form)
    return jsonify(status=response.status_code, answer=response.get_data(as_text=True)[:200], after=after)


@bp.get("/simulator/outbox")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def simulator_outbox() -> ResponseReturnValue:
    """Return the SMS sent to a phone after a message id, oldest first (the simulator polls it)."""
    _not_in_production()
    phone = arg_text("phone", 20) or ""
    after = arg_int("after", 0) or 0
    rows = db().scalars(
        select(Message)
        .where(
            Message.phone == phone,
            Message.direction == MessageDirection.OUTBOUND,
            Message.id > after,
        )
        .order_by(Message.id)
        .limit(OUTBOX_SHOWN)
    )
    return jsonify(messages=[{"id": m.id, "body": m.body, "status": m.status.value} for m in rows])


@bp.post("/simulator/pay")
@role_required(StaffRole.VIEWER, every_mutuelle=True)
def simulator_pay() -> ResponseReturnValue:
    """Send a sandbox payment `{amount, reference, phone}` to `POST /payments/sandbox`; return its answer."""
    _not_in_production()
    data = _payload()
    code = settings().DEFAULT_SCHEME
    query = select(Scheme.currency).where(Scheme.code == code) if code else select(Scheme.currency).order_by(Scheme.id)
    currency = db().scalar(query.limit(1)) or "XOF"
    db().rollback()
    body = {
        "txn_id": f"SIM-{uuid.uuid4().hex[:10].upper()}",
        "amount": _text(data, "amount", 20),
        "currency": currency,
        "phone": _text(data, "phone", 20),
        "reference": _text(data, "reference", 60),
    }
    response = forward(
        "payments.sandbox", path="/payments/sandbox", data=json.dumps(body), content_type="application/json"
    )
    return jsonify(status=response.status_code, txn_id=body["txn_id"], reply=response.get_json(silent=True))
