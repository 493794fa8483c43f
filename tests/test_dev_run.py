"""Beside `make run`: every process of the checkout finds the Redis it uses (config.resolve_redis_url)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

import config
from app import create_app
from config import DEFAULT_REDIS_URL, Settings, resolve_redis_url
from redis_keys import reconcile_waiting_key
from tests import backends
from tests.conftest import CALLBACK_TOKEN


@pytest.fixture
def url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return where this test's `make run` publishes its Redis (instead of instance/redis.url)."""
    path = tmp_path / "redis.url"
    monkeypatch.setattr(config, "REDIS_URL_FILE", path)
    return path


def test_without_make_run_a_process_uses_the_default(url_file: Path) -> None:
    assert resolve_redis_url() == DEFAULT_REDIS_URL
    assert Settings.from_env({}).REDIS_URL == DEFAULT_REDIS_URL


def test_a_process_finds_the_redis_make_run_published(url_file: Path, redis_url: str) -> None:
    url_file.write_text(redis_url + "\n", encoding="utf-8")
    assert resolve_redis_url() == redis_url
    assert redis_url == Settings.from_env({}).REDIS_URL
    assert redis_url == Settings.from_env({"REDIS_URL": ""}).REDIS_URL  # empty is unset
    # An explicit REDIS_URL wins, whatever `make run` uses.
    assert Settings.from_env({"REDIS_URL": "redis://elsewhere:6379/2"}).REDIS_URL == "redis://elsewhere:6379/2"


def test_a_stale_file_is_ignored(url_file: Path, tmp_path: Path) -> None:
    url_file.write_text(f"unix://{tmp_path / 'gone.sock'}\n", encoding="utf-8")  # make run was killed
    assert resolve_redis_url() == DEFAULT_REDIS_URL
    url_file.write_text("not a url\n", encoding="utf-8")
    assert resolve_redis_url() == DEFAULT_REDIS_URL


def test_run_dev_publishes_its_redis_and_withdraws_it(
    url_file: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import run_dev

    monkeypatch.setattr(run_dev, "REDIS_URL_FILE", url_file)
    assert run_dev.choose_redis({"REDIS_URL": redis_url}) == (redis_url, False)
    # Nothing answers at REDIS_URL: the run starts its embedded server (stood in for here), as with no REDIS_URL.
    monkeypatch.setattr(run_dev, "embedded_redis", lambda: ("unix:///instance/redis.sock", True))
    nowhere = f"redis://127.0.0.1:{backends.free_port()}/0"
    assert run_dev.choose_redis({"REDIS_URL": nowhere}) == ("unix:///instance/redis.sock", True)
    run_dev.publish_redis_url(redis_url)
    assert url_file.stat().st_mode & 0o777 == 0o600
    assert resolve_redis_url() == redis_url
    run_dev.withdraw_redis_url("unix:///another/run.sock")  # not its own: left alone
    assert url_file.exists()
    run_dev.withdraw_redis_url(redis_url)
    assert not url_file.exists()


def test_payments_simulate_beside_make_run_asks_its_workers_at_once(
    url_file: Path, redis_url: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # a new shell: nothing but the published file
    url_file.write_text(redis_url + "\n", encoding="utf-8")
    app = create_app({"DATABASE_URL": sqlite_url, "CALLBACK_TOKEN": CALLBACK_TOKEN, "LOG_LEVEL": "WARNING"})
    assert app.config["REDIS_URL"] == redis_url
    runner = app.test_cli_runner()
    assert runner.invoke(args=["schemes", "load", str(config.BASE_DIR / "schemes" / "cmu-thies.toml")]).exit_code == 0

    done = runner.invoke(args=["payments", "simulate", "--amount", "3500", "--reference", "SN-XX-000001"])

    assert done.exit_code == 0, done.output
    assert "warning" not in done.output
    connection = Redis.from_url(redis_url)
    [payment_id] = [int(raw) for raw in connection.smembers(reconcile_waiting_key())]
    assert f"payment {payment_id} " in done.output
    assert len(Queue(backends.RECONCILE_QUEUE, connection=connection).job_ids) == 1  # a drain for the workers
    connection.close()
