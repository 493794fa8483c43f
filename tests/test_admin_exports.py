"""The CSV exports through the admin's HTTP contract: the documented columns, the rules' answers, the filters, the
format a spreadsheet opens (UTF-8 with a BOM), and streaming whatever the size."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import HouseholdStatus, Language, MemberStatus, Sex, StaffRole, today_utc
from models.coverage.eligibility import household_eligibility, member_eligibility
from models.members.household import Household, Member
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme import Scheme
from models.views.exports import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS, PAYMENT_COLUMNS, PERIOD_COLUMNS
from models.views.renewals import RENEWAL_COLUMNS
from tests import factories
from tests.admin_helpers import PASSWORDS, admin_app, db_session, seeded_url, signed_in, text_of

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

DOCS = Path(__file__).resolve().parent.parent / "docs" / "exports.md"
BOM = b"\xef\xbb\xbf"
EXPORTS = {
    "/admin/exports/households.csv": HOUSEHOLD_COLUMNS,
    "/admin/exports/members.csv": MEMBER_COLUMNS,
    "/admin/exports/coverage-periods.csv": PERIOD_COLUMNS,
    "/admin/exports/payments.csv": PAYMENT_COLUMNS,
    "/admin/renewals.csv": RENEWAL_COLUMNS,
}


def documented_columns() -> dict[str, list[str]]:
    """Return the columns docs/exports.md lists under each export's heading ("## … — `GET <url>`"), by URL."""
    found: dict[str, list[str]] = {}
    url = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## .*`GET (\S+)`", line)
        if heading:
            url = heading.group(1)
            found[url] = []
        elif line.startswith("## "):
            url = None
        elif url is not None and (cell := re.match(r"^\| `([a-z_]+)` \|", line)):
            found[url].append(cell.group(1))
    return found


def download(client: FlaskClient, url: str) -> bytes:
    """Return a CSV download's bytes, closing the streamed response (its request context and database session)."""
    with client.get(url) as response:
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
        return response.get_data()


def parse(body: bytes, delimiter: str = ",") -> list[dict[str, str]]:
    """Return the rows of a CSV download (UTF-8 with a BOM) as dicts."""
    assert body.startswith(BOM), body[:20]
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""), delimiter=delimiter))


# ---------------------------------------------------------------- format and columns


@pytest.mark.parametrize("url", list(EXPORTS))
def test_each_export_streams_a_csv_with_the_documented_columns(admin_app: Flask, url: str) -> None:
    with signed_in(admin_app).get(url) as response:
        assert response.status_code == 200
        assert response.is_streamed
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        disposition = response.headers["Content-Disposition"]
        assert re.fullmatch(r'attachment; filename="[a-z-]+-\d{8}-\d{4}\.csv"', disposition)
        body = response.get_data()
    header = next(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert header == [name for name, _ in EXPORTS[url]] == documented_columns()[url]
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))[1:]
    assert rows, f"{url}: no row on the demo data"
    assert {len(row) for row in rows} == {len(header)}
    assert body.count(b"\r\n") >= len(rows) + 1  # RFC 4180 line ends


def test_every_documented_export_is_served() -> None:
    assert sorted(documented_columns()) == sorted(EXPORTS)


def test_a_semicolon_separated_file_holds_the_same_rows(admin_app: Flask) -> None:
    client = signed_in(admin_app)
    for url in EXPORTS:
        semicolons = parse(download(client, f"{url}?sep=semicolon"), ";")
        assert semicolons == parse(download(client, url)), url


# ---------------------------------------------------------------- the rules' answers


@pytest.mark.parametrize("days", [-400, -20, 0, 45, 400], ids=lambda d: f"today{d:+d}")
def test_members_export_gives_each_members_eligibility_on_the_date(
    admin_app: Flask, db_session: Session, days: int
) -> None:
    on = today_utc() + timedelta(days=days)
    rows = parse(download(signed_in(admin_app), f"/admin/exports/members.csv?on={on.isoformat()}"))
    members = {m.member_no: m for m in db_session.scalars(select(Member))}
    assert sorted(row["member_no"] for row in rows) == sorted(members)
    for row in rows:
        answer = member_eligibility(db_session, members[row["member_no"]], on)
        expected = {
            "status_on": on.isoformat(),
            "coverage_status": answer.status.value,
            "covered": "true" if answer.covered else "false",
            "waiting_until": answer.waiting_until.isoformat() if answer.waiting_until else "",
            "reason": answer.reason or "",
        }
        assert {name: row[name] for name in expected} == expected, row["member_no"]
        if answer.valid_until is not None and answer.status.value in {"ACTIVE", "WAITING"}:
            assert row["coverage_end"] == answer.valid_until.isoformat()


