"""Helpers of the SMS tests: inbound SMS posted as Africa's Talking posts them, RQ jobs run in process."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from models.base import MessageDirection
from models.messaging.message import Message
from models.schemes.scheme import Scheme
from tests import factories
from tests.backends import RQ_QUEUE
from tests.conftest import CALLBACK_TOKEN
from workers import runtime

_ids = itertools.count(1)


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_url: str) -> Iterator[None]:
    """Configure this process as a job process on the test database and Redis (console outbox)."""
    for name, value in {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "AT_USERNAME": "",
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    runtime.settings.cache_clear()
    yield
    runtime.settings.cache_clear()


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    """Yield the default RQ queue on the test's Redis."""
    connection = Redis.from_url(redis_url)
    yield Queue(RQ_QUEUE, connection=connection)
    connection.close()


@pytest.fixture
def cmu(session: Session) -> Scheme:
    """Return the CMU Thiès scheme."""
    return factories.scheme(session, "cmu-thies")


def sms(
    client: FlaskClient, phone: str, text: str, at_id: str | None = None, token: str | None = CALLBACK_TOKEN
) -> TestResponse:
    """Post an inbound SMS as AT does; return the response."""
    fields = {
        "date": "2026-11-20 10:30:01",
        "from": phone,
        "id": at_id or f"at-test-{next(_ids)}",
        "linkId": "SampleLinkId123",
        "text": text,
        "to": "21555",
        "networkCode": "60801",
    }
    url = "/sms/inbound" + (f"?token={token}" if token is not None else "")
    return client.post(url, data=fields)


def run_jobs(queue: Queue) -> None:
    """Run an in-process burst worker: the command jobs, then the send jobs they queue."""
    SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=False)


def replies(session: Session, phone: str | None = None) -> list[Message]:
    """Return the outbound messages (to a phone), oldest first, as stored now."""
    session.commit()
    query = select(Message).where(Message.direction == MessageDirection.OUTBOUND).order_by(Message.id)
    if phone is not None:
        query = query.where(Message.phone == phone)
    return list(session.scalars(query.execution_options(populate_existing=True)))
