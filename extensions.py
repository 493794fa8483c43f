"""Per-app shared resources: the database session of a request and the Redis client."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from flask import Flask, Request, current_app, g
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from sqlalchemy.orm import Session

from config import Settings
from models.db import session_factory
from models.messaging.outbox import attach_dispatch
from models.views.scope import install_scoping, scope_session
from redis_keys import limiter_storage_prefix
from workers.connections import get_redis
from workers.sms_queue import rq_dispatch

# Stateless across apps (their state lives in app.config and app.extensions): one instance serves every app.
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Please sign in to see this page."
# "basic": a changed IP or browser marks the session non-fresh; phones change IP too often for "strong".
login_manager.session_protection = "basic"


def init_app(app: Flask, settings: Settings) -> None:
    """Attach settings, the session factory and Redis to the app."""
    app.extensions["settings"] = settings
    app.extensions["sessions"] = sessions = session_factory(settings.DATABASE_URL)
    install_scoping(sessions)  # a session kept to some mutuelles sees only their rows
    # SMS queued with `send_sms` in a request's session are enqueued once it commits.
    attach_dispatch(sessions, rq_dispatch(settings.REDIS_URL, settings.RQ_QUEUE))
    app.teardown_appcontext(_close_session)
    csrf.init_app(app)
    login_manager.init_app(app)
    # One limiter per app: Flask-Limiter keeps its storage on the instance, and each app has its own Redis.
    app.extensions["admin_limiter"] = Limiter(
        key_func=_no_default_key,
        app=app,
        storage_uri=limiter_storage_uri(settings.REDIS_URL),
        storage_options=_limiter_storage_options(),
        strategy="fixed-window",
        key_prefix="ratelimit",
        # Redis away: count in this process's memory (Flask-Limiter logs the switch) rather than refuse staff.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )


def scope_to_blueprint(app: Flask, blueprint: str) -> None:
    """Run the browser extensions' request hooks and the cookie session for this blueprint's requests only.

    CSRF, the limiter and Flask-Login install app-wide hooks, and Flask opens (and saves) the signed-cookie
    session on every request; only the admin signs in, posts forms, is rate-limited or has a cookie. Machine
    callbacks (USSD hops above all) have their own auth, so for them that was ~40 µs of pure overhead per request.
    The hooks keep their order: app-wide hooks run before (after, for `after_request` and teardown) the
    blueprint's own, as Flask runs them.
    """
    _app_wide_first(app.before_request_funcs, blueprint)
    _app_wide_first(app.after_request_funcs, blueprint)
    _app_wide_first(app.teardown_request_funcs, blueprint)
    prefix = app.blueprints[blueprint].url_prefix
    if not prefix:
        raise ValueError(f"blueprint {blueprint!r} needs a URL prefix to scope the cookie session to it")
    app.session_interface = PrefixSessionInterface(prefix)


_Hook = TypeVar("_Hook")


def _app_wide_first(hooks: dict[str | None, list[_Hook]], blueprint: str) -> None:
    """Move the app-wide hooks (key None) to the front of the blueprint's own."""
    app_wide = hooks.pop(None, [])
    hooks.setdefault(blueprint, [])[:0] = app_wide


class PrefixSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only under one URL prefix (a null session elsewhere).

    Flask opens the session before it matches the URL, so the blueprint is not known yet: its prefix is.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Return the cookie session of a request under the prefix, else None (Flask then uses a null session)."""
        path = request.path
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return None
        return super().open_session(app, request)


def limiter_storage_uri(redis_url: str) -> str:
    """Return the `limits` storage URI of a Redis URL (a unix socket is spelt `redis+unix://`)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def _limiter_storage_options() -> dict[str, Any]:
    # Passed as keyword arguments to the redis-py client (`limits` accepts float | str | bool); Flask-Limiter's
    # annotation of `storage_options` says `dict[str, str | int]`, which would forbid the float timeouts.
    return {"socket_connect_timeout": 0.5, "socket_timeout": 2.0, "key_prefix": limiter_storage_prefix()}


def _no_default_key() -> str:
    # Only explicitly limited routes are limited, each with its own key function.
    return "all"


def settings() -> Settings:
    """Return the current app's settings."""
    return cast(Settings, current_app.extensions["settings"])


def db() -> Session:
    """Return the request's database session, opened on first use and closed at teardown.

    A session opened after the request's was closed (a streamed download's) keeps the signed-in staff member's
    mutuelles too (`keep_request_to`).
    """
    if "db_session" not in g:
        g.db_session = current_app.extensions["sessions"]()
        if "mutuelle_scope" in g:
            scope_session(g.db_session, g.mutuelle_scope)
    return cast(Session, g.db_session)


def keep_request_to(mutuelle_ids: tuple[int, ...] | None) -> None:
    """Keep this request's database sessions, the open one and any later, to these mutuelles (None: every one)."""
    g.mutuelle_scope = mutuelle_ids
    scope_session(db(), mutuelle_ids)


def redis() -> Redis:
    """Return the process's Redis client."""
    return get_redis(settings().REDIS_URL)


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
