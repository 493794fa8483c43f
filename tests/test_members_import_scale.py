"""`members import` of big files: written as checked, every bad line named wherever it is, bounded memory.

A file whose households are together is written while it is read (chunks handed to a writer thread on PostgreSQL);
a scattered one is read a second time; a large one has its phones parsed by a helper process ahead of the checks.
"""

from __future__ import annotations

import os
import random
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extensions import db
from models.imports import member_file, member_rows, members, phones_ahead
from models.imports.members import import_members
from models.members.household import Account, Household, Member, Network
from tests.members_helpers import cli, load_schemes, write_rows

__all__ = ["cli"]  # the fixture


MEMBERS = (
    ("head", "F", "1980-02-03"),
    ("spouse", "M", "1978-04-05"),
    ("child", "F", "2010-06-07"),
    ("child", "M", "2014-08-09"),
)


def households(count: int) -> list[dict[str, str]]:
    """Return the rows of `count` households of 4 members, each household's rows together."""
    rows = []
    for n in range(count):
        number = f"SN-TN-{n:06d}"
        for k, (relationship, sex, born) in enumerate(MEMBERS, start=1):
            rows.append(
                {
                    "household_no": number,
                    "scheme": "cmu-thies",
                    "commune": "Thies Nord",
                    "network": "Reseau Thies Nord 1",
                    "subsidy_category": "standard",
                    "language": "fr",
                    "head_member_no": f"{number}-01",
                    "member_no": f"{number}-{k:02d}",
                    "last_name": "Ndiaye",
                    "first_name": f"Awa {n}",
                    "sex": sex,
                    "date_of_birth": born,
                    "relationship": relationship,
                    "phone": f"77{n:07d}" if k == 1 else (f"+221 78 {n:07d}" if k == 2 else ""),
                    "joined_on": "2026-10-01",
                    "sms_opt_in": "yes",
                }
            )
    return rows


def scattered(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Return the rows in a shuffled order: each household's rows far apart."""
    rows = list(rows)
    random.Random(29).shuffle(rows)
    return rows


def stored(app: Flask) -> dict[str, int]:
    with app.app_context():
        session = db()
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Household, Member, Network, Account)
        }


