"""`members import`: the enrolment export lands whole or not at all, and a re-import changes nothing."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from extensions import db
from models.access.tokens import issue_token
from models.base import EligibilityStatus, HouseholdStatus, Language, MemberStatus, utcnow
from models.bulk import refresh_statistics
from models.coverage.eligibility import household_eligibility
from models.coverage.ledger import account_entries, get_or_create_account
from models.coverage.periods import live_periods
from models.db import get_engine
from models.imports import members as members_module
from models.imports.members import MODELS_WRITTEN, ImportFileError, import_members, slugify
from models.members.household import Account, Household, Member, Network
from tests.conftest import make_test_app
from tests.members_helpers import SAMPLE, cli, load_schemes, rows_of, write_rows

__all__ = ["cli"]  # the fixture


def counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        session = db()
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Household, Member, Network, Account)
        }


def test_sample_export_imports(app: Flask, cli: Callable[..., Result]) -> None:
    result = cli("members", "import", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert "5 created, 0 updated, 0 unchanged" in result.stdout
    assert "households: 3 created" in result.stdout and "networks: 3 created" in result.stdout
    assert counts(app) == {"households": 3, "members": 5, "networks": 3, "accounts": 6}
    with app.app_context():
        session = db()
        phones = dict(session.execute(select(Member.member_no, Member.phone)).tuples().all())
        assert phones == {
            "SN-TN-000123-01": "+221771234567",
            "SN-TN-000123-02": None,
            "SN-TN-000123-03": None,
            "SN-PK-000045-01": "+221781112233",
            "SN-MR-000007-01": "+221761234500",
        }
        tn = session.scalars(select(Household).where(Household.household_no == "SN-TN-000123")).one()
        assert (tn.plan, tn.subsidy_category, tn.language, tn.sms_opt_in) == ("yearly", "standard", Language.FR, True)
        assert tn.head is not None and tn.head.first_name == "Aminata"
        assert tn.enrolled_on == date(2026, 10, 1) and tn.status is HouseholdStatus.ACTIVE
        assert tn.network is not None and tn.network.code == "reseau-thies-nord-1"
        assert tn.network.commune == "Thies Nord"
        assert [m.status for m in tn.members] == [MemberStatus.ACTIVE] * 3
        mr = session.scalars(select(Household).where(Household.household_no == "SN-MR-000007")).one()
        assert (mr.subsidy_category, mr.sms_opt_in) == ("cec", False)
        pk = session.scalars(select(Household).where(Household.household_no == "SN-PK-000045")).one()
        assert pk.language is Language.WO
        owners = session.execute(select(Account.household_id, Account.network_id, Account.currency)).all()
        assert sorted(h for h, _, _ in owners if h) == sorted(h.id for h in session.scalars(select(Household)))
        assert {c for _, _, c in owners} == {"XOF"}


def test_reimport_changes_nothing(app: Flask, cli: Callable[..., Result]) -> None:
    assert cli("members", "import", str(SAMPLE)).exit_code == 0
    with app.app_context():
        stamps = dict(db().execute(select(Member.member_no, Member.updated_at)).tuples().all())
    result = cli("members", "import", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert "0 created, 0 updated, 5 unchanged" in result.stdout
    assert "households: 0 created, 0 updated, 3 unchanged; networks: 0 created; accounts: 0 created" in result.stdout
    assert counts(app) == {"households": 3, "members": 5, "networks": 3, "accounts": 6}
    with app.app_context():
        assert dict(db().execute(select(Member.member_no, Member.updated_at)).tuples().all()) == stamps


def test_an_import_on_postgresql_leaves_the_planner_statistics_of_what_it_wrote(pg_url: str, redis_url: str) -> None:
    # Straight after a load without them, the USSD answered 28 req/s (p99 4.4 s) at national scale; 1,495 after.
    app = make_test_app(pg_url, redis_url)
    with app.app_context():
        load_schemes(db())
    with get_engine(pg_url).connect() as conn:
        before = conn.scalar(text("SELECT now()"))
    result = app.test_cli_runner().invoke(args=["members", "import", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    written = [model.__tablename__ for model in MODELS_WRITTEN]
    with get_engine(pg_url).connect() as conn:
        stats = {
            name: (int(tuples), analysed)
            for name, tuples, analysed in conn.execute(
                text(
                    "SELECT c.relname, c.reltuples, s.last_analyze FROM pg_class c"
                    " JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = ANY(:names)"
                ),
                {"names": written},
            )
        }
    assert sorted(stats) == sorted(written)
    assert all(analysed is not None and analysed >= before for _tuples, analysed in stats.values()), stats
    # The planner counts what is there (a table truncated and never analysed says -1).
    assert {name: stats[name][0] for name in ("households", "members", "networks", "accounts")} == counts(app)


def test_a_large_import_refreshes_the_statistics_of_its_own_rows_as_it_goes(
    pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Chunks of one household: after chunks 2 and 4 the planner counts the rows the open transaction wrote.
    monkeypatch.setattr(members_module, "CHUNK_HOUSEHOLDS", 1)
    app = make_test_app(pg_url, redis_url)
    with app.app_context():
        load_schemes(db())
    seen: list[float] = []

    def counting(session: Session, models: object) -> None:
        refresh_statistics(session, models)  # type: ignore[arg-type]
        seen.append(float(session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'members'")) or 0))

    monkeypatch.setattr(members_module, "refresh_statistics", counting)
    with app.app_context():
        report = import_members(db(), SAMPLE)
        assert report.ok, report.errors
        db().commit()
    # The sample: three households of 3, 1 and 1 members; statistics refreshed after chunk 2 (4 members written).
    assert seen == [4.0]
    assert counts(app) == {"households": 3, "members": 5, "networks": 3, "accounts": 6}


def test_changed_rows_update(app: Flask, cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("members", "import", str(SAMPLE)).exit_code == 0
    rows = rows_of(SAMPLE)
    rows[1]["first_name"] = "Ousmane Mbaye"
    rows[1]["phone"] = "77 765 43 21"
    for row in rows[:3]:  # the whole household moves to the half-yearly plan and to the family grant
        row["subsidy_category"] = "bsf"
    changed = write_rows(tmp_path / "changed.csv", rows)
    result = cli("members", "import", str(changed))
    assert result.exit_code == 0, result.output
    assert "0 created, 1 updated, 4 unchanged" in result.stdout
    assert "households: 0 created, 1 updated, 2 unchanged" in result.stdout
    with app.app_context():
        member = db().scalars(select(Member).where(Member.member_no == "SN-TN-000123-02")).one()
        assert (member.first_name, member.phone) == ("Ousmane Mbaye", "+221777654321")
        assert member.household.subsidy_category == "bsf"


def test_new_member_in_existing_household(app: Flask, cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("members", "import", str(SAMPLE)).exit_code == 0
    rows = rows_of(SAMPLE)
    rows.insert(3, dict(rows[2], member_no="SN-TN-000123-04", first_name="Moussa", sex="M", date_of_birth=""))
    result = cli("members", "import", str(write_rows(tmp_path / "more.csv", rows)))
    assert result.exit_code == 0, result.output
    assert "1 created, 0 updated, 5 unchanged" in result.stdout
    assert counts(app)["members"] == 6


BROKEN = [
    # (row index in the sample, column, bad value, reason shown)
    (0, "phone", "12345", "not a valid phone number for SN"),
    (1, "sex", "X", "must be F or M"),
    (2, "date_of_birth", "05/01/2015", "not a date YYYY-MM-DD"),
    (3, "subsidy_category", "gold", "'gold' is not a category of cmu-thies"),
    (4, "language", "km", "'km' is not a language of cmu-thies"),
]


def test_broken_copy_names_every_line_and_writes_nothing(
    app: Flask, cli: Callable[..., Result], tmp_path: Path
) -> None:
    rows = rows_of(SAMPLE)
    for index, column, value, _ in BROKEN:
        rows[index][column] = value
    result = cli("members", "import", str(write_rows(tmp_path / "broken.csv", rows)))
    assert result.exit_code == 1
    for index, column, _, reason in BROKEN:
        line = index + 2  # the header is line 1
        assert f"line {line}, {column}: " in result.output
        assert reason in result.output
    assert "5 error(s)" in result.output and "nothing imported" in result.output
    assert counts(app) == {"households": 0, "members": 0, "networks": 0, "accounts": 0}


@pytest.mark.parametrize(
    ("mutate", "line", "column", "reason"),
    [
        (lambda rows: rows[1].update(commune="Pekesse"), 3, "commune", "differs from line 2"),
        (lambda rows: rows[2].update(language="wo"), 4, "language", "differs from line 2"),
        (lambda rows: rows[2].update(member_no="SN-TN-000123-01"), 4, "member_no", "duplicate of line 2"),
        (lambda rows: rows[2].update(member_no="SN-TN-000123-3"), 4, "member_no", "followed by -NN"),
        (lambda rows: rows[2].update(member_no="SN-PK-000045-03"), 4, "member_no", "followed by -NN"),
        (
            lambda rows: rows[4].update(head_member_no="SN-MR-000007-02"),
            6,
            "head_member_no",
            "SN-MR-000007-02 is not a member of household SN-MR-000007",
        ),
        (lambda rows: rows[4].update(scheme="cmu-dakar"), 6, "scheme", "unknown scheme 'cmu-dakar'"),
        (lambda rows: rows[4].update(joined_on="2026-11-31"), 6, "joined_on", "not a date"),
        (lambda rows: rows[4].update(joined_on="1989-01-01"), 6, "joined_on", "before the date of birth"),
        (lambda rows: rows[4].update(sms_opt_in="maybe"), 6, "sms_opt_in", "must be yes or no"),
        (lambda rows: rows[4].update(last_name=""), 6, "last_name", "required"),
        (lambda rows: rows[4].update(phone="+33 6 12 34 56 78"), 6, "phone", "not a SN number"),
        (lambda rows: [r.update(plan="weekly" if "TN" in r["household_no"] else "") for r in rows], 2, "plan", "not"),
        (lambda rows: [r.update(status="") for r in rows] and rows[0].update(status="gone"), 2, "status", "left"),
    ],
)
def test_invalid_rows_are_reported(
    session: Session,
    tmp_path: Path,
    mutate: Callable[[list[dict[str, str]]], object],
    line: int,
    column: str,
    reason: str,
) -> None:
    load_schemes(session)
    rows = rows_of(SAMPLE)
    mutate(rows)
    report = import_members(session, write_rows(tmp_path / "bad.csv", rows))
    assert not report.ok
    assert [(e.line, e.column) for e in report.errors] == [(line, column)], report.errors
    assert reason in report.errors[0].reason
    session.commit()
    assert session.scalar(select(func.count()).select_from(Member)) == 0
    assert session.scalar(select(func.count()).select_from(Network)) == 0


def test_header_problems_are_line_one(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    path = tmp_path / "bad.csv"
    path.write_text(SAMPLE.read_text().replace("sex,", "gender,", 1).replace("phone,", "", 1))
    report = import_members(session, path)
    assert {(e.line, e.column, e.reason) for e in report.errors} == {
        (1, "sex", "missing column"),
        (1, "phone", "missing column"),
        (1, "gender", "unknown column"),
    }


def test_ragged_row_is_reported(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    path = tmp_path / "bad.csv"
    lines = SAMPLE.read_text().splitlines()
    lines[2] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    report = import_members(session, path)
    assert [(e.line, e.column) for e in report.errors] == [(3, "(row)")]


def test_dry_run_writes_nothing(app: Flask, cli: Callable[..., Result]) -> None:
    result = cli("members", "import", str(SAMPLE), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run, nothing written: 5 created, 0 updated, 0 unchanged" in result.stdout
    assert "networks: 3 created" in result.stdout
    assert counts(app) == {"households": 0, "members": 0, "networks": 0, "accounts": 0}


def test_status_column_marks_members_left_or_deceased(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    assert import_members(session, SAMPLE, today=date(2026, 12, 1)).ok
    session.commit()
    rows = rows_of(SAMPLE)
    for row, status in zip(rows, ["active", "left", "Deceased", "", "active"], strict=True):
        row["status"] = status
    report = import_members(session, write_rows(tmp_path / "status.csv", rows), today=date(2027, 1, 15))
    assert report.ok, report.errors
    assert (report.members_created, report.members_updated, report.members_unchanged) == (0, 2, 3)
    session.commit()
    got = {m.member_no: (m.status, m.left_on) for m in session.scalars(select(Member))}
    assert got["SN-TN-000123-01"] == (MemberStatus.ACTIVE, None)
    assert got["SN-TN-000123-02"] == (MemberStatus.LEFT, date(2027, 1, 15))
    assert got["SN-TN-000123-03"] == (MemberStatus.DECEASED, date(2027, 1, 15))
    # Back to active (a data-entry mistake undone) clears the leaving date.
    rows[1]["status"] = "active"
    report = import_members(session, write_rows(tmp_path / "status.csv", rows), today=date(2027, 2, 1))
    assert (report.members_updated, report.members_unchanged) == (1, 4)
    session.commit()
    member = session.scalars(select(Member).where(Member.member_no == "SN-TN-000123-02")).one()
    assert (member.status, member.left_on) == (MemberStatus.ACTIVE, None)


def test_plan_column_and_scheme_option(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    rows = rows_of(SAMPLE)
    for row in rows:
        row["scheme"] = ""
        row["plan"] = "half-yearly" if row["household_no"] == "SN-PK-000045" else ""
    path = write_rows(tmp_path / "plans.csv", rows)
    report = import_members(session, path)
    assert {(e.column, e.reason) for e in report.errors} == {("scheme", "required")}
    report = import_members(session, path, scheme_code="cmu-thies")
    assert report.ok, report.errors
    session.commit()
    plans = dict(session.execute(select(Household.household_no, Household.plan)).tuples().all())
    assert plans == {"SN-TN-000123": "yearly", "SN-PK-000045": "half-yearly", "SN-MR-000007": "yearly"}
    with pytest.raises(ImportFileError, match="unknown scheme"):
        import_members(session, path, scheme_code="nowhere")


def test_scheme_option_refuses_rows_of_another_scheme(session: Session) -> None:
    load_schemes(session)
    report = import_members(session, SAMPLE, scheme_code="sky-cambodia")
    assert [(e.line, e.column) for e in report.errors] == [(2, "scheme"), (5, "scheme"), (6, "scheme")]


def test_household_of_another_scheme_rolls_everything_back(session: Session) -> None:
    load_schemes(session)
    assert import_members(session, SAMPLE).ok
    session.commit()
    text = SAMPLE.read_text().replace("cmu-thies", "sky-cambodia").replace(",fr,", ",en,").replace(",wo,", ",km,")
    text = text.replace("Reseau", "Network").replace(",bsf,", ",idpoor,").replace(",cec,", ",idpoor,")
    for phone in ("771234567", "+221 78 111 22 33", "00221761234500"):
        text = text.replace(phone, "")
    report = import_members(session, io.StringIO(text))
    assert [(e.line, e.column) for e in report.errors] == [
        (2, "household_no"),
        (5, "household_no"),
        (6, "household_no"),
    ]
    assert "belongs to another scheme" in report.errors[0].reason
    assert report.summary() == "0 created, 0 updated, 0 unchanged"
    session.commit()
    assert session.scalar(select(func.count()).select_from(Network)) == 3  # the sky networks were rolled back
    assert session.scalar(select(func.count()).select_from(Account)) == 6


def test_slugify() -> None:
    assert slugify("Réseau Thiès Nord 1") == "reseau-thies-nord-1"
    assert slugify("  Mont--Rolland ") == "mont-rolland"


def test_fully_subsidised_households_enrolled_last_year_are_covered_the_minute_they_are_imported(
    app: Flask, cli: Callable[..., Result], tmp_path: Path
) -> None:
    """Issue 19: `bsf`/`cec` households are funded from enrolment; the facility reads them covered at once."""
    rows = rows_of(SAMPLE)
    for row in rows:
        if row["subsidy_category"] in {"bsf", "cec"}:
            row["joined_on"] = "2025-03-15"
    result = cli("members", "import", str(write_rows(tmp_path / "last-year.csv", rows)))
    assert result.exit_code == 0, result.output
    assert "funder-paid periods booked from enrolment: 2" in result.stdout
    with app.app_context():
        session = db()
        _, token = issue_token(session, name="poste-pk", facility="Poste de sante Pekesse", now=utcnow())
        session.commit()
        household = session.scalars(select(Household)).first()
        assert household is not None
        today = household.scheme.local_today()
    client = app.test_client()
    for member_no in ("SN-PK-000045-01", "SN-MR-000007-01"):
        response = client.get(f"/api/eligibility/{member_no}", headers={"Authorization": f"Bearer {token}"})
        body = response.get_json()
        assert (response.status_code, body["covered"], body["status"], body["amount_due"]) == (200, True, "ACTIVE", 0)
        # Yearly periods from 2025-03-15: the one holding today ends on the next 14 March.
        until = date(today.year if today < date(today.year, 3, 15) else today.year + 1, 3, 14)
        assert (body["valid_until"], body["next_payment_amount"]) == (until.isoformat(), 0)
    # The standard household has paid nothing: it owes its fee and first period, today.
    response = client.get("/api/eligibility/SN-TN-000123-01", headers={"Authorization": f"Bearer {token}"})
    body = response.get_json()
    assert (body["status"], body["amount_due"], body["next_payment_due"]) == ("PENDING", 11_500, today.isoformat())
    # Importing again books nothing more.
    again = cli("members", "import", str(tmp_path / "last-year.csv"))
    assert "funder-paid periods booked from enrolment: 0" in again.stdout
    shown = cli("members", "show", "SN-PK-000045-01")
    assert f"Covered until {until.strftime('%d/%m/%Y')}." in shown.stdout


def test_paid_until_books_prior_cover_with_the_fee_paid_and_no_waiting(
    app: Flask, cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A scheme moving here keeps what members already paid: cover until `paid_until`, an adjustment with its source."""
    rows = rows_of(SAMPLE)
    for row in rows:
        row["paid_until"] = "2027-06-30" if row["household_no"] == "SN-TN-000123" else ""
    path = write_rows(tmp_path / "migration.csv", rows)
    result = cli("members", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "prior cover booked (paid_until): 1" in result.stdout
    with app.app_context():
        session = db()
        household = session.scalars(select(Household).where(Household.household_no == "SN-TN-000123")).one()
        periods = live_periods(session, household.id)
        assert [(p.start_on, p.end_on, p.waiting_until, p.household_share, p.subsidy_amount) for p in periods] == [
            (date(2026, 10, 1), date(2027, 6, 30), None, 10_500, 10_500)
        ]
        entries = account_entries(session, get_or_create_account(session, household=household).id)
        assert sorted((e.kind.value, e.amount) for e in entries) == [
            ("adjustment", 1_000),
            ("adjustment", 10_500),
            ("charge", -21_000),
            ("fee", -1_000),
            ("subsidy", 10_500),
        ]
        assert all(e.note == "prior cover until 2027-06-30 (members import migration.csv)" for e in entries)
        answer = household_eligibility(session, household, date(2026, 12, 7))
        assert (answer.status, answer.covered, answer.amount_due) == (EligibilityStatus.ACTIVE, True, 0)
        assert (answer.next_payment_amount, answer.next_payment_due) == (10_500, date(2027, 6, 30))
    again = cli("members", "import", str(path))
    assert "prior cover booked (paid_until): 0" in again.stdout


def test_paid_until_before_joining_is_refused(session: Session, tmp_path: Path) -> None:
    load_schemes(session)
    rows = rows_of(SAMPLE)
    rows[0]["paid_until"] = "2026-09-30"
    for row in rows[1:]:
        row["paid_until"] = ""
    report = import_members(session, write_rows(tmp_path / "bad.csv", rows))
    assert [str(e) for e in report.errors] == ["line 2, paid_until: is before joined_on"]
