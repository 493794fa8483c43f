"""Benchmark reconciliation: mixed payments against households on PostgreSQL, reconciled by real RQ workers.

    .venv/bin/python bench/reconcile.py [--payments 100000] [--households 100000] [--workers 2] [--batch 1000]

Loads a fresh database (Core inserts): households of 4 members (head and spouse with phones), their accounts,
networks, open payment requests, and RECEIVED payments — about 60 % with a payment-request reference, 25 % with
the payer's phone only, 10 % to a network code, 5 % junk. Profiles a sample in this process (queries per payment,
counted with a SQLAlchemy event), then enqueues the rest in batches and times real `rq worker --burst` processes.
Prints payments/s, matched %, suspense %, and checks the ledger invariant.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from sqlalchemy import event, insert, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.common import fresh_database  # noqa: E402
from models.base import HouseholdStatus, Language, MemberStatus, PaymentStatus, RequestStatus, Sex, utcnow  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.household import Account, Household, Member, Network  # noqa: E402
from models.outbox import attach_dispatch  # noqa: E402
from models.payment import Payment, PaymentRequest  # noqa: E402
from models.reconciliation import reconcile_payments  # noqa: E402
from models.references import damm_check_digit  # noqa: E402
from models.scheme import Scheme  # noqa: E402
from workers.reconcile import GENERATION_KEY, request_reconcile  # noqa: E402

DATABASE = "mutuelle_bench_reconcile"
QUEUE = "bench-reconcile"
SMS_QUEUE = "bench-sms"  # receipts are queued here and left: sending SMS is not what is measured
NETWORK_SIZE = 50
FULL_YEAR = 15_000  # CMU standard household of 4: 1,000 F fee + 4 × 7,000 F × 50 %
CHUNK = 20_000


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def phone_of(n: int) -> str:
    """Return the head's phone of household n (E.164, unique)."""
    return f"+22177{n:07d}"