@pytest.mark.parametrize("chunk", [7, members.CHUNK_HOUSEHOLDS])
def test_bad_lines_at_the_start_middle_and_end_are_all_named_and_nothing_is_written(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # With chunks of 7 households, those before the middle's bad line were written as checked: undone.
    monkeypatch.setattr(members, "CHUNK_HOUSEHOLDS", chunk)
    rows = households(300)
    rows[0]["sex"] = "X"
    rows[600]["joined_on"] = "2026-13-01"
    rows[-1]["phone"] = "+33 6 12 34 56 78"
    if chunk != members.CHUNK_HOUSEHOLDS:
        rows[0]["sex"] = "F"
    result = cli("members", "import", str(write_rows(tmp_path / "bad.csv", rows)))
    if chunk != members.CHUNK_HOUSEHOLDS:
        assert "line 2, sex" not in result.output
        assert "2 error(s)" in result.output and "nothing imported" in result.output
        assert stored(app) == {"households": 0, "members": 0, "networks": 0, "accounts": 0}
        return
    assert result.exit_code == 1
    assert "line 2, sex: must be F or M, not 'X'" in result.output
    assert "line 602, joined_on: not a date YYYY-MM-DD: '2026-13-01'" in result.output
    assert "line 1201, phone: '+33 6 12 34 56 78': not a SN number" in result.output
    assert "3 error(s)" in result.output and "nothing imported" in result.output
    assert stored(app) == {"households": 0, "members": 0, "networks": 0, "accounts": 0}


def test_errors_past_those_kept_are_counted(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(member_rows, "MAX_KEPT_ERRORS", 5)
    rows = households(20)
    for row in rows:
        row["sex"] = "?"
    result = cli("members", "import", str(write_rows(tmp_path / "bad.csv", rows)))
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if ", sex: " in line] == [
        f"line {n}, sex: must be F or M, not '?'" for n in range(2, 7)
    ]
    assert "… and 75 more error(s), not listed" in result.output
    assert "80 error(s)" in result.output
    assert stored(app)["members"] == 0


def test_a_scattered_file_imports_as_the_same_file_in_order(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(member_file, "BUCKET_ROWS", 100)  # several bucket files
    rows = households(120)
    result = cli("members", "import", str(write_rows(tmp_path / "scattered.csv", scattered(rows))))
    assert result.exit_code == 0, result.output
    assert "480 created, 0 updated, 0 unchanged" in result.stdout
    assert "480 of 480 lines checked" in result.stderr  # the progress lines
    assert "120 of 120 households written" in result.stderr
    assert stored(app) == {"households": 120, "members": 480, "networks": 1, "accounts": 121}
    with app.app_context():
        phones = dict(db().execute(select(Member.member_no, Member.phone)).tuples().all())
        heads = dict(db().execute(select(Household.household_no, Household.head_member_no)).tuples().all())
    assert phones["SN-TN-000077-01"] == "+221770000077"
    assert phones["SN-TN-000077-02"] == "+221780000077"
    assert phones["SN-TN-000077-03"] is None
    assert heads["SN-TN-000077"] == "SN-TN-000077-01"
    # The same households in order: nothing changes; one member changed in the scattered file: one update.
    result = cli("members", "import", str(write_rows(tmp_path / "ordered.csv", rows)))
    assert "0 created, 0 updated, 480 unchanged" in result.stdout, result.output
    rows[5]["first_name"] = "Khady"
    result = cli("members", "import", str(write_rows(tmp_path / "changed.csv", scattered(rows))))
    assert "0 created, 1 updated, 479 unchanged" in result.stdout, result.output
    assert "households: 0 created, 0 updated, 120 unchanged" in result.stdout


@pytest.mark.parametrize("recent", [2, member_file.RECENT_HOUSEHOLDS])
def test_a_duplicate_or_a_differing_line_far_from_its_household_names_the_first_line(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recent: int
) -> None:
    # With 2 recent households, the first lines are found by reading the file again: the same errors.
    monkeypatch.setattr(member_file, "RECENT_HOUSEHOLDS", recent)
    load_schemes(session)
    rows = households(10)
    rows.append(dict(rows[1]))  # SN-TN-000000-02 again, line 42
    rows.append(dict(rows[4], member_no="SN-TN-000001-05", commune="Pekesse", language="wo"))  # line 43
    report = import_members(session, write_rows(tmp_path / "late.csv", rows))
    assert [str(error) for error in report.errors] == [
        "line 42, member_no: duplicate of line 3",
        "line 43, commune: differs from line 6 of household SN-TN-000001",
        "line 43, language: differs from line 6 of household SN-TN-000001",
    ]
    session.commit()
    assert session.scalar(select(func.count()).select_from(Member)) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_memory_does_not_grow_with_the_file(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    peaks = {}
    for count in (2_500, 10_000):
        path = write_rows(tmp_path / f"{count}.csv", households(count))
        tracemalloc.start()
        try:
            report = import_members(session, path, dry_run=True)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        session.rollback()
        assert report.ok and report.members_created == 4 * count, report.errors[:3]
    # Holding the file would take 4 times the memory for 4 times the households; the import holds one chunk.
    assert peaks[10_000] < 2 * peaks[2_500], peaks


def test_a_grouped_file_is_written_as_it_is_checked_and_read_once(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members, "CHUNK_HOUSEHOLDS", 7)

    def second_reading(*args: object) -> None:
        raise AssertionError("a grouped file is read once")

    monkeypatch.setattr(members, "households_of", second_reading)
    result = cli("members", "import", str(write_rows(tmp_path / "grouped.csv", households(30))))
    assert result.exit_code == 0, result.output
    assert "120 created, 0 updated, 0 unchanged" in result.stdout
    assert "30 of 30 households written" in result.stderr
    assert stored(app) == {"households": 30, "members": 120, "networks": 1, "accounts": 31}


def test_a_household_seen_again_late_undoes_what_was_written_and_reads_the_file_again(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members, "CHUNK_HOUSEHOLDS", 7)
    rows = households(30)
    rows.append(rows.pop(5))  # a member of the second household, at the end
    result = cli("members", "import", str(write_rows(tmp_path / "late.csv", rows)))
    assert result.exit_code == 0, result.output
    # The progress says what was undone: what the writer had written when the household showed up again (on
    # SQLite, the 4 chunks before; on PostgreSQL's thread, those it had reached), then the second writing.
    said = re.findall(r"^(\d+)(?: of \d+)? households (written|undone)", result.stderr, re.M)
    if ("28", "undone") not in said:
        undone = [i for i, (_, what) in enumerate(said) if what == "undone"]
        assert not undone or said[undone[0] - 1][0] == said[undone[0]][0], said
    assert said[-1] == ("30", "written") and result.stderr.count("30 of 30 households written") == 1
    assert "120 created, 0 updated, 0 unchanged" in result.stdout
    assert "households: 30 created, 0 updated, 0 unchanged; networks: 1 created; accounts: 31 created" in result.stdout
    assert stored(app) == {"households": 30, "members": 120, "networks": 1, "accounts": 31}


def test_a_database_failure_while_writing_is_raised_and_nothing_is_kept(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_schemes(session)
    monkeypatch.setattr(members, "CHUNK_HOUSEHOLDS", 7)
    calls = []
    sync_chunk = members._Writer.sync_chunk

    def failing(writer: members._Writer, chunk: list[member_rows.HouseholdRow]) -> None:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        sync_chunk(writer, chunk)

    monkeypatch.setattr(members._Writer, "sync_chunk", failing)
    with pytest.raises(RuntimeError, match="went away"):
        import_members(session, write_rows(tmp_path / "m.csv", households(30)))
    session.commit()  # what the first chunk wrote was undone with the import's savepoint
    assert session.scalar(select(func.count()).select_from(Member)) == 0
    assert session.scalar(select(func.count()).select_from(Network)) == 0


def test_a_network_contact_given_by_a_later_household_is_set(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    rows = [dict(row, network_phone="") for row in households(20)]
    for row in rows[-4:]:  # the last household, in another chunk than the first naming the network
        row["network_phone"] = "77 555 00 00"
    report = import_members(session, write_rows(tmp_path / "m.csv", rows))
    assert report.ok, report.errors
    assert session.scalar(select(Network.contact_phone)) == "+221775550000"


def test_a_large_file_has_its_phones_parsed_by_a_helper_process(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_schemes(session)
    monkeypatch.setattr(phones_ahead, "HELPER_BYTES", 0)
    monkeypatch.setattr(phones_ahead, "BATCH_ROWS", 16)

    def in_line(*args: object, **kwargs: object) -> str:
        raise AssertionError("parsed by the importing process")

    monkeypatch.setattr(member_rows, "normalise_phone", in_line)
    rows = households(40)
    rows[121]["phone"] = "+33 6 12 34 56 78"  # line 123
    report = import_members(session, write_rows(tmp_path / "bad.csv", rows))
    assert [str(error) for error in report.errors] == ["line 123, phone: '+33 6 12 34 56 78': not a SN number (+33)"]
    session.rollback()
    rows[121]["phone"] = ""
    report = import_members(session, write_rows(tmp_path / "good.csv", rows))
    assert report.ok and report.members_created == 160, report.errors
    phones = dict(session.execute(select(Member.member_no, Member.phone)).tuples().all())
    assert phones["SN-TN-000033-01"] == "+221770000033"
    assert phones["SN-TN-000033-02"] == "+221780000033"


def test_a_line_that_cannot_be_read_is_named_after_the_lines_before_it_are_checked(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_schemes(session)
    monkeypatch.setattr(phones_ahead, "BATCH_ROWS", 16)
    rows = households(20)
    rows[49]["last_name"] = "N" * 200_000  # line 51: past the csv module's field limit
    with pytest.raises(member_rows.ImportFileError, match=r"^line 51: not a UTF-8 CSV line: field larger"):
        import_members(session, write_rows(tmp_path / "m.csv", rows))


def helper_dies(pairs: list[tuple[str, str]]) -> None:
    """What a helper killed mid-batch (out of memory) looks like to the import: run in the helper process."""
    os._exit(9)


def test_a_helper_that_dies_is_given_up_and_the_phones_parsed_in_line(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_schemes(session)
    monkeypatch.setattr(phones_ahead, "HELPER_BYTES", 0)
    monkeypatch.setattr(phones_ahead, "BATCH_ROWS", 16)
    monkeypatch.setattr(phones_ahead, "normalise_many", helper_dies)
    report = import_members(session, write_rows(tmp_path / "m.csv", households(20)))
    assert report.ok and report.members_created == 80, report.errors
    phones = dict(session.execute(select(Member.member_no, Member.phone)).tuples().all())
    assert phones["SN-TN-000013-01"] == "+221770000013"
