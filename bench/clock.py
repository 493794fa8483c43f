"""Benchmark the clock's jobs at scale, each run as the clock runs it: an RQ job on a real worker (issue 29).

    .venv/bin/python bench/clock.py [--households 1000000] [--database-url URL] [--keep] [--batch 2000]
        [--run-seconds 120]

Creates its own PostgreSQL database (migrated with `flask --app app db upgrade`; dropped at the end unless `--keep`)
and its own redis-server, unless given `--database-url`. A kept database is reused as it is: the households are
loaded once, and each run first takes back what the previous run's jobs wrote (see `rearm`).

The data, loaded with set-based SQL (`INSERT … SELECT generate_series`): households of 4 members in the Thiès Nord
mutuelle, one live yearly period each with its allocation and ledger entries, networks of 50 households with money
on their accounts; a realistic bad day for the clock:
- 1 household in 10 fully subsidised (bsf, cec) whose period ends today: all of them due a renewal now;
- the others' periods end spread over 420 days from 60 days ago: about 1 in 28 within the 14-day reminder window,
  1 in 14 lapsed within the lapse reminder's 30 days;
- 1 household in 10 with an open payment request, half of them past expiry.
Each scheme's daytime hours are set to the whole day, so the reminders run whatever the hour.

Each job is enqueued on a queue of its own and run by one `rq worker --worker-class
workers.worker.PreloadedWorker` on that queue, with the job's continuations (a run stops after `CLOCK_RUN_SECONDS`
and enqueues its next part). The SMS the reminders queue are not sent (their send jobs wait on a queue no worker
reads): the clock's work is measured, not the SMS transport's. Printed per job: seconds from enqueue to the last
part finished, rows done, how many parts (runs), peak RSS of a work horse, and the longest single transaction (the
longest batch). Then each job again, as its next hourly run finds the system: little or nothing left to do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job  # noqa: E402

from bench.common import ADMIN_URL, loadavg, own_database, own_redis, vacuum_analyze  # noqa: E402
from models.base import utcnow  # noqa: E402

DATABASE = "mutuelle_bench_clock"
LOADED_AT = datetime(2026, 1, 1)  # every loaded row's created_at: what the clock writes is newer
ENROLLED_ON = date(2025, 6, 1)
NETWORK_SIZE = 50
NETWORK_MONEY = 150_000  # on each network's account: ten households' share of a year


def psql_url(url: str) -> str:
    """Return a libpq URL for psycopg (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def migrate(url: str) -> None:
    """Bring the schema to the head revision as the Procfile's web line does."""
    env = dict(os.environ, DATABASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"flask db upgrade failed:\n{done.stderr}")


LOAD = [
    (
        "networks",
        """
        INSERT INTO networks (scheme_id, mutuelle_id, code, name, commune, contact_phone, created_at)
        SELECT %(scheme)s, %(mutuelle)s, 'RES-' || lpad(k::text, 5, '0'), 'Reseau ' || k, 'Thies Nord',
               '+22170' || lpad(k::text, 7, '0'), %(loaded)s
        FROM generate_series(0, %(networks)s - 1) k""",
    ),
    (
        "households",
        """
        INSERT INTO households (household_no, scheme_id, mutuelle_id, network_id, head_member_no, commune,
                                subsidy_category, plan, language, sms_opt_in, status, enrolled_on, created_at,
                                updated_at)
        SELECT 'SN-TN-' || lpad(n::text, 7, '0'), %(scheme)s, %(mutuelle)s, net.id,
               'SN-TN-' || lpad(n::text, 7, '0') || '-01', 'Thies Nord',
               CASE n %% 20 WHEN 0 THEN 'bsf' WHEN 10 THEN 'cec' ELSE 'standard' END, 'yearly',
               CASE WHEN n %% 2 = 0 THEN 'fr' ELSE 'wo' END, true, 'ACTIVE', %(enrolled)s, %(loaded)s, %(loaded)s
        FROM generate_series(0, %(households)s - 1) n
        LEFT JOIN networks net ON net.code = 'RES-' || lpad((n / %(size)s)::text, 5, '0')
        ORDER BY n""",
    ),
    (
        "members",
        """
        INSERT INTO members (member_no, household_id, last_name, first_name, sex, date_of_birth,
                             relationship_to_head, phone, status, joined_on, created_at, updated_at)
        SELECT h.household_no || '-0' || k, h.id, 'Ndiaye', CASE k %% 2 WHEN 1 THEN 'Awa' ELSE 'Modou' END,
               CASE k %% 2 WHEN 1 THEN 'F' ELSE 'M' END, make_date(1962 + k * 8, 5, 1),
               (ARRAY['head', 'spouse', 'child', 'child'])[k],
               CASE k WHEN 1 THEN '+2217' || lpad(h.id::text, 8, '0')
                      WHEN 2 THEN '+2218' || lpad(h.id::text, 8, '0') END,
               'active', %(enrolled)s, %(loaded)s, %(loaded)s
        FROM households h CROSS JOIN generate_series(1, 4) k
        ORDER BY h.id, k""",
    ),
    (
        "accounts",
        """
        INSERT INTO accounts (scheme_id, household_id, network_id, currency, created_at)
        SELECT scheme_id, id, NULL, 'XOF', %(loaded)s FROM households ORDER BY id""",
    ),
    (
        "network accounts",
        """
        INSERT INTO accounts (scheme_id, household_id, network_id, currency, created_at)
        SELECT scheme_id, NULL, id, 'XOF', %(loaded)s FROM networks ORDER BY id""",
    ),
    (
        "allocations",
        # A paying household's year (its 50 %% share and the fee), a subsidised one's funder-paid year and fee.
        """
        INSERT INTO allocations (source_ref, account_id, amount, currency, effective_on, payment_id, created_at)
        SELECT 'bench:' || h.id, a.id, CASE WHEN h.subsidy_category = 'standard' THEN 15000 ELSE 29000 END, 'XOF',
               %(enrolled)s, NULL, %(loaded)s
        FROM households h JOIN accounts a ON a.household_id = h.id ORDER BY h.id""",
    ),
    (
        "network allocations",
        """
        INSERT INTO allocations (source_ref, account_id, amount, currency, effective_on, payment_id, created_at)
        SELECT 'bench:network:' || a.network_id, a.id, %(network_money)s, 'XOF', %(enrolled)s, NULL, %(loaded)s
        FROM accounts a WHERE a.network_id IS NOT NULL ORDER BY a.id""",
    ),
    (
        "coverage periods",
        # Subsidised: the year ending today. Paying: a year ending between 60 days ago and 359 days ahead.
        """
        INSERT INTO coverage_periods (household_id, allocation_id, plan, months, start_on, end_on, waiting_until,
                                      price, household_share, subsidy_amount, funder, created_at)
        SELECT x.id, x.allocation_id, 'yearly', 12, (x.end_on + 1 - interval '12 months')::date, x.end_on, NULL,
               28000, CASE WHEN x.paying THEN 14000 ELSE 0 END, CASE WHEN x.paying THEN 14000 ELSE 28000 END,
               'state', %(loaded)s
        FROM (
            SELECT h.id, al.id AS allocation_id, h.subsidy_category = 'standard' AS paying,
                   CASE WHEN h.subsidy_category = 'standard'
                        THEN %(today)s::date + ((h.id::bigint * 7919) %% 420)::int - 60
                        ELSE %(today)s::date END AS end_on
            FROM households h JOIN accounts a ON a.household_id = h.id
            JOIN allocations al ON al.source_ref = 'bench:' || h.id
        ) x ORDER BY x.id""",
    ),
    (
        "ledger entries",
        """
        INSERT INTO ledger_entries (account_id, allocation_id, kind, amount, currency, funder, period_id,
                                    payment_id, reverses_entry_id, effective_on, note, created_at)
        SELECT al.account_id, al.id, e.kind, e.amount, 'XOF', e.funder,
               CASE WHEN e.on_period THEN p.id END, NULL, NULL, %(enrolled)s, NULL, %(loaded)s
        FROM coverage_periods p JOIN allocations al ON al.id = p.allocation_id
        CROSS JOIN LATERAL (VALUES
            (p.household_share > 0, 'payment', 15000, NULL, false),
            (p.household_share > 0, 'fee', -1000, NULL, false),
            (p.household_share > 0, 'charge', -28000, NULL, true),
            (p.household_share > 0, 'subsidy', 14000, 'state', true),
            (p.household_share = 0, 'subsidy', 28000, 'state', true),
            (p.household_share = 0, 'charge', -28000, NULL, true),
            (p.household_share = 0, 'subsidy', 1000, 'state', false),
            (p.household_share = 0, 'fee', -1000, NULL, false)
        ) AS e(wanted, kind, amount, funder, on_period)
        WHERE e.wanted ORDER BY p.id""",
    ),
    (
        "network ledger entries",
        """
        INSERT INTO ledger_entries (account_id, allocation_id, kind, amount, currency, funder, period_id,
                                    payment_id, reverses_entry_id, effective_on, note, created_at)
        SELECT al.account_id, al.id, 'payment', al.amount, 'XOF', NULL, NULL, NULL, NULL, %(enrolled)s, NULL,
               %(loaded)s
        FROM allocations al WHERE al.source_ref LIKE 'bench:network:%%' ORDER BY al.id""",
    ),
    (
        "payment requests",
        # One household in ten asked to pay over USSD; half of those requests are past their expiry.
        """
        INSERT INTO payment_requests (reference, scheme_id, household_id, network_id, amount, currency, periods,
                                      payer_phone, channel, caller_key, status, expires_at, created_at)
        SELECT lpad(h.id::text, 7, '0'), h.scheme_id, h.id, NULL, 14000, 'XOF', 1, NULL, 'ussd', NULL, 'OPEN',
               CASE WHEN h.id %% 20 = 3 THEN %(now)s - interval '1 hour' ELSE %(now)s + interval '3 days' END,
               %(loaded)s
        FROM households h WHERE h.id %% 10 = 3 ORDER BY h.id""",
    ),
]


def load(url: str, households: int) -> None:
    """Load the households, members, accounts, periods, ledger and requests with set-based SQL; print each step."""
    today = utcnow().date()
    with psycopg.connect(psql_url(url)) as conn:
        scheme = conn.execute("SELECT id FROM schemes WHERE code = 'cmu-thies'").fetchone()
        mutuelle = conn.execute("SELECT id FROM mutuelles WHERE code = 'SN-TN'").fetchone()
        if scheme is None or mutuelle is None:
            raise SystemExit("no cmu-thies scheme / SN-TN mutuelle: load schemes/cmu-thies.toml first")
        params = {
            "scheme": scheme[0],
            "mutuelle": mutuelle[0],
            "households": households,
            "networks": max(1, households // 500),
            "size": NETWORK_SIZE,
            "enrolled": ENROLLED_ON,
            "loaded": LOADED_AT,
            "today": today,
            "now": utcnow(),
            "network_money": NETWORK_MONEY,
        }
        for name, sql in LOAD:
            started = time.perf_counter()
            rows = conn.execute(sql, params).rowcount
            conn.commit()
            print(f"  loaded {rows:,} {name} in {time.perf_counter() - started:.1f} s (load {loadavg()})", flush=True)
    started = time.perf_counter()
    vacuum_analyze(url)
    print(f"  vacuum analyze in {time.perf_counter() - started:.1f} s", flush=True)


def loaded_households(url: str) -> int:
    """Return how many households the database holds."""
    with psycopg.connect(psql_url(url)) as conn:
        row = conn.execute("SELECT count(*) FROM households").fetchone()
    return int(row[0]) if row else 0


def load_schemes_once(url: str) -> None:
    """Load the shipped schemes unless cmu-thies is there."""
    from bench.common import load_schemes

    with psycopg.connect(psql_url(url)) as conn:
        there = conn.execute("SELECT 1 FROM schemes WHERE code = 'cmu-thies'").fetchone()
    if there is None:
        load_schemes(url)


def prepare(url: str, households: int) -> None:
    """Migrate, load the schemes, and the households unless the database has them already."""
    migrate(url)
    load_schemes_once(url)
    have = loaded_households(url)
    if have:
        print(f"database already holds {have:,} households: not loaded again")
        return
    started = time.perf_counter()
    print(f"loading {households:,} households ({households * 4:,} members)…", flush=True)
    load(url, households)
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--database-url", help="use this database (loaded once, kept) instead of a new one")
    parser.add_argument("--keep", action="store_true", help="keep the database created by this run")
    parser.add_argument("--load-only", action="store_true", help="load the database and stop")
    parser.add_argument("--batch", type=int, default=2000, help="CLOCK_BATCH_SIZE")
    parser.add_argument("--run-seconds", type=int, default=120, help="CLOCK_RUN_SECONDS")
    args = parser.parse_args()
    if args.keep and not args.database_url:
        from bench.common import create_database, unique_name

        url = create_database(ADMIN_URL, unique_name(DATABASE))
        print(f"database kept: {url}", flush=True)
        prepare(url, args.households)
        if not args.load_only:
            run(url, args)
        return
    with own_database(ADMIN_URL, DATABASE, args.database_url) as (url, _created):
        prepare(url, args.households)
        if not args.load_only:
            run(url, args)


REARM = [
    # What the previous run's jobs wrote: periods, entries and allocations, reminders; expired requests reopened.
    "DELETE FROM ledger_entries WHERE created_at > %(loaded)s",
    "DELETE FROM coverage_periods WHERE created_at > %(loaded)s",
    "DELETE FROM allocations WHERE created_at > %(loaded)s",
    "DELETE FROM messages",
    """UPDATE payment_requests SET status = 'OPEN',
        expires_at = CASE WHEN household_id %% 20 = 3 THEN %(now)s - interval '1 hour'
                          ELSE %(now)s + interval '3 days' END""",
    # Reminders whatever the hour the benchmark runs at.
    "UPDATE schemes SET daytime_start = '00:00:00', daytime_end = '23:59:59'",
]


def rearm(url: str) -> None:
    """Take back what a previous run's jobs wrote and move the loaded periods to today (a kept database)."""
    today = utcnow().date()
    started = time.perf_counter()
    with psycopg.connect(psql_url(url)) as conn:
        params = {"loaded": LOADED_AT, "now": utcnow()}
        for sql in REARM:
            conn.execute(sql, params)
        row = conn.execute(
            "SELECT max(end_on) FROM coverage_periods WHERE household_share = 0 AND created_at = %(loaded)s", params
        ).fetchone()
        base = row[0] if row else None
        if base is not None and base != today:  # loaded on another day: the subsidised years end today again
            shift = (today - base).days
            conn.execute(
                "UPDATE coverage_periods SET start_on = start_on + %(shift)s, end_on = end_on + %(shift)s "
                "WHERE created_at = %(loaded)s",
                {"shift": shift, "loaded": LOADED_AT},
            )
        conn.commit()
    vacuum_analyze(url)
    print(f"rearmed in {time.perf_counter() - started:.1f} s", flush=True)


CLOCK_QUEUE = "bench-clock"  # the clock's jobs and their continuations; one worker reads it
SMS_QUEUE = "bench-sms"  # where the reminders' send jobs go: no worker reads it (sending is not measured)
JOBS = [
    ("expire_requests", "workers.clock_jobs.expire_requests"),
    ("book_subsidies", "workers.clock_jobs.book_subsidies"),
    ("send_reminders", "workers.reminders.send_reminders"),
    ("pay_networks", "workers.clock_jobs.pay_networks"),
    ("sweep_outbox", "workers.sms.sweep_outbox"),
    ("sweep_stuck_payments", "workers.reconcile.sweep_stuck_payments"),
]


@dataclass
class Timing:
    """One clock job's pass: its parts' reports, the wall time from enqueue to the worker's exit."""

    name: str
    wall: float
    parts: list[dict[str, Any]]
    result: Any

    def line(self) -> str:
        """Return the printed line of this job."""
        if not self.parts:  # not a batched job: its result is its count
            return f"{self.name:<22} {self.wall:8.1f} s  result {self.result!r}"
        done = sum(part["done"] for part in self.parts)
        longest = max(part["longest_batch_seconds"] for part in self.parts)
        rss = max(part["peak_rss_mb"] for part in self.parts)
        working = sum(part["seconds"] for part in self.parts)
        batches = sum(part["batches"] for part in self.parts)
        return (
            f"{self.name:<22} {self.wall:8.1f} s  ({working:.1f} s in the job)  {done:>9,} rows  "
            f"{len(self.parts)} run(s) {batches:>5} batches  longest transaction {longest:6.2f} s  "
            f"peak RSS {rss:5.0f} MB"
        )


def run_job(name: str, path: str, env: dict[str, str], redis_url: str) -> Timing:
    """Enqueue one clock job as `rq cron` does, run a real burst worker until it and its continuations are done."""
    redis = Redis.from_url(redis_url)
    queue = Queue(CLOCK_QUEUE, connection=redis)
    for registry in (queue.finished_job_registry, queue.failed_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    started = time.perf_counter()
    queue.enqueue(path, job_timeout=3600)
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url]
    command += ["--worker-class", "workers.worker.PreloadedWorker", CLOCK_QUEUE]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    failed = queue.failed_job_registry.get_job_ids()
    if done.returncode or failed:
        raise SystemExit(f"{name}: worker exit {done.returncode}, failed jobs {failed}:\n{done.stderr[-4000:]}")
    jobs = [Job.fetch(job_id, connection=redis) for job_id in queue.finished_job_registry.get_job_ids()]
    jobs.sort(key=lambda job: job.started_at or datetime.min)
    results = [job.return_value() for job in jobs]
    parts = [result for result in results if isinstance(result, dict) and "longest_batch_seconds" in result]
    redis.close()
    return Timing(name, wall, parts, results[-1] if results else None)


def run(url: str, args: argparse.Namespace) -> None:
    """Time each clock job on a real RQ worker: the bad day's first runs, then each job's next run."""
    rearm(url)
    with own_redis() as redis_url:
        env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, RQ_QUEUE=SMS_QUEUE, LOG_LEVEL="WARNING")
        env.update(CLOCK_BATCH_SIZE=str(args.batch), CLOCK_RUN_SECONDS=str(args.run_seconds), PYTHONPATH=str(ROOT))
        print(
            f"\nclock jobs, {loaded_households(url):,} households, batches of {args.batch}, "
            f"{args.run_seconds} s a run (load {loadavg()}):",
            flush=True,
        )
        for round_name in ("first run (the bad day)", "next run (an hour later)"):
            print(f"-- {round_name}", flush=True)
            for name, path in JOBS:
                if name == "sweep_outbox":
                    age_messages(url)  # the reminders' SMS, never sent: stuck for the sweeper
                timing = run_job(name, path, env, redis_url)
                print(f"{timing.line()}  (load {loadavg()})", flush=True)


def age_messages(url: str) -> None:
    """Make the queued messages an hour old (their send jobs never ran): what the outbox sweeper looks for."""
    with psycopg.connect(psql_url(url)) as conn:
        conn.execute("UPDATE messages SET created_at = created_at - interval '1 hour' WHERE status = 'QUEUED'")
        conn.commit()


if __name__ == "__main__":
    main()
