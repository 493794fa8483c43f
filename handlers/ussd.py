"""USSD over Africa's Talking: `POST /ussd` (one hop) and `POST /ussd/events` (end of session).

A hop is answered by `answer_form`, the one implementation of `/ussd`: the blueprint's view calls it, and so
does `UssdFastPath`, a WSGI middleware in front of Flask that answers an authorised, form-encoded hop within
the size limit without Flask's request machinery (routing, request and response objects, form parser,
request hooks: about as much CPU as the hop's own work on a navigation hop). Anything else (no or wrong
token, too large, chunked, not form-encoded, any other path) goes to Flask unchanged, whose guard answers 403
or 413 as before.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, request
from flask.typing import ResponseReturnValue

from config import Settings
from extensions import db, settings
from handlers.guards import callback, token_matches
from menus import conversation, records
from menus.data import DatabaseData
from menus.render import apology
from menus.session_store import SessionStore, connect
from models.inputs import InputError, check_text
from models.payments.rejections import keep_rejected

bp = Blueprint("ussd", __name__)
log = logging.getLogger(__name__)

USSD_PATH = "/ussd"
FORM_TYPE = "application/x-www-form-urlencoded"
TEXT_PLAIN = "text/plain; charset=utf-8"
# Werkzeug's error handler for undecodable percent-escapes (kept escaped), as its form and query parsing use.
URL_QUOTE_ERRORS = "werkzeug.url_quote"


def session_store() -> SessionStore:
    """Return the USSD session store on the app's Redis (fail-fast client)."""
    config = settings()
    client = connect(config.REDIS_URL, config.USSD_REDIS_TIMEOUT_MS / 1000)
    return SessionStore(client, config.USSD_SESSION_TTL, session_text_key(config.SECRET_KEY))


@functools.lru_cache(maxsize=4)
def session_text_key(secret_key: str) -> bytes:
    """Return the key of the USSD sessions' text digests, derived from the app's secret key."""
    return hashlib.sha256(b"ussd-session-text\0" + secret_key.encode()).digest()


def _text(body: str) -> Response:
    return Response(body, status=200, mimetype="text/plain")


def answer_form(form: Mapping[str, str]) -> str:
    """Return the reply to one hop's AT form, `CON …` or `END …`; an apology on any failure, never an error."""
    try:
        hop = conversation.Hop(
            session_id=form.get("sessionId", ""), phone=form.get("phoneNumber", ""), text=form.get("text", "")
        )
        if not hop.session_id:
            log.warning("ussd: hop without sessionId")
            return apology(None)
        store = session_store()
        data = DatabaseData(db, redis=store.client)
        try:
            return conversation.answer(hop, store, data)
        finally:
            data.close()
    except Exception as exc:  # noqa: BLE001 - even a malformed request gets an apology, never a 5xx
        log.warning("ussd: request failed: %s", type(exc).__name__)
        return apology(None)


@bp.post(USSD_PATH)
@callback
def ussd() -> ResponseReturnValue:
    """Answer one hop with `CON …` or `END …`; never an error status."""
    try:
        form = request.form
    except Exception as exc:  # noqa: BLE001 - an unreadable body gets an apology too
        log.warning("ussd: request failed: %s", type(exc).__name__)
        return _text(apology(None))
    return _text(answer_form(form))


# The end-of-session fields and how long each may be (`input` and `lastAppResponse` are whole sessions).
EVENT_LIMITS = {
    "date": 40,
    "sessionId": 80,
    "serviceCode": 40,
    "networkCode": 10,
    "phoneNumber": 20,
    "status": 20,
    "cost": 32,
    "durationInMillis": 12,
    "hopsCount": 6,
    "input": 4000,
    "lastAppResponse": 2000,
    "errorMessage": 500,
}


def read_event(form: Mapping[str, str]) -> dict[str, str]:
    """Return AT's end-of-session fields checked (InputError naming a field that cannot be stored)."""
    values = {}
    for name, limit in EVENT_LIMITS.items():
        values[name] = check_text(form.get(name, ""), name, limit, required=name == "sessionId", multiline=True)
    for name in ("durationInMillis", "hopsCount"):
        if values[name] and not (values[name].isascii() and values[name].isdigit()):
            raise InputError(f"{name} must be a whole number")
    return values


