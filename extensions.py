"""Per-app shared resources: the database session of a request and the Redis client."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g
from redis import Redis
from sqlalchemy.orm import Session

from config import Settings
from models.db import session_factory
from models.outbox import attach_dispatch
from workers.connections import get_redis
from workers.sms import rq_dispatch


def init_app(app: Flask, settings: Settings) -> None:
    """Attach settings, the session factory and Redis to the app."""
    app.extensions["settings"] = settings
    app.extensions["sessions"] = sessions = session_factory(settings.DATABASE_URL)
    # SMS queued with `send_sms` in a request's session are enqueued once it commits.
    attach_dispatch(sessions, rq_dispatch(settings.REDIS_URL, settings.RQ_QUEUE))
    app.teardown_appcontext(_close_session)


def settings() -> Settings:
    """Return the current app's settings."""
    return current_app.extensions["settings"]  # type: ignore[no-any-return]


def db() -> Session:
    """Return the request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["sessions"]()
    return g.db_session  # type: ignore[no-any-return]


def redis() -> Redis:
    """Return the process's Redis client."""
    return get_redis(settings().REDIS_URL)


def _close_session(_exc: BaseException | None) -> Any:
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
