"""Benchmark `payments import-statement`: a Wave Business export of N lines against the payments webhooks brought.

    .venv/bin/python bench/statement.py [--lines 50000] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                        [--database-url postgresql://…/an_empty_database]
    .venv/bin/python bench/statement.py --sqlite

The system already holds most credits (confirmed, as webhooks bring them); per 100 lines, one payout, one credit no
notification brought, one provisional payment (a forwarded text) and one with another amount; one duplicate line;
and one payment per 100 lines that the statement lacks. Prints lines/s for the import and the re-import, and the
process's peak RSS after building the scenario and after each import (the import's own peak shows when it is
above the scenario's).
It creates its own PostgreSQL database (dropped at the end) unless given `--database-url`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import models  # noqa: E402
from bench.common import ADMIN_URL, loadavg, own_database, peak_rss_mb, prepare_schema  # noqa: E402
from models.base import PaymentStatus  # noqa: E402
from models.bulk import analyze  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.imports.statements import MODELS_WRITTEN, import_statement  # noqa: E402
from models.payments.intake import fields_hash  # noqa: E402
from models.payments.payment import Payment  # noqa: E402
from models.payments.statement import BreakKind  # noqa: E402

DATABASE = "mutuelle_bench_statement"  # the prefix of its own database's name
HEADER = [
    "Transaction ID",
    "Date",
    "Type",
    "Status",
    "Amount",
    "Fee",
    "Net Amount",
    "Currency",
    "Counterparty Name",
    "Counterparty Mobile",
    "Client Reference",
    "Balance",
]
START = datetime(2026, 11, 20, 0, 0, 0)
DUPLICATED = 5  # the row (n) the export repeats at its end
BATCH = 50_000  # payments stored at a time while building


@dataclass(frozen=True)
class Scenario:
    """A generated statement (a file on disk) and the breaks importing it must find."""

    path: Path
    lines: int
    expected: dict[BreakKind, int]


def _paid_at(n: int) -> datetime:
    return START + timedelta(seconds=12 * n)


def _credit(n: int) -> tuple[str, int, str, str]:
    return f"T_{n:09d}", 3500 + (n % 7) * 500, f"+22177{n % 10_000_000:07d}", f"SN-TN-{n:06d}"


def _flush(session: Session, payments: list[dict[str, object]]) -> None:
    if payments:
        session.execute(insert(Payment), payments)
        payments.clear()


def build(session: Session, lines: int, path: Path) -> Scenario:
    """Write the statement to `path` and store the payments the system knows (Core inserts, in batches), commit."""
    payments: list[dict[str, object]] = []
    expected = dict.fromkeys(BreakKind, 0)
    balance = 0
    duplicated: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in range(lines - 1):
            when = f"{_paid_at(n):%Y-%m-%dT%H:%M:%S}Z"
            if n % 100 == 0:
                row = [f"T_P{n:08d}", when, "Payout", "Succeeded", "-40000", "0", "-40000", "XOF", "", "", "", ""]
                writer.writerow(row)
                continue
            txn, amount, phone, reference = _credit(n)
            balance += amount
            cells = [txn, when, "Merchant payment", "Succeeded", str(amount), "0", str(amount), "XOF", "Payer", phone]
            writer.writerow([*cells, reference, str(balance)])
            if n == DUPLICATED:
                duplicated = [*cells, reference, str(balance)]
            kind = n % 100
            if kind == 1:
                expected[BreakKind.MISSING_IN_SYSTEM] += 1
                continue
            stored_amount = amount + 500 if kind == 3 else amount
            expected[BreakKind.AMOUNT_MISMATCH] += kind == 3
            expected[BreakKind.PROVISIONAL_CONFIRMED] += kind == 2
            payments.append(_payment(txn, stored_amount, phone, reference, _paid_at(n), confirmed=kind != 2))
            if len(payments) >= BATCH:
                _flush(session, payments)
        writer.writerow(duplicated)  # the export repeats a line at its end
    expected[BreakKind.DUPLICATE_LINE] = 1
    for g in range(lines // 100):
        payments.append(_payment(f"T_GHOST{g:06d}", 3500, None, None, _paid_at(g * 100 + 50), confirmed=True))
        expected[BreakKind.MISSING_IN_STATEMENT] += 1
    _flush(session, payments)
    session.commit()
    analyze(session, (Payment,))
    return Scenario(path, lines, expected)


def _payment(
    txn: str, amount: int, phone: str | None, reference: str | None, paid_at: datetime, confirmed: bool
) -> dict[str, object]:
    return {
        "provider": "wave",
        "provider_txn_id": txn,
        "amount": amount,
        "currency": "XOF",
        "payer_phone": phone,
        "account_reference": reference if confirmed else None,
        "paid_at": paid_at,
        "fields_hash": fields_hash(amount, "XOF", reference, phone),
        "status": PaymentStatus.ALLOCATED if confirmed else PaymentStatus.PROVISIONAL,
        "confirmed": confirmed,
    }


def run(url: str, lines: int) -> None:
    """Build the scenario on the database at `url`, import twice (the file read from disk) and print the figures."""
    engine = make_engine(url)
    with tempfile.TemporaryDirectory(prefix="mutuelle-bench-statement-") as tmp:
        with Session(engine, expire_on_commit=False) as session:
            scenario = build(session, lines, Path(tmp) / "bench.csv")
        size = scenario.path.stat().st_size / 2**20
        print(f"scenario built ({size:,.0f} MiB file): peak RSS {peak_rss_mb():.0f} MiB; load average {loadavg()}")
        for attempt in ("import", "reimport"):
            with Session(engine, expire_on_commit=False) as session, scenario.path.open("rb") as handle:
                started = time.perf_counter()
                result = import_statement(session, "wave", "bench.csv", handle)
                session.commit()
                elapsed = time.perf_counter() - started
                if not result.already_imported:
                    analyze(session, MODELS_WRITTEN)  # as the import command does; not in the figure
            found = {kind: result.report.count(kind) for kind in BreakKind}
            if attempt == "import" and found != scenario.expected:
                raise SystemExit(f"unexpected breaks: {found} != {scenario.expected}")
            summary = ", ".join(f"{n} {kind.value}" for kind, n in found.items() if n)
            note = "already imported" if result.already_imported else summary
            print(
                f"{attempt}: {scenario.lines:,} lines in {elapsed:.2f} s = {scenario.lines / elapsed:,.0f} lines/s "
                f"({note}); peak RSS {peak_rss_mb():.0f} MiB; load average {loadavg()}"
            )
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL where its own database is created")
    parser.add_argument("--database-url", help="use this (empty) database instead of creating one")
    parser.add_argument("--sqlite", action="store_true", help="use a temporary SQLite file instead of PostgreSQL")
    args = parser.parse_args(argv)
    if args.sqlite:
        with tempfile.TemporaryDirectory(prefix="mutuelle-bench-") as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            engine = make_engine(url)
            models.Base.metadata.create_all(engine)
            engine.dispose()
            print(f"SQLite, {args.lines:,} lines")
            run(url, args.lines)
    else:
        with own_database(args.admin_url, DATABASE, args.database_url) as (url, _created):
            prepare_schema(url, with_schemes=False)
            print(f"PostgreSQL ({url.rpartition('/')[2]}), {args.lines:,} lines")
            run(url, args.lines)


if __name__ == "__main__":
    main()
