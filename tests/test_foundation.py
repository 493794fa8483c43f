"""The skeleton: configuration, health probes, migrations, callback guards, log redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

import models
from config import ConfigError, Settings
from logs import RedactingFilter, redact
from models import db as db_module
from models.db import make_engine
from models.migrate import pending_differences, upgrade
from tests import backends
from tests.conftest import make_test_app


def test_defaults_work_for_development() -> None:
    settings = Settings.from_env({})
    assert settings.DATABASE_URL.startswith("sqlite:///")
    assert settings.USSD_SESSION_TTL == 300


def test_environment_values_are_parsed_by_type() -> None:
    settings = Settings.from_env({"USSD_SESSION_TTL": "120", "TESTING": "yes", "LOG_LEVEL": "DEBUG"})
    assert (settings.USSD_SESSION_TTL, settings.TESTING, settings.LOG_LEVEL) == (120, True, "DEBUG")


def test_malformed_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match="USSD_SESSION_TTL"):
        Settings.from_env({"USSD_SESSION_TTL": "five minutes"})


def test_the_redis_key_prefix_must_fit_in_an_rq_job_id() -> None:
    assert Settings.from_env({"REDIS_KEY_PREFIX": "site-2_"}).REDIS_KEY_PREFIX == "site-2_"
    with pytest.raises(ConfigError, match="REDIS_KEY_PREFIX"):
        Settings.from_env({"REDIS_KEY_PREFIX": "site:2"})


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({"APP_ENV": "production", "DATABASE_URL": "postgresql://db/x"})
    message = str(excinfo.value)
    for name in ("SECRET_KEY", "CALLBACK_TOKEN", "WAVE_WEBHOOK_SECRET", "AT_USERNAME"):
        assert name in message


def test_production_starts_with_real_secrets() -> None:
    settings = Settings.from_env(
        {
            "APP_ENV": "production",
            "DATABASE_URL": "postgresql://db/x",
            "SECRET_KEY": "s" * 32,
            "CALLBACK_TOKEN": "c" * 32,
            "WAVE_WEBHOOK_SECRET": "w" * 32,
            "DARAJA_CALLBACK_TOKEN": "d" * 32,
            "AT_USERNAME": "scheme",
            "AT_API_KEY": "k" * 32,
        }
    )
    assert settings.is_production


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_when_database_and_redis_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_readyz_503_when_redis_is_down(sqlite_url: str) -> None:
    app = make_test_app(sqlite_url, f"redis://127.0.0.1:{backends.free_port()}/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["redis"] == "down"
    assert response.json["database"] == "ok"


def test_readyz_503_when_database_is_down(redis_url: str) -> None:
    app = make_test_app(f"postgresql://postgres@127.0.0.1:{backends.free_port()}/nowhere", redis_url)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["database"] == "down"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_models(kind: str, tmp_path: Path) -> None:
    """Upgrading an empty database to head gives exactly the models' schema: autogenerate finds nothing."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        backends.postgres_or_skip()
        url = backends.create_postgres_database(backends.database_name("migrate"))
    try:
        upgrade(url)
        assert pending_differences(url) == []
        engine = make_engine(url)
        assert set(inspect(engine).get_table_names()) == set(models.Base.metadata.tables) | {"alembic_version"}
        engine.dispose()
    finally:
        if kind == "postgresql":
            backends.drop_postgres_database(url.rsplit("/", 1)[1])


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
    engine.dispose()


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("POST /ussd?token=s3cr3t-token-value HTTP/1.1", "s3cr3t-token-value"),
        ("sending to +221771234567", "+221771234567"),
        ("payer 00221761234500 paid", "00221761234500"),
        ("agent entered PIN 4321", "4321"),
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
    ],
)
def test_log_lines_are_redacted(line: str, hidden: str) -> None:
    assert hidden not in redact(line)


def test_redacting_filter_hides_configured_secrets(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("mutuelle.test")
    flt = RedactingFilter(["super-secret-callback"])
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="mutuelle.test"):
            logger.info("callback with %s from %s", "super-secret-callback", "+221781112233")
    finally:
        logger.removeFilter(flt)
    assert "super-secret-callback" not in caplog.text
    assert "+221781112233" not in caplog.text
    assert "callback with [REDACTED]" in caplog.text


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.parametrize("idle", [True, False])
def test_a_pooled_postgresql_connection_is_pinged_only_after_a_second_idle(
    pg_url: str, idle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if a second had passed since its last use (idle), or not: the database then drops the connection.
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0 if idle else 3600.0)
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _terminate(pg_url, first)
        if idle:  # pinged on checkout, found dead, replaced: the statement runs on a new connection
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
        else:  # not pinged: the statement fails once and the pool drops the connection
            with pytest.raises(DBAPIError) as failed, engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            assert failed.value.connection_invalidated
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
    finally:
        engine.dispose()