@pytest.mark.parametrize("days", [-20, 0, 45], ids=lambda d: f"today{d:+d}")
def test_households_export_gives_each_households_amounts_on_the_date(
    admin_app: Flask, db_session: Session, days: int
) -> None:
    on = today_utc() + timedelta(days=days)
    rows = parse(download(signed_in(admin_app), f"/admin/exports/households.csv?on={on.isoformat()}"))
    households = {h.household_no: h for h in db_session.scalars(select(Household))}
    assert len(rows) == len(households)
    for row in rows:
        household = households[row["household_no"]]
        answer = household_eligibility(db_session, household, on)
        head = household.head
        assert head is not None
        assert (row["head_member_no"], row["head_last_name"], row["head_sex"], row["head_phone"]) == (
            head.member_no,
            head.last_name,
            head.sex.value,
            head.phone or "",
        )
        assert (row["coverage_status"], row["amount_due"], row["next_payment_amount"], row["next_payment_due"]) == (
            answer.status.value,
            str(answer.amount_due),
            str(answer.next_payment_amount),
            answer.next_payment_due.isoformat() if answer.next_payment_due else "",
        ), row["household_no"]
        assert row["household_status"] == household.status.value and row["currency"] == answer.currency


# ---------------------------------------------------------------- filters

RECENT = today_utc() - timedelta(days=50)
FILTER_CASES: list[tuple[str, str, Callable[[dict[str, str]], bool]]] = [
    ("households.csv", "commune=Thies Nord", lambda r: r["commune"] == "Thies Nord"),
    ("households.csv", "network=reseau-thies-nord-1", lambda r: r["network_code"] == "reseau-thies-nord-1"),
    ("households.csv", "network=RESEAU-THIES-NORD-1", lambda r: r["network_code"] == "reseau-thies-nord-1"),
    ("households.csv", "category=bsf", lambda r: r["subsidy_category"] == "bsf"),
    ("households.csv", "plan=half-yearly", lambda r: r["plan"] == "half-yearly"),
    ("households.csv", "status=GRACE,LAPSED", lambda r: r["coverage_status"] in {"GRACE", "LAPSED"}),
    ("households.csv", "status=grace&status=pending", lambda r: r["coverage_status"] in {"GRACE", "PENDING"}),
    (
        "households.csv",
        "commune=Pekesse&status=ACTIVE",
        lambda r: (r["commune"], r["coverage_status"]) == ("Pekesse", "ACTIVE"),
    ),
    ("members.csv", "status=INACTIVE", lambda r: r["coverage_status"] == "INACTIVE"),
    ("members.csv", "category=cec", lambda r: r["subsidy_category"] == "cec"),
    ("members.csv", "network=reseau-thies-nord-1", lambda r: r["network_code"] == "reseau-thies-nord-1"),
    ("coverage-periods.csv", "commune=Mont Rolland", lambda r: r["commune"] == "Mont Rolland"),
    ("coverage-periods.csv", "category=bsf", lambda r: r["subsidy_category"] == "bsf" and r["funder"] == "state"),
    ("payments.csv", "commune=Pekesse", lambda r: r["commune"] == "Pekesse"),
    ("payments.csv", "network=reseau-thies-nord-1", lambda r: r["network_code"] == "reseau-thies-nord-1"),
    ("payments.csv", f"from={RECENT}", lambda r: r["paid_at"] >= RECENT.isoformat()),
    (
        "payments.csv",
        f"to={RECENT}&network=reseau-thies-nord-1",
        lambda r: r["paid_at"] < f"{RECENT} 24" and r["network_code"] == "reseau-thies-nord-1",
    ),
]


@pytest.mark.parametrize(
    ("export", "query", "keeps"), FILTER_CASES, ids=[f"{export}?{query}" for export, query, _ in FILTER_CASES]
)
def test_exports_are_filtered_like_the_lists(
    admin_app: Flask, export: str, query: str, keeps: Callable[[dict[str, str]], bool]
) -> None:
    client = signed_in(admin_app)
    everything = parse(download(client, f"/admin/exports/{export}"))
    filtered = parse(download(client, f"/admin/exports/{export}?{query}"))
    assert filtered, f"{query}: nothing on the demo data"
    assert filtered == [row for row in everything if keeps(row)]
    assert len(filtered) < len(everything)