def load(url: str, households: int, payments: int, seed: int = 7) -> None:
    """Bulk-load households, members, accounts, networks, requests and RECEIVED payments (Core inserts)."""
    rng = random.Random(seed)
    engine = make_engine(url)
    now = utcnow()
    enrolled = date(2026, 1, 15)
    with engine.begin() as conn:
        scheme_id = conn.scalar(select(Scheme.id).where(Scheme.code == "cmu-thies"))
        networks = max(1, households // 500)
        conn.execute(
            insert(Network),
            [
                {
                    "scheme_id": scheme_id,
                    "code": f"RES-{k:04d}",
                    "name": f"Reseau {k}",
                    "commune": "Thies Nord",
                    "contact_phone": f"+22170{k:07d}",
                    "created_at": now,
                }
                for k in range(networks)
            ],
        )
        network_ids = list(conn.scalars(select(Network.id).order_by(Network.id)))
        rows = []
        for n in range(households):
            in_network = n < networks * NETWORK_SIZE
            rows.append(
                {
                    "household_no": f"SN-TN-{n:06d}",
                    "scheme_id": scheme_id,
                    "network_id": network_ids[n // NETWORK_SIZE] if in_network else None,
                    "head_member_no": f"SN-TN-{n:06d}-01",
                    "commune": "Thies Nord",
                    "subsidy_category": rng.choices(["standard", "bsf", "cec"], weights=[8, 1, 1])[0],
                    "plan": "yearly",
                    "language": rng.choice([Language.FR, Language.WO]),
                    "status": HouseholdStatus.ACTIVE,
                    "enrolled_on": enrolled,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for chunk in _chunks(rows):
            conn.execute(insert(Household), chunk)
        household_ids = list(conn.scalars(select(Household.id).order_by(Household.id)))
        members = []
        for n, household_id in enumerate(household_ids):
            for k, (relationship, sex) in enumerate(
                [("head", Sex.F), ("spouse", Sex.M), ("child", Sex.F), ("child", Sex.M)], 1
            ):
                members.append(
                    {
                        "member_no": f"SN-TN-{n:06d}-{k:02d}",
                        "household_id": household_id,
                        "last_name": "Ndiaye",
                        "first_name": "Awa" if sex == Sex.F else "Modou",
                        "sex": sex,
                        "date_of_birth": date(1970 + k * 8, 5, 1),
                        "relationship_to_head": relationship,
                        "phone": phone_of(n) if k == 1 else (f"+22178{n:07d}" if k == 2 else None),
                        "status": MemberStatus.ACTIVE,
                        "joined_on": enrolled,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        for chunk in _chunks(members):
            conn.execute(insert(Member), chunk)
        accounts = [
            {"scheme_id": scheme_id, "household_id": h, "currency": "XOF", "created_at": now} for h in household_ids
        ]
        for chunk in _chunks(accounts):
            conn.execute(insert(Account), chunk)
        network_accounts = [
            {"scheme_id": scheme_id, "network_id": k, "currency": "XOF", "created_at": now} for k in network_ids
        ]
        conn.execute(insert(Account), network_accounts)

        requests, pays = [], []
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
                requests.append(
                    {
                        "reference": reference,
                        "scheme_id": scheme_id,
                        "household_id": household_ids[n],
                        "amount": amount,
                        "currency": "XOF",
                        "periods": 1,
                        "payer_phone": None,
                        "channel": "ussd",
                        "status": RequestStatus.OPEN,
                        "expires_at": now + timedelta(days=3),
                        "created_at": now,
                    }
                )
            elif kind < 0.85:
                payer = phone_of(n)
            elif kind < 0.95:
                reference = f"RES-{rng.randrange(networks):04d}"
                amount = 3 * FULL_YEAR
            else:
                reference = f"JUNK {rng.randrange(10**6)}"
            pays.append(
                {
                    "provider": "wave",
                    "provider_txn_id": f"T_BENCH{i:08d}",
                    "amount": amount,
                    "currency": "XOF",
                    "payer_phone": payer,
                    "account_reference": reference,
                    "paid_at": now - timedelta(minutes=5),
                    "fields_hash": f"{i:064d}",
                    "status": PaymentStatus.RECEIVED,
                    "confirmed": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for chunk in _chunks(requests):
            conn.execute(insert(PaymentRequest), chunk)
        for chunk in _chunks(pays):
            conn.execute(insert(Payment), chunk)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()


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


def claim_redis_db(base_url: str) -> int:
    """Claim a Redis database number no test run holds (same claim keys as tests/conftest.py)."""
    lock = Redis.from_url(f"{base_url}/0")
    for number in range(15, 0, -1):
        if lock.set(f"mutuelle:test-db-claim:{number}", f"bench-{os.getpid()}", nx=True, ex=3600):
            return number
    raise SystemExit("no free Redis database")


def run_workers(url: str, redis_url: str, workers: int, batch: int) -> float:
    """Run `workers` real `rq worker --burst` processes until the queue is empty; return the seconds taken."""
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, RQ_QUEUE=SMS_QUEUE, LOG_LEVEL="WARNING")
    env.update(RECONCILE_QUEUE=QUEUE, RECONCILE_BATCH_SIZE=str(batch))
    env["PYTHONPATH"] = str(ROOT)
    env["AT_USERNAME"] = ""
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url]
    command += ["--worker-class", "workers.worker.PreloadedWorker", QUEUE]  # as in the Procfile
    started, busy, cpu = time.perf_counter(), machine_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    processes = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(workers)]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"worker exited with {process.returncode}")
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    print(
        f"cpu:      workers {worker_cpu:.1f} s, whole machine {machine_busy_seconds() - busy:.1f} s "
        f"of {elapsed * (os.cpu_count() or 1):.1f} s ({os.cpu_count()} cores; the rest of the busy time is "
        "PostgreSQL, Redis and anything else running)"
    )
    return elapsed


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


INVARIANTS = {
    "allocated payments without exactly their own allocation": """
        SELECT count(*) FROM payments p
        WHERE p.status = 'ALLOCATED' AND 1 <> (
            SELECT count(*) FROM allocations a WHERE a.source_ref = 'payment:' || p.id AND a.amount = p.amount)""",
    "allocations of payments that are not ALLOCATED": """
        SELECT count(*) FROM allocations a JOIN payments p ON a.payment_id = p.id WHERE p.status <> 'ALLOCATED'""",
    "accounts whose balance is not the sum of money in minus fee and live period shares": """
        WITH money AS (
            SELECT account_id, sum(amount) AS paid FROM allocations
            WHERE reversed_at IS NULL AND source_ref NOT LIKE 'subsidy:%' GROUP BY account_id),
        entries AS (
            SELECT account_id, sum(amount) AS balance,
                   -sum(CASE WHEN kind = 'fee' THEN amount ELSE 0 END) AS fee,
                   -sum(CASE WHEN kind = 'charge' AND period_id IS NULL THEN amount ELSE 0 END) AS payouts
            FROM ledger_entries GROUP BY account_id),
        shares AS (
            SELECT a.id AS account_id, sum(c.household_share) AS shares
            FROM coverage_periods c JOIN accounts a ON a.household_id = c.household_id
            WHERE c.reversed_at IS NULL GROUP BY a.id)
        SELECT count(*) FROM entries e LEFT JOIN money m USING (account_id) LEFT JOIN shares s USING (account_id)
        WHERE coalesce(m.paid, 0) <> e.fee + coalesce(s.shares, 0) + e.payouts + e.balance""",
    "network accounts below zero": """
        SELECT count(*) FROM (SELECT a.id FROM accounts a JOIN ledger_entries e ON e.account_id = a.id
        WHERE a.network_id IS NOT NULL GROUP BY a.id HAVING sum(e.amount) < 0) x""",
    "payments stuck short of a final state": "SELECT count(*) FROM payments WHERE status IN ('RECEIVED', 'MATCHED')",
    "payments with more than one first receipt": """
        SELECT count(*) FROM (SELECT 1 FROM messages WHERE dedupe_key LIKE 'receipt:%'
        GROUP BY dedupe_key HAVING count(*) > 1) x""",
}


def check(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Return the payments per status and the violations of each ledger invariant."""
    engine = make_engine(url)
    with engine.connect() as conn:
        statuses = {str(s): int(n) for s, n in conn.execute(text("SELECT status, count(*) FROM payments GROUP BY 1"))}
        violations = {name: int(conn.scalar(text(sql)) or 0) for name, sql in INVARIANTS.items()}
    engine.dispose()
    return statuses, violations


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile-sample", type=int, default=2_000)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    args = parser.parse_args(argv)

    url = fresh_database(args.admin_url, DATABASE)
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

    number = claim_redis_db(args.redis_url)
    redis_url = f"{args.redis_url}/{number}"
    client = Redis.from_url(redis_url)
    try:
        client.flushdb()
        queue = Queue(QUEUE, connection=client)
        for _ in range(args.workers):  # one drain per worker, side by side, as under a steady stream
            request_reconcile(client, rest, QUEUE)
            client.incr(GENERATION_KEY)
        elapsed = run_workers(url, redis_url, args.workers, args.batch)
        sms_jobs = Queue(SMS_QUEUE, connection=client).count
        failed = queue.failed_job_registry.count
    finally:
        client.flushdb()
        Redis.from_url(f"{args.redis_url}/0").delete(f"mutuelle:test-db-claim:{number}")
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
