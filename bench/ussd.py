"""Benchmark `POST /ussd` against a bare Flask app answering a constant `CON`, under the same gunicorn settings.

    .venv/bin/python bench/ussd.py [--households 100000] [--seconds 10] [--concurrency 16]
                                   [--database-url postgresql://…/a_database [--reuse]] [--redis-url redis://…]

Both apps run as gunicorn subprocesses on 127.0.0.1 (sync workers, 2 of them); the real app uses a PostgreSQL
database of `--households` households of 4 members (bulk-inserted with Core inserts) and a real Redis: its own
database (dropped at the end) and its own redis-server on a loopback port (stopped at the end), unless given
`--database-url` (kept; with `--reuse`, used as it is when it holds the households) and `--redis-url`. The
load generator (asyncio, raw HTTP/1.1, one connection per request as gunicorn's sync workers close them) plays
realistic multi-hop sessions of random households: dial, My coverage, back, My household, back, My coverage.
It prints the maximum req/s of each app, their ratio, p50/p99 at the maximum load, and p99 at half the
maximum rate of the real app (an open-loop run at a fixed arrival rate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import models  # noqa: E402
from bench.common import ADMIN_URL, free_port, own_database, own_redis  # noqa: E402
from models.base import Language, MemberStatus, Sex  # noqa: E402
from models.bulk import analyze  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.members.household import Household, Member  # noqa: E402
from models.schemes.mutuelle import home_mutuelle  # noqa: E402
from models.schemes.scheme_file import load_scheme, parse_scheme_file  # noqa: E402

DATABASE = "mutuelle_bench_ussd"  # the prefix of its own database's name
TOKEN = "bench-callback-token-0123456789"
GUNICORN = (
    "bind = '127.0.0.1:{port}'\nworkers = 2\nworker_class = 'sync'\nthreads = 1\ntimeout = 30\n"
    "accesslog = None\nerrorlog = '-'\nloglevel = 'warning'\n"
)
SESSION = ["", "1", "1*0", "1*0*3", "1*0*3*0", "1*0*3*0*1"]
FIRST = ["Aminata", "Fatou", "Awa", "Khady", "Ousmane", "Mamadou", "Modou", "Ibrahima"]
BATCH = 10_000


def bare_app() -> Flask:
    """Return the baseline: a Flask app whose `/ussd` answers a constant `CON`."""
    app = Flask("bare")

    @app.post("/ussd")
    def ussd() -> tuple[str, int, dict[str, str]]:
        return "CON Bonjour\n1 Ma couverture", 200, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def phone_of(n: int) -> str:
    """Return the phone of household n's head."""
    return f"+22177{n:07d}"


def prepare_database(url: str, households: int, reuse: bool) -> None:
    """Load the schemes and `households` households of 4 into the empty database (or, with `reuse`, keep them)."""
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session:
        held = session.scalar(select(func.count()).select_from(Household)) or 0
    if held and reuse and held == households:
        print(f"database: reusing its {held:,} households")
        engine.dispose()
        return
    if held:
        engine.dispose()
        raise SystemExit(
            f"the database holds {held:,} households: give an empty one (or --reuse one of {households:,})"
        )
    started = time.perf_counter()
    with Session(engine) as session:
        scheme = load_scheme(session, parse_scheme_file(ROOT / "schemes" / "cmu-thies.toml"))
        session.commit()
        rng = random.Random(1)
        mutuelle_id = home_mutuelle(session, scheme.id, "Thies Nord").id
        for start in range(0, households, BATCH):
            stop = min(households, start + BATCH)
            rows = [
                {
                    "household_no": f"SN-TN-{n:06d}",
                    "scheme_id": scheme.id,
                    "mutuelle_id": mutuelle_id,
                    "head_member_no": f"SN-TN-{n:06d}-01",
                    "commune": "Thies Nord",
                    "subsidy_category": "standard",
                    "plan": "yearly",
                    "language": rng.choice([Language.FR, Language.WO]),
                    "enrolled_on": date(2026, 1, 1),
                }
                for n in range(start, stop)
            ]
            ids = session.scalars(insert(Household).returning(Household.id, sort_by_parameter_order=True), rows).all()
            members = [
                {
                    "member_no": f"SN-TN-{n:06d}-{k:02d}",
                    "household_id": household_id,
                    "last_name": "Ndiaye",
                    "first_name": rng.choice(FIRST),
                    "sex": Sex.F if k % 2 else Sex.M,
                    "relationship_to_head": "head" if k == 1 else "child",
                    "status": MemberStatus.ACTIVE,
                    "date_of_birth": date(1970 + k * 8, 1 + n % 12, 1 + n % 28),
                    "phone": phone_of(n) if k == 1 else None,
                    "joined_on": date(2026, 1, 1),
                }
                for n, household_id in zip(range(start, stop), ids, strict=True)
                for k in range(1, 5)
            ]
            session.execute(insert(Member.__table__), members)
            session.commit()
        analyze(session, (Household, Member))  # as `members import` does: the planner knows the rows
    print(f"database: {households:,} households, {households * 4:,} members in {time.perf_counter() - started:.1f} s")
    engine.dispose()