@pytest.mark.parametrize(("first", "last"), [(-30, 0), (0, 0), (-400, -300), (30, 90)], ids=str)
def test_the_periods_export_keeps_the_periods_overlapping_the_dates(admin_app: Flask, first: int, last: int) -> None:
    start, end = today_utc() + timedelta(days=first), today_utc() + timedelta(days=last)
    client = signed_in(admin_app)
    everything = parse(download(client, "/admin/exports/coverage-periods.csv"))
    filtered = parse(download(client, f"/admin/exports/coverage-periods.csv?from={start}&to={end}"))
    assert filtered == [r for r in everything if r["end_on"] >= start.isoformat() and r["start_on"] <= end.isoformat()]
    assert all(row["reversed_at"] == "" for row in everything)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/admin/exports/members.csv?on=2026-13-01", "on must be a date YYYY-MM-DD"),
        ("/admin/exports/members.csv?status=COVERED", "status must be among ACTIVE, WAITING"),
        ("/admin/exports/households.csv?network=nope", "network: no network has the code 'nope'"),
        ("/admin/exports/households.csv?sep=tab", "sep must be one of comma, semicolon"),
        ("/admin/exports/payments.csv?status=PAID", "status must be one of RECEIVED"),
        ("/admin/exports/payments.csv?from=yesterday", "from must be a date YYYY-MM-DD"),
        ("/admin/exports/coverage-periods.csv?scheme=cmu", "scheme must be a whole number"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(admin_app: Flask, url: str, message: str) -> None:
    response = signed_in(admin_app).get(url)
    assert response.status_code == 400
    assert message in text_of(response)


def test_the_exports_page_offers_each_export_and_its_forms_download(admin_app: Flask) -> None:
    client = signed_in(admin_app)
    page = client.get("/admin/exports").get_data(as_text=True)
    # The CSV forms (the FHIR NDJSON ones are tests/test_fhir.py's).
    actions = re.findall(r'<form class="filters" method="get" action="([^"]+\.csv)"', page)
    assert sorted(actions) == sorted(url for url in EXPORTS if url.startswith("/admin/exports/"))
    for action in actions:  # the forms' default values: everything, statuses on today
        assert download(client, f"{action}?scheme=&commune=&network=&plan=&category=&status=&sep=comma").startswith(BOM)


def test_signed_out_exports_ask_to_sign_in(admin_app: Flask) -> None:
    for url in ["/admin/exports", *EXPORTS]:
        response = admin_app.test_client().get(url)
        assert response.status_code == 302 and "/admin/login" in response.headers["Location"], url


# ---------------------------------------------------------------- any size


@pytest.fixture
def viewer(session: Session) -> None:
    """Create the viewer of `tests.admin_helpers` in the test's database."""
    create_staff_user(session, "viewer", PASSWORDS["viewer"], StaffRole.VIEWER, language="en")
    session.commit()


def add_households(session: Session, scheme: Scheme, count: int) -> None:
    """Insert `count` households of one member each, in two statements."""
    joined = date(2026, 1, 1)
    mutuelle_id = home_mutuelle(session, scheme.id, "Thiès Nord").id
    session.execute(
        insert(Household),
        [
            {
                "household_no": f"BULK-{n:06d}",
                "scheme_id": scheme.id,
                "mutuelle_id": mutuelle_id,
                "head_member_no": f"BULK-{n:06d}-01",
                "commune": "Thiès Nord",
                "subsidy_category": "standard",
                "plan": "yearly",
                "language": Language.FR,
                "sms_opt_in": True,
                "status": HouseholdStatus.ACTIVE,
                "enrolled_on": joined,
            }
            for n in range(count)
        ],
    )
    rows = session.execute(select(Household.household_no, Household.id)).tuples()
    ids = {number: household_id for number, household_id in rows}
    session.execute(
        insert(Member),
        [
            {
                "member_no": f"BULK-{n:06d}-01",
                "household_id": ids[f"BULK-{n:06d}"],
                "last_name": "Ndiaye",
                "first_name": "Aïssatou",
                "sex": Sex.F,
                "date_of_birth": date(1990, 1, 1),
                "relationship_to_head": "head",
                "phone": f"+22177{n:07d}",
                "status": MemberStatus.ACTIVE,
                "joined_on": joined,
            }
            for n in range(count)
        ],
    )
    session.commit()


def test_a_large_export_streams_in_chunks_from_the_first_row(app: Flask, session: Session, viewer: None) -> None:
    add_households(session, factories.scheme(session, "cmu-thies"), 2500)
    with signed_in(app).get("/admin/exports/members.csv") as response:
        assert response.is_streamed
        chunks = [chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in response.response]
    # The header is a chunk of its own (sent before the rows are read), then a chunk every ~64 KB: never the whole file.
    assert chunks[0] == BOM + ",".join(name for name, _ in MEMBER_COLUMNS).encode() + b"\r\n"
    assert len(chunks) >= 4 and max(len(chunk) for chunk in chunks) < 80 * 1024
    rows = parse(b"".join(chunks))
    assert len(rows) == 2500
    assert rows[0]["first_name"] == "Aïssatou" and rows[0]["coverage_status"] == "PENDING"
    assert rows[-1]["member_no"] == "BULK-002499-01"


def test_a_cell_a_spreadsheet_would_run_is_defused(app: Flask, session: Session, viewer: None) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, cmu, size=1, phone="+221770001122")
    household.commune = '=HYPERLINK("http://evil.example","x")'
    session.commit()
    [row] = parse(download(signed_in(app), "/admin/exports/households.csv"))
    assert row["commune"] == "'" + '=HYPERLINK("http://evil.example","x")'
    assert row["head_phone"] == "+221770001122"  # a phone is a number, not a formula
