"""Mutuelles: loaded with their scheme, households placed by the import, listed by the CLI, backfilled by migration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from extensions import db
from models.access.staff import find_staff_user
from models.db import make_engine
from models.members.household import Household, Network
from models.migrate import upgrade
from models.schemes.mutuelle import (
    Mutuelle,
    ReportedAccount,
    account_key,
    find_mutuelle,
    mutuelle_for_commune,
    mutuelles_of_account,
    scheme_mutuelles,
)
from models.schemes.scheme_file import SchemeFileError, parse_scheme_file
from tests import factories
from tests.members_helpers import SAMPLE, cli, rows_of, write_rows

__all__ = ["cli"]  # the fixture


def test_the_cmu_file_lists_three_mutuelles_and_sky_one(session: Session) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    sky = factories.scheme(session, "sky-cambodia")
    assert [m.code for m in scheme_mutuelles(session, cmu.id)] == ["SN-TN", "SN-PK", "SN-MR"]
    assert [m.code for m in scheme_mutuelles(session, sky.id)] == ["KH-PP"]
    pekesse = find_mutuelle(session, "sn-pk")
    assert pekesse is not None and pekesse.account("wave") == "M-221-PEKESSE"
    assert pekesse.sms_sender_id == "MUT-PK" and pekesse.communes == ["Pékesse"]


def test_a_scheme_file_without_mutuelles_is_its_own_mutuelle(session: Session, tmp_path: Path) -> None:
    source = (factories.SCHEMES_DIR / "sky-cambodia.toml").read_text(encoding="utf-8")
    start = source.index("[[mutuelles]]")
    end = source.index("[[channels]]")
    path = tmp_path / "sky.toml"
    path.write_text(source[:start] + source[end:], encoding="utf-8")
    spec = parse_scheme_file(path)
    [only] = spec.mutuelles
    assert (only["code"], only["name"]) == ("sky-cambodia", "SKY Health Insurance")
    assert {a["provider"]: a["account"] for a in only["accounts"]} == {"wing": "SKY-1020", "aba": "000 123 456"}


@pytest.mark.parametrize(
    ("fragment", "field"),
    [
        ('[[mutuelles]]\nname = "No code"\n', "mutuelles[0].code"),
        ('[[mutuelles]]\ncode = "A B"\nname = "Spaces"\n', "mutuelles[0].code"),
        ('[[mutuelles]]\ncode = "A"\nname = "x"\n[[mutuelles]]\ncode = "a"\nname = "y"\n', "mutuelles"),
        ('[[mutuelles]]\ncode = "A"\nname = "x"\nsms_sender_id = "MUTUELLE-TOO-LONG"\n', "mutuelles[0].sms_sender_id"),
        ('[[mutuelles]]\ncode = "A"\nname = "x"\naccounts.wave = "  "\n', "mutuelles[0].accounts.wave.account"),
        ('[[mutuelles]]\ncode = "A"\nname = "x"\ncommunes = [""]\n', "mutuelles[0].communes"),
    ],
)
def test_a_bad_mutuelle_is_named(tmp_path: Path, fragment: str, field: str) -> None:
    source = (factories.SCHEMES_DIR / "sky-cambodia.toml").read_text(encoding="utf-8")
    start = source.index("[[mutuelles]]")
    end = source.index("[[channels]]")
    path = tmp_path / "bad.toml"
    path.write_text(source[:start] + fragment + "\n" + source[end:], encoding="utf-8")
    with pytest.raises(SchemeFileError) as raised:
        parse_scheme_file(path)
    assert raised.value.field_name == field


@pytest.mark.parametrize(
    ("commune", "expected"),
    [
        ("Thiès Nord", "SN-TN"),
        ("THIES  NORD", "SN-TN"),
        ("thies-nord", "SN-TN"),
        ("Pekesse", "SN-PK"),
        ("Mont-Rolland", "SN-MR"),
        ("Tivaouane", None),
        ("", None),
        (None, None),
    ],
)
def test_a_commune_names_its_mutuelle_whatever_the_accents_and_case(
    session: Session, commune: str | None, expected: str | None
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    found = mutuelle_for_commune(scheme_mutuelles(session, cmu.id), commune)
    assert (found.code if found else None) == expected


def test_a_scheme_of_one_mutuelle_takes_every_commune(session: Session) -> None:
    sky = factories.scheme(session, "sky-cambodia")
    found = mutuelle_for_commune(scheme_mutuelles(session, sky.id), "Siem Reap")
    assert found is not None and found.code == "KH-PP"


@pytest.mark.parametrize(
    ("provider", "account", "expected"),
    [
        ("wave", "M-221-PEKESSE", {"SN-PK"}),
        ("wave", "m 221 pekesse", {"SN-PK"}),
        ("wave", "Mutuelle de Pékesse", {"SN-PK"}),  # Wave's merchant_name
        ("orange_money", "#144*4*6*203042#", {"SN-MR"}),
        ("orange_money", "144462030 42", {"SN-MR"}),
        ("orange_money", "M-221-PEKESSE", None),  # another provider's account
        ("wave", "M-221-DAKAR", None),
        ("wave", "", None),
        ("wing", "SKY-1020", {"KH-PP"}),
    ],
)
def test_the_account_a_payer_paid_names_its_mutuelles(
    session: Session, provider: str, account: str, expected: set[str] | None
) -> None:
    factories.scheme(session, "cmu-thies")
    factories.scheme(session, "sky-cambodia")
    found = mutuelles_of_account(session, ReportedAccount(provider, account))
    codes = None if found is None else {m.code for m in scheme_codes(session, found)}
    assert codes == expected


def scheme_codes(session: Session, ids: frozenset[int]) -> list[Mutuelle]:
    return [m for m in session.scalars(select(Mutuelle).where(Mutuelle.id.in_(ids)))]


def test_account_key_ignores_case_spacing_and_punctuation() -> None:
    assert account_key("#144*4*6*203040#") == account_key("144 4 6 203040") == "1444620304" + "0"
    assert account_key("Mutuelle de Pékesse") == "MUTUELLEDEPEKESSE"


def test_the_import_places_households_by_column_then_commune(
    app: Flask, cli: Callable[..., Result], tmp_path: Path
) -> None:
    rows = rows_of(SAMPLE)
    for row in rows:
        row["mutuelle"] = ""
    # The first household names its mutuelle (another than its commune's): the column wins.
    for row in rows:
        if row["household_no"] == "SN-TN-000123":
            row["mutuelle"] = "sn-pk"
            row["network"] = ""
    result = cli("members", "import", str(write_rows(tmp_path / "m.csv", rows)))
    assert result.exit_code == 0, result.output
    with app.app_context():
        session = db()
        placed = {
            number: code
            for number, code in session.execute(select(Household.household_no, Mutuelle.code).join(Mutuelle))
        }
        assert placed == {"SN-TN-000123": "SN-PK", "SN-PK-000045": "SN-PK", "SN-MR-000007": "SN-MR"}
        networks = dict(session.execute(select(Network.code, Network.mutuelle_id)).tuples().all())
        mutuelle_of = {m.id: m.code for m in session.scalars(select(Mutuelle))}
        assert {code: mutuelle_of[i] for code, i in networks.items()} == {
            "reseau-pekesse": "SN-PK",
            "reseau-mont-rolland": "SN-MR",
        }


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"mutuelle": "SN-XX"}, "mutuelle", "'SN-XX' is not a mutuelle of cmu-thies (SN-TN, SN-PK, SN-MR)"),
        ({"mutuelle": "KH-PP"}, "mutuelle", "'KH-PP' is not a mutuelle of cmu-thies"),
        ({"commune": "Tivaouane"}, "mutuelle", "no mutuelle of cmu-thies lists commune 'Tivaouane'"),
    ],
)
def test_a_household_of_no_mutuelle_is_a_line_error_and_nothing_is_written(
    app: Flask, cli: Callable[..., Result], tmp_path: Path, change: dict[str, str], column: str, reason: str
) -> None:
    rows = rows_of(SAMPLE)
    for row in rows:
        row.setdefault("mutuelle", "")
        if row["household_no"] == "SN-PK-000045":
            row.update(change)
    result = cli("members", "import", str(write_rows(tmp_path / "m.csv", rows)))
    assert result.exit_code != 0
    line = 2 + next(i for i, row in enumerate(rows) if row["household_no"] == "SN-PK-000045")
    assert f"line {line}" in result.output and column in result.output and reason in result.output
    with app.app_context():
        assert db().scalar(select(Household.id).limit(1)) is None


def test_a_network_spans_one_mutuelle(app: Flask, cli: Callable[..., Result], tmp_path: Path) -> None:
    rows = rows_of(SAMPLE)
    for row in rows:
        row["network"] = "Reseau Commun"
        row["mutuelle"] = ""
    result = cli("members", "import", str(write_rows(tmp_path / "m.csv", rows)))
    assert result.exit_code != 0
    assert "network 'Reseau Commun' is in another mutuelle on line 2" in result.output
    with app.app_context():
        assert db().scalar(select(Household.id).limit(1)) is None


def test_mutuelles_list_prints_one_a_line_code_first(cli: Callable[..., Result]) -> None:
    assert cli("members", "import", str(SAMPLE)).exit_code == 0
    result = cli("mutuelles", "list")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [fields[0] for fields in lines] == ["SN-TN", "SN-PK", "SN-MR", "KH-PP"]
    tn = lines[0]
    assert tn[1:4] == ["cmu-thies", "Mutuelle de santé de Thiès Nord", "1 households"]
    assert "wave M-221-THIES-NORD" in tn[5] and "orange_money #144*4*6*203040#" in tn[5]


def test_create_user_keeps_staff_to_mutuelles(app: Flask, cli: Callable[..., Result]) -> None:
    password = "correct horse battery"
    result = cli(
        "admin", "create-user", "awa", "--role", "operator", "--mutuelle", "SN-TN", "--mutuelle", "sn-pk",
        "--password", password,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "for SN-TN, SN-PK" in result.output
    assert cli("admin", "create-user", "union", "--password", password).exit_code == 0
    refused = cli("admin", "create-user", "bob", "--mutuelle", "SN-XX", "--password", password)
    assert refused.exit_code != 0 and "no mutuelle SN-XX" in refused.output
    with app.app_context():
        awa, union = find_staff_user(db(), "awa"), find_staff_user(db(), "union")
        assert awa is not None and [m.code for m in awa.mutuelles] == ["SN-PK", "SN-TN"]
        assert union is not None and union.mutuelles == []
        assert find_staff_user(db(), "bob") is None


def test_the_migration_puts_each_scheme_s_data_in_one_mutuelle(tmp_path: Path) -> None:
    """Existing data: every household, network and matched payment lands in its scheme's one mutuelle."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0024_staff_language")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO schemes (id, code, name, country, currency, currency_exponent, premium_kind, "
                "premium_amount, premium_per_months, membership_fee, grace_days, grace_covered, max_advance_months, "
                "default_language, languages, timezone, reminder_days, daytime_start, daytime_end, sms_sender_id, "
                "request_ttl_hours, updated_at) VALUES (1, 'cmu-thies', 'Mutuelle CMU Thies', 'SN', 'XOF', 0, "
                "'per_person', 7000, 12, 1000, 30, 0, 24, 'fr', '[\"fr\"]', 'Africa/Dakar', '[14, 3]', '08:00:00', "
                "'20:00:00', 'MUTUELLE', 72, '2026-12-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO payment_channels (scheme_id, provider, label, account, instructions, position) "
                "VALUES (1, 'wave', 'Wave', 'M-221-THIES', '{}', 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO networks (id, scheme_id, code, name, created_at) "
                "VALUES (1, 1, 'reseau-1', 'Reseau 1', '2026-12-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO households (id, household_no, scheme_id, network_id, subsidy_category, plan, language, "
                "sms_opt_in, status, enrolled_on, created_at, updated_at) VALUES (1, 'SN-TN-000001', 1, 1, "
                "'standard', 'yearly', 'fr', 1, 'ACTIVE', '2026-01-01', '2026-12-01 00:00:00', '2026-12-01 00:00:00')"
            )
        )
        for txn, household in (("T1", "1"), ("T2", "NULL")):
            connection.execute(
                text(
                    "INSERT INTO payments (provider, provider_txn_id, amount, currency, paid_at, fields_hash, status, "
                    f"confirmed, household_id, created_at, updated_at) VALUES ('wave', '{txn}', 3500, 'XOF', "
                    f"'2026-12-01 00:00:00', 'x', 'ALLOCATED', 1, {household}, '2026-12-01 00:00:00', "
                    "'2026-12-01 00:00:00')"
                )
            )
    upgrade(url)
    with Session(engine) as session:
        [mutuelle] = scheme_mutuelles(session, 1)
        assert (mutuelle.code, mutuelle.name, mutuelle.communes) == ("cmu-thies", "Mutuelle CMU Thies", [])
        assert mutuelle.account("wave") == "M-221-THIES"
        assert session.execute(text("SELECT mutuelle_id FROM households")).scalars().all() == [mutuelle.id]
        assert session.execute(text("SELECT mutuelle_id FROM networks")).scalars().all() == [mutuelle.id]
        paid = dict(session.execute(text("SELECT provider_txn_id, mutuelle_id FROM payments")).tuples().all())
        assert paid == {"T1": mutuelle.id, "T2": None}
        # Upper-case lookups keep their expression indexes through SQLite's table copies.
        indexes = set(session.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'")).scalars())
        assert {"ix_households_upper_household_no", "ix_networks_upper_code"} <= indexes
    engine.dispose()
