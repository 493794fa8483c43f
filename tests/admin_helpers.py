"""Helpers of the admin tests: a database seeded with the demo data per backend and module, signed-in clients."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

import models
from models.access.staff import create_staff_user
from models.base import StaffRole
from models.db import dispose_engines, get_engine, make_engine
from tests import backends
from tests.conftest import make_test_app

PASSWORDS = {"viewer": "viewer-pass-123", "operator": "operator-pass-123", "admin": "admin-pass-1234"}


# ---------------------------------------------------------------- one seeded database per backend and module


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace
) -> Iterator[str]:
    """Yield a database holding the demo seed and one staff user per role (read-only for most tests)."""
    name = backends.database_name("admin")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('admin') / 'demo.db'}"
    else:
        backends.postgres_or_skip()
        url = backends.create_postgres_database(name)
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    engine.dispose()
    app = make_test_app(url, redis_space.url)
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    with Session(get_engine(url)) as session:
        for role, password in PASSWORDS.items():
            create_staff_user(session, role, password, StaffRole(role), language="en")
        session.commit()
    yield url
    dispose_engines()
    if request.param == "postgresql":
        backends.drop_postgres_database(name)


@pytest.fixture
def admin_app(seeded_url: str, redis_url: str) -> Flask:
    """Return an app on the seeded database and the test's flushed Redis."""
    return make_test_app(seeded_url, redis_url)


@pytest.fixture
def db_session(seeded_url: str) -> Iterator[Session]:
    """Yield a session on the seeded database."""
    with Session(get_engine(seeded_url), expire_on_commit=False) as session:
        yield session


def csrf_token(client: FlaskClient, path: str = "/admin/login") -> str:
    """Return the CSRF token a page's form carries."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str | None = None, **extra: str) -> TestResponse:
    """Sign in through the form, as a browser does."""
    data = {"username": username, "password": password or PASSWORDS[username], "csrf_token": csrf_token(client)}
    data.update(extra)
    return client.post("/admin/login", data=data)


def signed_in(app: Flask, role: str = "viewer") -> FlaskClient:
    """Return a client signed in with the demo user of a role."""
    client = app.test_client()
    response = login(client, role)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def text_of(response: TestResponse) -> str:
    """Return a page's visible text, tags stripped, whitespace collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", body.replace("&#39;", "'").replace("&amp;", "&"))


class QueryCounter:
    """Count the SQL statements an engine runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def __enter__(self) -> QueryCounter:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


# 12, and one for the menu's count of enrolments waiting for a decision (an indexed COUNT) on every page.
MAX_QUERIES_PER_PAGE = 13
