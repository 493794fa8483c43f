"""USSD over Africa's Talking: `POST /ussd` (one hop) and `POST /ussd/events` (end of session)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from extensions import db, settings
from handlers.guards import callback
from menus import conversation, records
from menus.data import DatabaseData
from menus.render import apology
from menus.session_store import SessionStore, connect

bp = Blueprint("ussd", __name__)
log = logging.getLogger(__name__)


def session_store() -> SessionStore:
    """Return the USSD session store on the app's Redis (fail-fast client)."""
    config = settings()
    return SessionStore(connect(config.REDIS_URL, config.USSD_REDIS_TIMEOUT_MS / 1000), config.USSD_SESSION_TTL)


def _text(body: str) -> Response:
    return Response(body, status=200, mimetype="text/plain")


@bp.post("/ussd")
@callback
def ussd() -> ResponseReturnValue:
    """Answer one hop with `CON …` or `END …`; never an error status."""
    try:
        form = request.form
        hop = conversation.Hop(
            session_id=form.get("sessionId", ""), phone=form.get("phoneNumber", ""), text=form.get("text", "")
        )
        if not hop.session_id:
            log.warning("ussd: hop without sessionId")
            return _text(apology(None))
        store = session_store()
        return _text(conversation.answer(hop, store, DatabaseData(db, redis=store.client)))
    except Exception as exc:  # noqa: BLE001 - even a malformed request gets an apology, never a 5xx
        log.warning("ussd: request failed: %s", type(exc).__name__)
        return _text(apology(None))


@bp.post("/ussd/events")
@callback
def ussd_events() -> ResponseReturnValue:
    """Store AT's end-of-session notification with secrets masked and clear the session."""
    try:
        store = session_store()
    except Exception as exc:  # noqa: BLE001 - a bad Redis URL must not lose the record
        log.warning("ussd events: no session store: %s", type(exc).__name__)
        store = None
    try:
        records.record_session_end(db(), store, request.form)
    except Exception as exc:  # noqa: BLE001
        log.warning("ussd events: not stored: %s", type(exc).__name__)
        return _text("not stored"), 503
    return _text("ok")