@bp.post("/ussd/events")
@callback
def ussd_events() -> ResponseReturnValue:
    """Store AT's end-of-session notification with secrets masked and clear the session."""
    try:
        event = read_event(request.form)
    except InputError as exc:
        keep_rejected(db(), "ussd_events", request.get_data(), str(exc), 400, content_type=request.content_type)
        log.warning("ussd events: refused and kept for review: %s", exc)
        return _text(str(exc)), 400
    try:
        store = session_store()
    except Exception as exc:  # noqa: BLE001 - a bad Redis URL must not lose the record
        log.warning("ussd events: no session store: %s", type(exc).__name__)
        store = None
    try:
        records.record_session_end(db(), store, event)
    except Exception as exc:  # noqa: BLE001
        log.warning("ussd events: not stored: %s", type(exc).__name__)
        return _text("not stored"), 503
    return _text("ok")


# ---------------------------------------------------------------- the WSGI fast path

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class UssdFastPath:
    """Answer `POST /ussd` hops that pass the callback guard with `answer_form`, in an app context only.

    The same checks as `handlers.guards.callback`, read from the WSGI environ: the token (`?token=` first,
    else `X-Callback-Token`) compared in constant time, a `Content-Length` within `CALLBACK_MAX_BYTES`; and a
    form-encoded body, parsed as Werkzeug parses it. A request that does not pass them all is handed to Flask
    as it came (nothing read), so a refusal is Flask's own 403 or 413 and an odd request takes the usual way.
    The app context gives `answer_form` the same settings, database session and teardown as a Flask request.
    """

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app  # Flask's own, for everything else

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a hop that passes the guard, or hand the request to Flask."""
        if environ.get("PATH_INFO") != USSD_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        length = self._guarded_length(environ)
        if length is None:
            return self.wsgi_app(environ, start_response)
        reply = None
        try:
            body = environ["wsgi.input"].read(length) if length else b""
            form = _first_values(parse_qsl(body.decode(), keep_blank_values=True, errors=URL_QUOTE_ERRORS))
            with self.app.app_context():
                reply = answer_form(form)
        except Exception as exc:  # noqa: BLE001 - an unreadable body or a failing teardown: never a 5xx
            log.warning("ussd: request failed: %s", type(exc).__name__)
        data = (reply or apology(None)).encode()
        start_response("200 OK", [("Content-Type", TEXT_PLAIN), ("Content-Length", str(len(data)))])
        return [data]

    def _guarded_length(self, environ: WSGIEnviron) -> int | None:
        """Return the body's length when the request passes the guard and is form-encoded, else None."""
        config: Settings = self.app.extensions["settings"]
        try:
            length = _content_length(environ)
            if length is None or length > config.CALLBACK_MAX_BYTES or _mimetype(environ) != FORM_TYPE:
                return None
            return length if token_matches(_presented_token(environ), config.CALLBACK_TOKEN) else None
        except Exception:  # noqa: BLE001 - an odd request (say, an undecodable query) is Flask's to answer
            return None


def _first_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return each name's first value, as `MultiDict.get` does."""
    form: dict[str, str] = {}
    for name, value in items:
        form.setdefault(name, value)
    return form


def _content_length(environ: WSGIEnviron) -> int | None:
    """Return the request's `Content-Length`, or None when absent, chunked or malformed."""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return None
    value = environ.get("CONTENT_LENGTH", "")
    return int(value) if value.isdigit() else None


def _mimetype(environ: WSGIEnviron) -> str:
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def _presented_token(environ: WSGIEnviron) -> str | None:
    """Return the callback token as the guard reads it: the first `token` query value, else the header."""
    query = environ.get("QUERY_STRING", "")
    token = None
    if query.startswith("token=") and query.isascii() and not any(c in query for c in "&%+"):
        token = query[len("token=") :]  # the registered callback URL's plain `?token=…`: nothing to decode
    elif query:
        pairs = parse_qsl(query.encode("latin-1").decode(), keep_blank_values=True, errors=URL_QUOTE_ERRORS)
        token = _first_values(pairs).get("token")
    return token or environ.get("HTTP_X_CALLBACK_TOKEN")


def install_fast_path(app: Flask) -> None:
    """Put `UssdFastPath` in front of the app's WSGI callable."""
    # Flask's documented way to add WSGI middleware replaces the `wsgi_app` method: mypy's method-assign.
    app.wsgi_app = UssdFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
