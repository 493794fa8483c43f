"""Statement import at scale: two passes over the file, bad lines named wherever they are, memory not growing."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

import models
from models.db import make_engine
from models.imports.statements import MAX_REPORTED_ERRORS, import_statement
from tests.statement_helpers import HEADER, counts, import_cli, write

GOOD = "T_{n},2026-11-20T10:00:00Z,100,XOF,,,credit"


def _lines(total: int, bad: dict[int, str]) -> str:
    """Return a statement of `total` lines, line `n` (the file's line n + 1) replaced by `bad[n]`."""
    rows = [bad.get(n, GOOD.format(n=n)) for n in range(1, total + 1)]
    return "\n".join([HEADER, *rows]) + "\n"


def test_bad_lines_at_the_start_middle_and_end_are_all_named_and_nothing_is_written(
    app: Flask, session: Session, tmp_path: Path
) -> None:
    bad = {
        1: "T_1,2026-11-20T10:00:00Z,abc,XOF,,,credit",
        3_000: "T_3000,20 nov,100,XOF,,,credit",
        5_999: "T_5999,2026-11-20T10:00:00Z,100,XOF",
        6_000: ",2026-11-20T10:00:00Z,100,XOF,,,credit",
    }
    path = write(tmp_path, _lines(6_000, bad))  # more lines than a batch: the last ones in pass 1's last stretch

    result = import_cli(app, path)

    assert result.exit_code == 1, result.output
    assert "nothing imported" in result.output
    assert "line 2: 'amount'" in result.output
    assert "line 3001: 'date': '20 nov' is not a date" in result.output
    assert "line 6000: 4 fields, the header has 7" in result.output
    assert "line 6001: 'transaction_id' is empty" in result.output
    assert counts(session) == (0, 0, 0, 0, 0)


def test_the_cli_prints_both_passes_and_the_first_errors_only(app: Flask, session: Session, tmp_path: Path) -> None:
    good = write(tmp_path, _lines(30, {}), "good.csv")
    result = import_cli(app, good)
    assert result.exit_code == 0, result.output
    assert "30 of 30 good.csv: lines checked (pass 1 of 2)" in result.output
    assert "30 of 30 good.csv: lines written (pass 2 of 2)" in result.output

    bad = {n: f"T_{n},2026-11-20T10:00:00Z,x,XOF,,,credit" for n in range(1, 41)}
    result = import_cli(app, write(tmp_path, _lines(50, bad), "bad.csv"))
    assert result.exit_code == 1
    named = [n for n in range(2, 42) if f"line {n}: 'amount'" in result.output]
    assert named == list(range(2, 2 + MAX_REPORTED_ERRORS))
    # Every line was checked all the same: the others are counted.
    assert f"… and {40 - MAX_REPORTED_ERRORS} more bad lines" in result.output


def _import_peak(tmp_path: Path, lines: int) -> int:
    """Return the traced peak of importing the bench's `lines`-line statement, its scenario stored beforehand."""
    from bench.statement import build

    url = f"sqlite:///{tmp_path}/peak_{lines}.db"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    try:
        with Session(engine, expire_on_commit=False) as session:
            scenario = build(session, lines, tmp_path / f"peak_{lines}.csv")
        with Session(engine, expire_on_commit=False) as session, scenario.path.open("rb") as handle:
            tracemalloc.start()
            try:
                result = import_statement(session, "wave", "peak.csv", handle)
                session.commit()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert result.report.line_count == lines
    finally:
        engine.dispose()
    return peak


@pytest.mark.slow
def test_a_statement_four_times_longer_does_not_take_twice_the_memory(tmp_path: Path) -> None:
    small = _import_peak(tmp_path, 12_500)
    large = _import_peak(tmp_path, 50_000)

    assert large < 2 * small, f"peak {large / 2**20:.1f} MiB at 50,000 lines, {small / 2**20:.1f} MiB at 12,500"
