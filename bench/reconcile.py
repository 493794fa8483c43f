"""Benchmark reconciliation: mixed payments against households on PostgreSQL, reconciled by real RQ workers.

    .venv/bin/python bench/reconcile.py [--payments 100000] [--households 100000] [--workers 2] [--batch 1000]

Loads a fresh database (Core inserts): households of 4 members (head and spouse with phones), their accounts,
networks, open payment requests, and RECEIVED payments — about 60 % with a payment-request reference, 25 % with
the payer's phone only, 10 % to a network code, 5 % junk. Profiles a sample in this process (queries per payment,
counted with a SQLAlchemy event), then enqueues the rest in batches and times real `rq worker --burst` processes.
Prints payments/s, matched %, suspense %, and checks the ledger invariant. It creates its own database (dropped at
the end) and starts its own redis-server on a Unix socket (stopped at the end) unless given `--database-url` /
`--redis-url`. The production path end to end (HTTP callbacks, the Procfile's processes) is bench/production.py.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from sqlalchemy import event, insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.common import (  # noqa: E402
    ADMIN_URL,
    FULL_YEAR,
    check,
    chunks,
    load_households,
    machine_busy_seconds,
    open_request,
    own_database,
    own_redis,
    phone_of,
    prepare_schema,
    received_payment,
    rusage_cpu,
    vacuum_analyze,
)
from models.base import utcnow  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.messaging.outbox import attach_dispatch  # noqa: E402
from models.payments.payment import Payment, PaymentRequest  # noqa: E402
from models.payments.references import damm_check_digit  # noqa: E402
from models.reconciliation.batch import reconcile_payments  # noqa: E402
from redis_keys import reconcile_generation_key  # noqa: E402
from workers.reconcile import request_reconcile  # noqa: E402

DATABASE = "mutuelle_bench_reconcile"
QUEUE = "bench-reconcile"
SMS_QUEUE = "bench-sms"  # receipts are queued here and left: sending SMS is not what is measured


def load(url: str, households: int, payments: int, seed: int = 7) -> None:
    """Bulk-load households (bench.common), open requests and RECEIVED payments (Core inserts)."""
    scheme_id, household_ids, networks = load_households(url, households, seed)
    rng = random.Random(seed + 1)
    engine = make_engine(url)
    now = utcnow()
    with engine.begin() as conn:
        requests: list[dict[str, Any]] = []
        pays: list[dict[str, Any]] = []
        bodies = rng.sample(range(100_000, 1_000_000), payments)
        for i in range(payments):
            kind = rng.random()
            n = rng.randrange(households)
            amount = rng.choice([FULL_YEAR, FULL_YEAR, 7_000, 3_500])
            reference: str | None = None
            payer: str | None = f"+22176{rng.randrange(10**7):07d}"  # a relative's phone: unknown
            if kind < 0.60:
                body = str(bodies[len(requests)])
                reference = body + damm_check_digit(body)
                requests.append(open_request(reference, scheme_id, household_ids[n], amount, now))
            elif kind < 0.85:
                payer = phone_of(n)
            elif kind < 0.95:
                reference = f"RES-{rng.randrange(networks):04d}"
                amount = 3 * FULL_YEAR
            else:
                reference = f"JUNK {rng.randrange(10**6)}"
            pays.append(received_payment(f"T_BENCH{i:08d}", amount, payer, reference, now - timedelta(minutes=5), now))
        for chunk in chunks(requests):
            conn.execute(insert(PaymentRequest), chunk)
        for chunk in chunks(pays):
            conn.execute(insert(Payment), chunk)
    engine.dispose()
    vacuum_analyze(url)


def profile(url: str, ids: list[int], batch: int) -> tuple[float, float]:
    """Reconcile `ids` in this process in batches; return (queries per payment, payments per second)."""
    engine = make_engine(url)
    queries = 0

    def count(*_args: Any) -> None:
        nonlocal queries
        queries += 1

    event.listen(engine, "before_cursor_execute", count)
    started = time.perf_counter()
    with Session(engine, expire_on_commit=False) as session:
        attach_dispatch(session, lambda _ids: None)  # receipts stay QUEUED: sending is not measured
        for i in range(0, len(ids), batch):
            reconcile_payments(session, ids[i : i + batch])
            session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return queries / max(1, len(ids)), len(ids) / elapsed


def run_workers(url: str, redis_url: str, workers: int, batch: int) -> float:
    """Run `workers` real `rq worker --burst` processes until the queue is empty; return the seconds taken."""
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, RQ_QUEUE=SMS_QUEUE, LOG_LEVEL="WARNING")
    env.update(RECONCILE_QUEUE=QUEUE, RECONCILE_BATCH_SIZE=str(batch))
    env["PYTHONPATH"] = str(ROOT)
    env["AT_USERNAME"] = ""
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url]
    command += ["--worker-class", "workers.worker.PreloadedWorker", QUEUE]  # as in the Procfile
    started, busy, cpu = time.perf_counter(), machine_busy_seconds(), rusage_cpu(resource.RUSAGE_CHILDREN)
    processes = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(workers)]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"worker exited with {process.returncode}")
    elapsed = time.perf_counter() - started
    worker_cpu = rusage_cpu(resource.RUSAGE_CHILDREN) - cpu
    print(
        f"cpu:      workers {worker_cpu:.1f} s, whole machine {machine_busy_seconds() - busy:.1f} s "
        f"of {elapsed * (os.cpu_count() or 1):.1f} s ({os.cpu_count()} cores; the rest of the busy time is "
        "PostgreSQL, Redis and anything else running)"
    )
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile-sample", type=int, default=2_000)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL where its own database is created")
    parser.add_argument("--database-url", help="use this database (the schema is created if missing) instead")
    parser.add_argument("--redis-url", help="use this Redis as is instead of a private redis-server")
    args = parser.parse_args(argv)

    with own_database(args.admin_url, DATABASE, args.database_url) as (url, _created), own_redis(args.redis_url) as r:
        run(args, url, r)


def run(args: argparse.Namespace, url: str, redis_url: str) -> None:
    """Load the database, profile a sample in this process, time the rq workers and check the ledger."""
    prepare_schema(url)
    started = time.perf_counter()
    load(url, args.households, args.payments)
    print(f"loaded {args.households:,} households, {args.payments:,} payments in {time.perf_counter() - started:.1f} s")
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = list(conn.scalars(select(Payment.id).order_by(Payment.id)))
    engine.dispose()
    rng = random.Random(3)
    rng.shuffle(ids)  # payments arrive in no household order
    sample, rest = ids[: args.profile_sample], ids[args.profile_sample :]
    if sample:
        per_payment, rate = profile(url, sample, args.batch)
        print(
            f"profile:  {len(sample):,} payments in this process: {per_payment:.1f} queries/payment, "
            f"{rate:,.0f} payments/s"
        )

    client = Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=client)
    for _ in range(args.workers):  # one drain per worker, side by side, as under a steady stream
        request_reconcile(client, rest, QUEUE)
        client.incr(reconcile_generation_key())
    elapsed = run_workers(url, redis_url, args.workers, args.batch)
    sms_jobs = Queue(SMS_QUEUE, connection=client).count
    failed = queue.failed_job_registry.count
    client.close()
    statuses, violations = check(url)
    total = sum(statuses.values())
    matched = sum(statuses.get(s, 0) for s in ("ALLOCATED", "MATCHED", "PROVISIONAL"))
    print(
        f"reconcile: {len(rest):,} payments, {args.workers} rq workers, batches of {args.batch}: {elapsed:.1f} s "
        f"= {len(rest) / elapsed:,.0f} payments/s ({failed} failed jobs, {sms_jobs:,} receipt SMS jobs queued)"
    )
    print(
        f"outcome:  matched {100 * matched / total:.1f} %, suspense {100 * statuses.get('UNMATCHED', 0) / total:.1f} % "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))})"
    )
    broken = {name: n for name, n in violations.items() if n}
    print("ledger invariant: " + ("intact" if not broken else f"BROKEN {broken}"))
    if broken or failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
