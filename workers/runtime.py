"""What a job process needs: its settings, a database session and Redis, built from the environment."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from rq import Queue
from sqlalchemy.orm import Session

import redis_keys
from config import Settings
from logs import configure_logging
from models.db import session_scope
from models.messaging.outbox import attach_dispatch
from workers.connections import get_queue, get_redis
from workers.sms_queue import rq_dispatch


@functools.cache
def settings() -> Settings:
    """Return the settings of this worker process (read once from the environment)."""
    current = Settings.from_env()
    configure_logging(current.LOG_LEVEL, current.secrets())
    redis_keys.use_prefix(current.REDIS_KEY_PREFIX)
    return current


@contextmanager
def job_session() -> Iterator[Session]:
    """Yield a session that commits when the job body succeeds; exceptions reach RQ for retries.

    SMS queued with `send_sms` in it are enqueued once it commits.
    """
    with session_scope(settings().DATABASE_URL) as session:
        attach_dispatch(session, rq_dispatch(settings().REDIS_URL, settings().RQ_QUEUE))
        yield session


def redis() -> Redis:
    """Return this process's Redis client."""
    return get_redis(settings().REDIS_URL)


def queue(name: str | None = None) -> Queue:
    """Return the named RQ queue (default: the configured one)."""
    return get_queue(settings().REDIS_URL, name or settings().RQ_QUEUE)
