"""Benchmark the admin at scale: every admin page, report, renewal list and export through HTTP, ≤ 2 s each.

    .venv/bin/python bench/admin_pages.py [--households 1000000] [--database-url URL] [--keep] [--deep-page 2000]

Creates its own PostgreSQL database (migrated with `flask --app app db upgrade`, as the Procfile's web line does;
dropped at the end unless `--keep`, which prints its URL for a rerun with `--database-url`), loads households of 4
(bench.common `load_households`) and a year of activity (`load_activity`: a payment for every second household,
its allocation, coverage period, ledger entries, events and SMS receipt), a campaign with targets, and an admin
user; then VACUUM ANALYZE. Starts the app as the Procfile's web line does (gunicorn, gunicorn.conf.py, bound to
127.0.0.1 on a free port) with its own redis-server, signs in through the real login form (its CSRF token), and
walks every GET page of the admin's URL map: list pages (first page, a deep page, `after=` cursors, filters and
searches), reports, renewal lists, each export downloaded in full, a household, a payment, a network and a campaign.
Prints a table (path, status, first byte, seconds, bytes, ≤ 2 s) and how many pages are over 2 s; exits non-zero if
a page is not 200.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.common import (  # noqa: E402
    ADMIN_URL,
    create_database,
    drop_database,
    free_port,
    load_activity,
    load_households,
    load_schemes,
    loadavg,
    own_redis,
    unique_name,
    vacuum_analyze,
)
from models.access.staff import create_staff_user  # noqa: E402
from models.base import StaffRole  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.enrolment.campaigns import add_session, create_campaign, set_target  # noqa: E402

DATABASE = "mutuelle_bench_admin"
USERNAME = "bench.admin"
PASSWORD = "bench-admin-Password-1"
TARGET = 2.0


def environment(url: str, redis_url: str, port: int) -> dict[str, str]:
    """Return the web process's environment: the database, the Redis, development settings."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        APP_ENV="development",
        AT_USERNAME="",
        AT_API_KEY="",
        PORT=str(port),
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def prepare(url: str, env: dict[str, str], households: int) -> None:
    """Migrate, load the schemes, households, activity, a campaign and the admin user; VACUUM ANALYZE.

    Each step is skipped when its rows are there (a database a stopped run left, given with --database-url).
    """
    started = time.perf_counter()
    migrate = subprocess.run(
        ["flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if migrate.returncode:
        raise SystemExit(f"flask db upgrade failed:\n{migrate.stderr}")
    engine = make_engine(url)
    with engine.connect() as conn:
        loaded = {
            name: bool(conn.scalar(text(f"SELECT EXISTS (SELECT 1 FROM {table})")))
            for name, table in (("schemes", "schemes"), ("households", "households"), ("activity", "payments"))
        }
        campaigns = bool(conn.scalar(text("SELECT EXISTS (SELECT 1 FROM campaigns)")))
    if not loaded["schemes"]:
        load_schemes(url)
    if not loaded["households"]:
        load_households(url, households)
        print(f"loaded {households:,} households, {households * 4:,} members in {time.perf_counter() - started:.0f} s")
    if not loaded["activity"]:
        step = time.perf_counter()
        written = load_activity(url)
        print(f"activity {written} in {time.perf_counter() - step:.0f} s")
    if loaded["activity"] and "Running upgrade" in migrate.stderr:
        vacuum_analyze(url)  # new indexes on a loaded database: the planner's statistics of their expressions
        print(f"migrated and analysed in {time.perf_counter() - started:.0f} s")
    if not campaigns:
        with Session(engine) as session:
            campaign = create_campaign(
                session,
                name="Campagne 2027",
                scheme_code="cmu-thies",
                start_on=date(2026, 11, 1),
                end_on=date(2027, 1, 31),
                mutuelle_code=None,
            )
            codes = session.scalars(text("SELECT code FROM networks ORDER BY code LIMIT 200")).all()
            for k, code in enumerate(codes):
                set_target(session, campaign, code, 60)
                held_on = date(2026, 12, 1 + k % 28)
                add_session(session, campaign, held_on=held_on, place=f"Quartier {k}", network_code=code)
            create_staff_user(session, USERNAME, PASSWORD, StaffRole.ADMIN, language="en")
            session.commit()
        step = time.perf_counter()
        vacuum_analyze(url)
        print(f"VACUUM ANALYZE in {time.perf_counter() - step:.0f} s; ready {time.perf_counter() - started:.0f} s")
    engine.dispose()


# Each list page: its first page, a deep page (`page=`), the next page through its `rel="next"` cursor link, and
# its filters and searches. `{deep}` is the deep page number; `{household_no}`, `{phone}`… values of the data.
LISTS = [
    "/admin/households",
    "/admin/households?page={deep}",
    "/admin/households?q={household_no}",
    "/admin/households?q={household_prefix}",
    "/admin/households?q={phone}",
    "/admin/households?q=Diouf",
    "/admin/households?q={member_name}",
    "/admin/households?status=ACTIVE",
    "/admin/households?status=LAPSED&page=20",
    "/admin/households?category=bsf",
    "/admin/households?network={network_code}",
    "/admin/payments",
    "/admin/payments?page={deep}",
    "/admin/payments?status=UNMATCHED",
    "/admin/payments?status=UNMATCHED&page=50",
    "/admin/payments?from={month_ago}&to={today}",
    "/admin/payments?network={network_id}",
    "/admin/payments/to-refund-or-keep",
    "/admin/payments/to-refund-or-keep?page={deep}",
    "/admin/reconciliation",
    "/admin/reconciliation?page={deep}",
    "/admin/reconciliation?status=UNMATCHED",
    "/admin/sms",
    "/admin/sms?page={deep}",
    "/admin/sms?status=Failed",
    "/admin/sms?direction=out&page=200",
    "/admin/ussd",
    "/admin/checks",
    "/admin/rejected",
    "/admin/networks",
    "/admin/networks?page={deep_networks}",
    "/admin/renewals",
    "/admin/renewals?page={deep}",
    "/admin/renewals?kind=lapsed",
    "/admin/renewals?kind=ending&days=60",
    "/admin/enrolments",
    "/admin/statements",
]
OTHER = [
    "/admin/",
    "/admin/queues",
    "/admin/reports",
    "/admin/reports?by=commune",
    "/admin/reports?network={network_code}",
    "/admin/reports?months=24",
    "/admin/exports",
    "/admin/campaigns",
    "/admin/campaigns/{campaign_id}",
    "/admin/campaigns/{campaign_id}/edit",
    "/admin/households/{household_id}",
    "/admin/payments/{payment_id}",
    "/admin/payments/{unmatched_id}",
    "/admin/networks/{network_id}",
    "/admin/networks/{network_id}?page=2",
    "/admin/staff",
    "/admin/agents",
    "/admin/tokens",
    "/admin/devices",
    "/admin/simulator",
    "/admin/simulator/outbox",
]
DOWNLOADS = [
    "/admin/renewals.csv",
    "/admin/reconciliation.csv",
    "/admin/reconciliation.csv?from={month_ago}",
    "/admin/campaigns/{campaign_id}.csv",
    "/admin/campaigns/{campaign_id}/days.csv",
    "/admin/exports/households.csv",
    "/admin/exports/members.csv",
    "/admin/exports/members.csv?network={network_code}",
    "/admin/exports/coverage-periods.csv",
    "/admin/exports/payments.csv",
    "/admin/exports/payments.csv?from={month_ago}",
    "/admin/exports/fhir-patient.ndjson",
    "/admin/exports/fhir-coverage.ndjson",
]
NOT_WALKED = {"/admin/login": "the sign-in form (used to sign in)"}
NEXT_LINK = re.compile(r'<a href="([^"]+)" rel="next">')


def values(url: str, deep: int) -> dict[str, Any]:
    """Return the values the walked paths name: ids, numbers, a phone and dates of the loaded data."""
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                """SELECT h.id, h.household_no, m.phone, m.first_name || ' ' || m.last_name FROM households h
                JOIN members m ON m.member_no = h.head_member_no ORDER BY h.id OFFSET
                (SELECT count(*) / 2 FROM households) LIMIT 1"""
            )
        ).one()
        found: dict[str, Any] = {
            "household_id": row[0],
            "household_no": row[1],
            "household_prefix": row[1][:-2],
            "phone": row[2],
            "member_name": row[3],
            "payment_id": conn.scalar(text("SELECT max(id) FROM payments WHERE status = 'ALLOCATED'")),
            "unmatched_id": conn.scalar(text("SELECT max(id) FROM payments WHERE status = 'UNMATCHED'")),
            "network_id": conn.scalar(text("SELECT min(id) FROM networks")),
            "network_code": conn.scalar(text("SELECT min(code) FROM networks")),
            "campaign_id": conn.scalar(text("SELECT max(id) FROM campaigns")),
            "enrolment_id": conn.scalar(text("SELECT max(id) FROM enrolments")),
            "import_id": conn.scalar(text("SELECT max(id) FROM statement_imports")),
            "deep_networks": max(1, int(conn.scalar(text("SELECT count(*) FROM networks")) or 0) // 50),
        }
    engine.dispose()
    today = datetime.now(UTC).date()
    found.update(deep=deep, today=today.isoformat(), month_ago=date.fromordinal(today.toordinal() - 30).isoformat())
    return found


def sign_in(base: str) -> requests.Session:
    """Sign in through the real form (its CSRF token) and return the signed-in client."""
    client = requests.Session()
    form = client.get(f"{base}/admin/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or token is None:
        raise SystemExit(f"no sign-in form at /admin/login ({form.status_code})")
    answer = client.post(
        f"{base}/admin/login",
        data={"csrf_token": token.group(1), "next": "", "username": USERNAME, "password": PASSWORD},
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise SystemExit(f"sign-in refused ({answer.status_code})")
    return client


def timed(
    client: requests.Session, base: str, path: str, limit: float | None = None
) -> tuple[int, float, float, int, str, bool]:
    """GET a path, reading the whole body (or until `limit` seconds); return status, seconds to the first byte and
    in all, bytes, the text (its first 1 MB, where the next-page link is) and whether the body was cut short."""
    started = time.perf_counter()
    with client.get(f"{base}{path}", stream=True, timeout=3600) as response:
        first = None
        size = 0
        head = b""
        cut = False
        for chunk in response.iter_content(64 * 1024):
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
            if len(head) < 1 << 20:
                head += chunk
            if limit is not None and time.perf_counter() - started > limit:
                cut = True
                break
        total = time.perf_counter() - started
        text = head.decode(errors="replace")
        return response.status_code, first if first is not None else total, total, size, text, cut


def routes(env: dict[str, str]) -> set[str]:
    """Return the admin's GET rules of the URL map (the app built as the web process builds it)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from app import create_app

        app = create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.") and "GET" in (rule.methods or set())
    }


def rule_of(path: str, rules: set[str]) -> str | None:
    """Return the URL rule a walked path answers to (its path without the query, ids as `<int:…>`)."""
    bare = path.split("?", 1)[0]
    for rule in rules:
        pattern = "^" + re.sub(r"<int:\w+>", r"\\d+", rule).replace(".", r"\.") + "$"
        if re.match(pattern, bare):
            return rule
    return None


def walk(args: argparse.Namespace, env: dict[str, str], port: int) -> int:
    """Start the web, sign in, time every page; return the exit status."""
    from bench.production import Processes

    logs = Path(tempfile.mkdtemp(prefix="mutuelle-bench-admin-"))
    env = dict(env, WAVE_WEBHOOK_SECRET=secrets.token_hex(16))
    processes = Processes(env, logs, port, env["REDIS_URL"])
    known = values(env["DATABASE_URL"], args.deep_page)
    rules = routes(env)
    processes.start_web()
    base = f"http://127.0.0.1:{port}"
    rows: list[tuple[str, int, float, float, int]] = []
    visited: set[str] = set()
    try:
        client = sign_in(base)
        paths = []
        for path in LISTS + OTHER + DOWNLOADS:
            try:
                paths.append(path.format(**known))
            except (KeyError, ValueError):
                continue
        for key, rule in (("enrolment_id", "/admin/enrolments/{}"), ("import_id", "/admin/statements/{}")):
            if known[key] is not None:
                paths.append(rule.format(known[key]))
        for path in paths:
            if args.only and not re.search(args.only, path):
                continue
            streamed = path.split("?", 1)[0].endswith((".csv", ".ndjson"))
            status, first, total, size, body, cut = timed(client, base, path, args.download_limit if streamed else None)
            rows.append((path + (" (cut)" if cut else ""), status, first, total, size))
            print(f"  {path[:70]:<70} {status} {first:.3f} {total:.3f} {size:,}" + (" cut" if cut else ""), flush=True)
            visited.add(rule_of(path, rules) or path)
            found = NEXT_LINK.search(body) if path in {p.format(**known) for p in LISTS} else None
            if found and "after=" in found.group(1):
                following = found.group(1).replace("&amp;", "&")
                status, first, total, size, _body, _cut = timed(client, base, following)
                rows.append((following, status, first, total, size))
    finally:
        processes.check_alive()
        for process in processes.running.values():
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
    print(f"\n{'path':<70} {'status':>6} {'first byte':>10} {'seconds':>8} {'bytes':>12}  ≤ {TARGET:g} s")
    slow = 0
    for path, status, first, total, size in rows:
        streamed = path.split("?", 1)[0].split(" ", 1)[0].endswith((".csv", ".ndjson"))
        met = (first if streamed else total) <= TARGET
        slow += not met
        print(
            f"{path[:70]:<70} {status:>6} {first:>10.3f} {total:>8.3f} {size:>12,}  "
            + ("yes" if met else "NO")
            + (" (first byte; streamed)" if streamed else "")
        )
    missing = [] if args.only else sorted(rules - visited - set(NOT_WALKED))
    for rule in missing:
        print(f"not walked: {rule} (no row of that kind in the data)")
    print(f"load average {loadavg()}; web logs in {logs}")
    print(f"{len(rows) - slow} of {len(rows)} within {TARGET:g} s (downloads: their first byte); {slow} over")
    bad = [path for path, status, *_ in rows if status != 200]
    if bad:
        print(f"NOT 200: {', '.join(bad)}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, prepare or reuse the database, walk the admin and exit with its status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--deep-page", type=int, default=2000, help="the deep page asked of each list")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL where its own database is created")
    parser.add_argument("--database-url", help="an already loaded database (a --keep run's): no load")
    parser.add_argument("--keep", action="store_true", help="do not drop the database it creates (prints its URL)")
    parser.add_argument("--load-only", action="store_true", help="prepare the database and stop (with --keep)")
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument(
        "--download-limit",
        type=float,
        help="stop reading a download after this many seconds (its first byte and rate still timed; default: all)",
    )
    parser.add_argument("--only", help="walk only the paths this regular expression finds (a rerun of some pages)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"machine: {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {loadavg()}")
    name = None
    url = args.database_url
    if not url:
        name = unique_name(DATABASE)
        url = create_database(args.admin_url, name)
        print(f"database {url}" + (" (kept)" if args.keep else ""))
    status = 1
    try:
        with own_redis(args.redis_url) as redis_url:
            port = free_port()
            env = environment(url, redis_url, port)
            prepare(url, env, args.households)
            status = walk(args, env, port) if not args.load_only else 0
    finally:
        if name and not args.keep:
            drop_database(args.admin_url, name)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
