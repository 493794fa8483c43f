"""Benchmark `members import`: N households of 4 members into a fresh PostgreSQL database.

    .venv/bin/python bench/import.py [--households 100000] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                     [--database-url postgresql://…/an_empty_database]

It creates its own database (dropped at the end) unless given `--database-url`.

Prints rows/s, elapsed seconds and the process's peak RSS, for the first import and a re-import.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import models  # noqa: E402
from bench.common import ADMIN_URL, own_database, prepare_schema  # noqa: E402
from models.bulk import analyze  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.imports.members import MODELS_WRITTEN, REQUIRED_COLUMNS, ImportReport, import_members  # noqa: E402

DATABASE = "mutuelle_bench_import"  # the prefix of its own database's name
COMMUNES = {"TN": ("Thies Nord", "Reseau Thies Nord"), "PK": ("Pekesse", "Reseau Pekesse"), "MR": ("Mont Rolland", "")}
FIRST_NAMES = {
    "F": ["Aminata", "Fatou", "Awa", "Mariama", "Khady", "Ndeye"],
    "M": ["Ousmane", "Mamadou", "Modou", "Ibrahima"],
}
LAST_NAMES = ["Ndiaye", "Sarr", "Faye", "Diop", "Fall", "Sow", "Ba", "Gueye", "Diouf", "Mbaye"]


def generate_rows(households: int, seed: int = 1) -> Iterator[list[str]]:
    """Yield CSV rows (without header) for `households` households of 4 members each."""
    rng = random.Random(seed)
    prefixes = list(COMMUNES)
    for n in range(households):
        code = prefixes[n % len(prefixes)]
        commune, network = COMMUNES[code]
        household_no = f"SN-{code}-{n:06d}"
        head = f"{household_no}-01"
        subsidy = rng.choices(["standard", "bsf", "cec"], weights=[8, 1, 1])[0]
        language = rng.choice(["fr", "wo"])
        last_name = rng.choice(LAST_NAMES)
        for k, (relationship, sex, year) in enumerate(
            [("head", "F", 1970), ("spouse", "M", 1968), ("child", "F", 2008), ("child", "M", 2012)], start=1
        ):
            number = 70_000_000 + n * 4 + k
            # Heads and spouses have phones, written the ways enrolment agents type them.
            phone = ["77{:07d}", "+221 78 {:07d}", "0022176{:07d}"][n % 3].format(number % 10_000_000) if k <= 2 else ""
            yield [
                household_no,
                "cmu-thies",
                commune,
                network,
                subsidy,
                language,
                head,
                f"{household_no}-{k:02d}",
                last_name,
                rng.choice(FIRST_NAMES[sex]),
                sex,
                f"{year + rng.randrange(10)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                relationship,
                phone,
                "2026-10-01",
                "yes",
            ]


def write_csv(path: Path, households: int) -> int:
    """Write the generated export to `path` and return its number of data rows."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED_COLUMNS)
        for row in generate_rows(households):
            writer.writerow(row)
            rows += 1
    return rows


def timed_import(url: str, path: Path) -> tuple[ImportReport, float, float]:
    """Import the file in one session, commit, analyse as `members import` does; return the report and both times."""
    engine = make_engine(url)
    started = time.perf_counter()
    with Session(engine) as session:
        report = import_members(session, path)
        if not report.ok:
            raise SystemExit("\n".join(map(str, report.errors[:20])))
        session.commit()
        elapsed = time.perf_counter() - started
        analyze(session, MODELS_WRITTEN)
    analysed = time.perf_counter() - started - elapsed
    engine.dispose()
    return report, elapsed, analysed


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL where its own database is created")
    parser.add_argument("--database-url", help="use this (empty) database instead of creating one")
    args = parser.parse_args(argv)
    with own_database(args.admin_url, DATABASE, args.database_url) as (url, _created):
        prepare_schema(url)
        run(url, args.households)


def run(url: str, households: int) -> None:
    """Import `households` households twice into the database at `url` and print the figures."""
    with tempfile.TemporaryDirectory(prefix="mutuelle-bench-") as tmp:
        path = Path(tmp) / "members.csv"
        started = time.perf_counter()
        rows = write_csv(path, households)
        print(f"generated {rows:,} rows ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")

        report, elapsed, analysed = timed_import(url, path)
        print(
            f"import:   {households:,} households, {rows:,} members in {elapsed:.1f} s "
            f"= {rows / elapsed:,.0f} rows/s ({report.summary()}); peak RSS {peak_rss_mb():.0f} MiB; "
            f"ANALYZE {analysed:.1f} s"
        )
        report, elapsed, analysed = timed_import(url, path)
        print(
            f"reimport: {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s "
            f"({report.summary()}); peak RSS {peak_rss_mb():.0f} MiB; ANALYZE {analysed:.1f} s"
        )
    engine = make_engine(url)
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(models.Member))
        accounts = session.scalar(select(func.count()).select_from(models.Account))
    engine.dispose()
    print(f"stored: {stored:,} members, {accounts:,} accounts in {url.rpartition('/')[2]}")


if __name__ == "__main__":
    main()
