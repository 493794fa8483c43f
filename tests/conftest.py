"""Fixtures: the app, a database per test on SQLite and the real PostgreSQL, a real Redis, RQ workers.

Every backend is the run's own (tests/backends.py): PostgreSQL databases it creates and drops, a redis-server
it starts (or, with TEST_REDIS_URL, only keys under its own prefix). Nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import models
import redis_keys
from models.db import dispose_engines, get_engine, make_engine
from tests import backends

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # real-shaped provider payloads and sample files (tests/fixtures/README.md)
CALLBACK_TOKEN = "test-callback-token"
DARAJA_TOKEN = "test-daraja-callback-token"

_ran_on: set[str] = set()


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def postgres_template(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Create this worker's PostgreSQL database with the schema, or None when PostgreSQL is absent."""
    if not backends.postgres_answers():
        yield None  # each PostgreSQL test then skips, or fails when the run requires PostgreSQL
        return
    # Named after the run and the xdist worker: concurrent runs (several developers, workers) stay apart.
    name = backends.database_name()
    url = backends.create_postgres_database(name)
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    dispose_engines()
    backends.drop_postgres_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Create one SQLite file with the schema, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    models.Base.metadata.create_all(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in models.Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """Yield the URL of an empty database with the schema: SQLite and the real PostgreSQL in turn."""
    yield from _database(request.param, request, tmp_path, sqlite_template)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """Yield the URL of an empty SQLite database with the schema (tests not about the backend)."""
    yield from _database("sqlite", request, tmp_path, sqlite_template)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """Yield the URL of the emptied PostgreSQL test database (tests about concurrency)."""
    yield from _database("postgresql", request, tmp_path, sqlite_template)


def _database(kind: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if kind == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        pg = request.getfixturevalue("postgres_template")
        if pg is None:
            backends.postgres_or_skip()
        url = pg
        _truncate_all(get_engine(url))
    _ran_on.add(kind)
    yield url
    if kind == "sqlite":
        engine = get_engine(url)
        engine.dispose()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """Yield a session on the test database (both backends)."""
    with Session(get_engine(db_url), expire_on_commit=False) as s:
        yield s


# ---------------------------------------------------------------- redis


@pytest.fixture(scope="session")
def redis_space() -> Iterator[backends.RedisSpace]:
    """Yield this process's Redis: its own redis-server, or its prefixed keys on TEST_REDIS_URL."""
    with backends.redis_space() as space:
        _ran_on.add("redis (TEST_REDIS_URL, keys under the run's prefix)" if space.prefix else "redis (own server)")
        yield space


@pytest.fixture
def redis_url(redis_space: backends.RedisSpace) -> Iterator[str]:
    """Yield the URL of the test's Redis, cleared of everything the run wrote before and after the test."""
    redis_space.clear()
    yield redis_space.url
    redis_space.clear()


@pytest.fixture
def clear_redis(redis_space: backends.RedisSpace) -> Callable[[], None]:
    """Return a function deleting everything the run wrote in Redis (a Redis that lost its data, for the app)."""
    return redis_space.clear


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    """Yield a client on the test's Redis database."""
    client = Redis.from_url(redis_url)
    yield client
    client.close()


# ---------------------------------------------------------------- app


def make_test_app(db_url: str, redis_url: str, **overrides: Any) -> Flask:
    """Return an app wired to the test database and Redis."""
    from app import create_app

    config = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        "DARAJA_CALLBACK_TOKEN": DARAJA_TOKEN,
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789",
        "AT_USERNAME": "",
        "LOG_LEVEL": "WARNING",
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app on the test database (both backends) and Redis."""
    return make_test_app(db_url, redis_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def worker_env(db_url: str, redis_url: str) -> dict[str, str]:
    """Return the environment a worker subprocess needs to share the test's database and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "CALLBACK_TOKEN": CALLBACK_TOKEN,
            "DARAJA_CALLBACK_TOKEN": DARAJA_TOKEN,
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
            "AT_USERNAME": "",
        }
    )
    return env


@pytest.fixture
def run_worker(worker_env: dict[str, str], redis_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Return a function that runs a real `rq worker --burst` subprocess on the test's Redis."""

    def run(
        *queues: str, timeout: float = 60, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(worker_env, **(extra_env or {}))
        cmd = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--url",
            redis_url,
            "--worker-class",
            "rq.SimpleWorker",
            "--name",
            f"{backends.KEY_PREFIX}-worker-{uuid.uuid4().hex[:8]}",
            *(queues or (backends.RECONCILE_QUEUE, backends.RQ_QUEUE)),
        ]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    return run


# ---------------------------------------------------------------- reporting


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = "answering" if backends.postgres_answers() else "NOT answering"
    if backends.EXTERNAL_REDIS_URL:
        rd = f"TEST_REDIS_URL={backends.EXTERNAL_REDIS_URL}, only keys under mutuelle-test-<run>-<worker>"
    else:
        rd = "a redis-server of each test process's own (set TEST_REDIS_URL to use another, prefixed)"
    return [
        f"mutuelle backends: PostgreSQL {pg} at {backends.PG_ADMIN_URL} (own databases mutuelle_test_<run>_<worker>);"
        f" Redis: {rd}"
    ]


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the backends to the controller
        workeroutput["mutuelle_ran_on"] = sorted(_ran_on)


def pytest_testnodedown(node: Any, error: Any) -> None:
    _ran_on.update(getattr(node, "workeroutput", {}).get("mutuelle_ran_on", []))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = ", ".join(sorted(_ran_on)) or "none"
    terminalreporter.write_line(f"mutuelle backends exercised: {ran}")


def pytest_configure(config: pytest.Config) -> None:
    # The run's Redis names for every app, job process and worker subprocess of this process (and not whatever
    # the developer's shell says): on TEST_REDIS_URL they carry the run's prefix.
    os.environ.update(
        REDIS_KEY_PREFIX=backends.KEY_PREFIX, RQ_QUEUE=backends.RQ_QUEUE, RECONCILE_QUEUE=backends.RECONCILE_QUEUE
    )
    redis_keys.use_prefix(backends.KEY_PREFIX)
    # `.mo` files are build output (`make translations`); compile them so `pytest` works on a fresh clone.
    from models.texts.i18n import compile_catalogs

    compile_catalogs()
