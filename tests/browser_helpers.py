"""What the browser tests share: Debian's Chromium driven by Playwright, and the app served in a thread on a demo seed.

`ADMIN_SCREENSHOTS=docs` saves screenshots there; `REQUIRE_BROWSER=1` (CI) fails, not skips, without Chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

import models
from models.db import dispose_engines, make_engine
from tests import backends
from tests.conftest import CALLBACK_TOKEN, ROOT, make_test_app

if TYPE_CHECKING:  # Playwright itself is imported when a browser is launched: only the browser tests need it
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("ADMIN_SCREENSHOTS")


def chromium_path() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        message = "Chromium not found: apt-get install -y chromium"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Server:
    """The app served by werkzeug in a thread on 127.0.0.1, with its database and Redis URLs."""

    def __init__(self, db_url: str, redis_url: str) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        self.app = make_test_app(db_url, redis_url, TESTING=False, ADMIN_LOGIN_RATE_LIMIT="1000/minute")
        self.http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def run_worker(self) -> None:
        """Run a real `rq worker --burst` on the app's queue (reconcile, SMS)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env.update(
            DATABASE_URL=self.db_url,
            REDIS_URL=self.redis_url,
            CALLBACK_TOKEN=CALLBACK_TOKEN,
            AT_USERNAME="",
            PYTHONPATH=str(ROOT),
        )
        settings = self.app.extensions["settings"]
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", self.redis_url]
        cmd += ["--worker-class", "rq.SimpleWorker", settings.RECONCILE_QUEUE, settings.RQ_QUEUE]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Yield a headless Debian Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def demo_server(directory: Path, redis_space: backends.RedisSpace) -> Server:
    """Return a server (not yet started) on a demo-seeded SQLite database in the directory."""
    url = f"sqlite:///{directory / 'demo.db'}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    engine.dispose()
    redis_space.clear()
    running = Server(url, redis_space.url)
    result = running.app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    return running


def serve(running: Server, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Start the server, yield it, then stop it and forget what it wrote (a module fixture's body)."""
    running.thread.start()
    yield running
    running.http.shutdown()
    redis_space.clear()
    dispose_engines()
