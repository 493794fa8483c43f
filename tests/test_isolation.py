"""Tests touch only what they create: a Redis holding someone's data in databases 0-15 is left exactly as it was.

A second private redis-server stands for a developer's Redis: every database is filled, with keys named like
the app's and RQ's own too. The fixtures' clean-up (`forget_run`) is checked directly, then a real test run is
pointed at that server with TEST_REDIS_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from tests import backends
from tests.conftest import ROOT

Snapshot = dict[tuple[int, bytes], tuple[object, bool]]


def fill(url: str) -> None:
    """Write someone's data in every database: their own keys and keys named like the app's and RQ's."""
    for db in range(16):
        client = Redis.from_url(f"{url}?db={db}")
        client.set(f"user:{db}", "precious")
        client.set("temporary", "with a ttl", ex=3600)
        client.set("ussd:session:ATUid_theirs", "{}")  # as keys were named before redis_keys
        client.set("mutuelle:ussd:session:ATUid_theirs", "{}")  # a deployment with the default prefix
        client.sadd("mutuelle:reconcile:waiting", 1, 2)
        client.set("mutuelle:reconcile:generation", 4)
        client.set("mutuelle:clock:heartbeat", 1.0)
        client.zadd("mutuelle:ratelimit:member-check-phone:+221770000001", {"theirs": 1.0})
        queue = Queue("default", connection=client)
        queue.enqueue("workers.maintenance.record_heartbeat", job_id="mutuelle-sms-1")
        queue.enqueue("workers.maintenance.record_heartbeat")
        drain = "workers.reconcile.drain"
        Queue("reconcile", connection=client).enqueue(drain, job_id="mutuelle-reconcile-drain-0")
        client.sadd("rq:workers", "rq:worker:theirs")
        client.hset("rq:worker:theirs", mapping={"queues": "reconcile,default", "state": "idle"})
        client.close()


def value(client: Redis, name: bytes) -> object:
    """Return a key's content (a set's members in order: SADD then SREM may re-encode an equal set)."""
    kind = client.type(name)
    if kind == b"set":
        return sorted(client.smembers(name))
    if kind == b"hash":
        return sorted(client.hgetall(name).items())
    if kind == b"zset":
        return client.zrange(name, 0, -1, withscores=True)
    if kind == b"list":
        return client.lrange(name, 0, -1)
    if kind == b"stream":
        return client.xrange(name)
    return client.get(name)


def snapshot(url: str) -> Snapshot:
    """Return every key of databases 0-15 with its content and whether it expires."""
    found: Snapshot = {}
    for db in range(16):
        client = Redis.from_url(f"{url}?db={db}")
        for name in client.scan_iter(count=1000):
            found[(db, name)] = (value(client, name), client.pttl(name) > 0)
        client.close()
    return found


def calls(client: Redis, command: str) -> int:
    """Return how many times the server ran a command."""
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def their_redis() -> Iterator[str]:
    """Yield the URL of a Redis holding someone's data in databases 0-15 (a server of its own, stopped after)."""
    server = backends.EmbeddedRedis()
    try:
        fill(server.url)
        yield server.url
    finally:
        server.stop()


def test_forget_run_deletes_the_runs_keys_and_nothing_else(their_redis: str) -> None:
    before = snapshot(their_redis)
    client = Redis.from_url(f"{their_redis}?db=3")
    prefix = "mutuelle-test-isolation-main"
    client.set(f"{prefix}:ussd:session:ATUid_1", "{}")
    client.sadd(f"{prefix}:reconcile:waiting", 7)
    client.set(f"{prefix}:limits:LIMITER/ratelimit/admin/1/minute", 1)
    queue = Queue(f"{prefix}-default", connection=client)
    queue.enqueue("workers.no_such_module.fails", job_id=f"{prefix}-sms-1")  # a failed job, kept with its result
    queue.enqueue("builtins.len", "four")  # RQ names it (a uuid): ours by its queue
    queue.enqueue("builtins.len", "kept", result_ttl=600)
    SimpleWorker([queue], connection=client).work(burst=True, with_scheduler=False)  # RQ names the worker too
    client.sadd("rq:workers", f"rq:worker:{prefix}-still-registered")
    assert snapshot(their_redis) != before

    removed = backends.forget_run(client, prefix)

    assert removed > 8
    assert snapshot(their_redis) == before
    client.close()


@pytest.mark.slow
def test_a_test_run_on_test_redis_url_leaves_every_database_as_it_was(their_redis: str) -> None:
    before = snapshot(their_redis)
    client = Redis.from_url(their_redis)
    writes = calls(client, "sadd") + calls(client, "hset") + calls(client, "set")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REDIS_", "RQ_", "RECONCILE_"))}
    env["TEST_REDIS_URL"] = f"{their_redis}?db=0"  # the very database holding their queues and sessions
    tests = [
        "tests/test_ussd_http.py::test_a_session_survives_a_lost_redis_mid_session[sqlite]",
        "tests/test_ussd_flows.py::test_date_of_birth_checks_are_rate_limited_per_phone[sqlite]",
        "tests/test_reconcile.py::test_reconcile_requests_coalesce_into_one_drain_per_generation",
        "tests/test_clock.py::test_the_clock_jobs_through_a_real_worker[sqlite]",
        "tests/test_sms_outbound.py::test_a_group_job_hands_its_remaining_messages_on_when_a_drain_waits[sqlite]",
    ]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(tests)} passed" in done.stdout
    assert "TEST_REDIS_URL" in done.stdout  # the run said where it wrote
    assert calls(client, "sadd") + calls(client, "hset") + calls(client, "set") > writes + 10  # it did write there
    assert calls(client, "flushdb") == calls(client, "flushall") == 0
    assert snapshot(their_redis) == before
    client.close()


def test_postgres_databases_are_the_runs_own() -> None:
    assert backends.database_name().startswith(f"mutuelle_test_{backends.RUN_ID}_")
    for foreign in ("test", "postgres", "mutuelle", "mutuelle_test_other_main"):
        with pytest.raises(ValueError, match="not a database of this test process"):
            backends.create_postgres_database(foreign)
        with pytest.raises(ValueError, match="not a database of this test process"):
            backends.drop_postgres_database(foreign)