def start_server(target: str, port: int, env: dict[str, str], conf: Path) -> subprocess.Popen[bytes]:
    """Start gunicorn with the bench settings on the port and wait until it answers."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen([str(gunicorn), "-c", str(conf), target], cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            asyncio.run(request(port, form(0, "", "ATUid_warm")))
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{target} did not start on port {port}")


def form(n: int, text: str, session_id: str) -> bytes:
    """Return the raw HTTP request of one AT hop."""
    body = urllib.parse.urlencode(
        {"sessionId": session_id, "serviceCode": "*384*123#", "phoneNumber": phone_of(n), "networkCode": "60801"}
        | {"text": text}
    ).encode()
    head = (
        f"POST /ussd?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def request(port: int, raw: bytes) -> bytes:
    """Send one request on a new connection and return the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await reader.read()
    writer.close()
    if b" 200 " not in data[:20] or (b"\r\n\r\nCON " not in data and b"\r\n\r\nEND " not in data):
        raise RuntimeError(data[:200])
    return data


def hops(households: int, rng: random.Random) -> list[bytes]:
    """Return the requests of one session of a random household."""
    n = rng.randrange(households)
    session_id = f"ATUid_{rng.getrandbits(64):016x}"
    return [form(n, text, session_id) for text in SESSION]


async def closed_loop(port: int, households: int, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    """Run `concurrency` phones back to back for `seconds`; return requests done and latencies (s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def phone(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            for raw in hops(households, rng):
                started = time.perf_counter()
                await request(port, raw)
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(phone(seed) for seed in range(concurrency)))
    return len(latencies), latencies


async def open_loop(port: int, households: int, seconds: float, rate: float) -> list[float]:
    """Start sessions' hops at a fixed total rate (req/s) for `seconds`; return latencies from the planned start."""
    latencies: list[float] = []
    rng = random.Random(7)
    queue = [raw for _ in range(int(seconds * rate / len(SESSION)) + 1) for raw in hops(households, rng)]
    interval = 1 / rate
    started = time.perf_counter()
    tasks = []

    async def one(raw: bytes, planned: float) -> None:
        await request(port, raw)
        latencies.append(time.perf_counter() - planned)

    for index, raw in enumerate(queue[: int(seconds * rate)]):
        planned = started + index * interval
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw, planned)))
    await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile of the values in milliseconds."""
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000


def measure(name: str, port: int, households: int, seconds: float, concurrency: int) -> float:
    """Warm up, run the closed loop and print the figures; return req/s."""
    asyncio.run(closed_loop(port, households, 2, concurrency))
    done, latencies = asyncio.run(closed_loop(port, households, seconds, concurrency))
    rate = done / seconds
    print(f"{name:5} max {rate:7,.0f} req/s  p50 {pct(latencies, 0.5):5.1f} ms  p99 {pct(latencies, 0.99):5.1f} ms")
    return rate


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL where its own database is created")
    parser.add_argument("--database-url", help="use this database (empty, or see --reuse) instead of creating one")
    parser.add_argument("--reuse", action="store_true", help="use --database-url as is if it has the households")
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    args = parser.parse_args(argv)
    if args.reuse and not args.database_url:
        parser.error("--reuse needs --database-url (the benchmark's own database is dropped at the end)")
    with (
        own_database(args.admin_url, DATABASE, args.database_url) as (url, _created),
        own_redis(args.redis_url, tcp=True) as redis_url,
    ):
        prepare_database(url, args.households, args.reuse)
        run(args, url, redis_url)


def run(args: argparse.Namespace, url: str, redis_url: str) -> None:
    """Serve both apps in turn and print their figures."""
    compare_with_bare(url, redis_url, args.households, args.seconds, args.concurrency)


def compare_with_bare(url: str, redis_url: str, households: int, seconds: float, concurrency: int) -> float:
    """Serve the bare app then the real one on the database at `url`, print their figures; return the ratio.

    Household n's head must answer at `phone_of(n)` (`prepare_database` does so, and `bench/import.py`'s file).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, CALLBACK_TOKEN=TOKEN, LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mutuelle-bench-") as tmp:
        for name, target, port in (
            ("bare", "bench.ussd:bare_app()", free_port()),
            ("app", "app:create_app()", free_port()),
        ):
            conf = Path(tmp) / f"{name}.conf.py"
            conf.write_text(GUNICORN.format(port=port))
            server = start_server(target, port, env, conf)
            try:
                results[name] = measure(name, port, households, seconds, concurrency)
                if name == "app":
                    half = results["app"] / 2
                    latencies = asyncio.run(open_loop(port, households, seconds, half))
                    print(
                        f"app at half the max rate ({half:,.0f} req/s): p50 {pct(latencies, 0.5):.1f} ms, "
                        f"p99 {pct(latencies, 0.99):.1f} ms (target <= 25 ms)"
                    )
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(20)
    ratio = results["app"] / results["bare"]
    print(f"ratio app/bare: {ratio:.2f} (target >= 0.5) on {os.cpu_count()} cores")
    return ratio


if __name__ == "__main__":
    main()
