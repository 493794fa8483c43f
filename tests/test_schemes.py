"""Schemes load from TOML; a broken file is refused with the field named and nothing written."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from extensions import db
from models.base import PremiumKind
from models.schemes.scheme import Scheme, schemes_today

SCHEMES = Path(__file__).resolve().parent.parent / "schemes"


def load(app: Flask, *paths: Path | str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["schemes", "load", *map(str, paths)])
    return result.exit_code, result.output


def test_both_shipped_schemes_load(app: Flask) -> None:
    code, output = load(app, SCHEMES / "cmu-thies.toml", SCHEMES / "sky-cambodia.toml")
    assert code == 0, output
    with app.app_context():
        cmu = db().scalar(select(Scheme).where(Scheme.code == "cmu-thies"))
        sky = db().scalar(select(Scheme).where(Scheme.code == "sky-cambodia"))
        assert cmu is not None and sky is not None
        assert (cmu.currency, cmu.currency_exponent, cmu.membership_fee) == ("XOF", 0, 1000)
        assert cmu.premium_kind is PremiumKind.PER_PERSON
        assert (cmu.premium_amount, cmu.premium_per_months) == (7000, 12)
        assert [(p.code, p.months, p.waiting_months) for p in cmu.plans] == [("yearly", 12, 1), ("half-yearly", 6, 2)]
        assert {c.code: c.share_bp for c in cmu.subsidy_categories} == {"standard": 5000, "bsf": 10000, "cec": 10000}
        assert [c.provider for c in cmu.channels] == ["wave", "orange_money"]
        assert cmu.languages == ["fr", "wo"]
        assert sky.currency == "KHR" and sky.premium_kind is PremiumKind.BANDS
        assert [b.min_size for b in sky.bands] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert [(p.code, p.months) for p in sky.plans] == [("monthly", 1)]
        assert sky.languages == ["km", "en"]


def test_loading_twice_updates_in_place(app: Flask) -> None:
    assert load(app, SCHEMES / "cmu-thies.toml")[0] == 0
    assert load(app, SCHEMES / "cmu-thies.toml")[0] == 0
    with app.app_context():
        assert db().scalar(select(func.count()).select_from(Scheme)) == 1


@pytest.mark.parametrize(
    ("original", "broken", "field"),
    [
        ("amount = 7000 ", 'amount = "7000" ', "premium.amount"),
        ('currency = "XOF"', 'currency = "XXX"', "currency"),
        ('timezone = "Africa/Dakar"', 'timezone = "Africa/Thies"', "timezone"),
        ("months = 6\n", "months = 0\n", "plans[1].months"),
        ("share_percent = 50", "share_percent = 150", "subsidies.standard.share_percent"),
        ('default_language = "fr"', 'default_language = "km"', "default_language"),
        ('wo = "Wave: fey', 'xx = "Wave: fey', "channels[0].instructions"),
        ('code = "cmu-thies"\n', "", "code"),
        ('daytime = ["08:00", "20:00"]', 'daytime = ["8h", "20:00"]', "reminders.daytime"),
    ],
)
def test_broken_file_is_refused_naming_the_field(
    app: Flask, tmp_path: Path, original: str, broken: str, field: str
) -> None:
    text = (SCHEMES / "cmu-thies.toml").read_text()
    assert original in text
    bad = tmp_path / "cmu-thies.toml"
    bad.write_text(text.replace(original, broken, 1))
    code, output = load(app, SCHEMES / "sky-cambodia.toml", bad)
    assert code != 0
    assert f"cmu-thies.toml: {field}:" in output
    with app.app_context():
        assert db().scalar(select(func.count()).select_from(Scheme)) == 0


def test_invalid_toml_is_refused(app: Flask, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("code = \n")
    code, output = load(app, bad)
    assert code != 0 and "not valid TOML" in output


# 2026-12-31 20:00 UTC: still the 31st in Dakar (UTC all year), already 2027-01-01 03:00 in Phnom Penh.
LATE = datetime(2026, 12, 31, 20, 0)


@pytest.mark.parametrize(
    ("chosen", "now", "expected"),
    [
        ("cmu-thies", LATE, date(2026, 12, 31)),
        ("sky-cambodia", LATE, date(2027, 1, 1)),
        (None, LATE, date(2026, 12, 31)),  # several schemes: the earliest of their days
        ("sky-cambodia", datetime(2026, 12, 31, 16, 59), date(2026, 12, 31)),
        ("sky-cambodia", datetime(2026, 12, 31, 17, 0), date(2027, 1, 1)),
    ],
)
def test_today_is_the_schemes_own_day(app: Flask, chosen: str | None, now: datetime, expected: date) -> None:
    code, output = load(app, SCHEMES / "cmu-thies.toml", SCHEMES / "sky-cambodia.toml")
    assert code == 0, output
    with app.app_context():
        scheme_id = db().scalar(select(Scheme.id).where(Scheme.code == chosen)) if chosen else None
        assert schemes_today(db(), scheme_id, now=now) == expected


def test_today_without_schemes_is_utcs(app: Flask) -> None:
    with app.app_context():
        assert schemes_today(db(), now=LATE) == date(2026, 12, 31)
        assert schemes_today(db(), 12345, now=LATE) == date(2026, 12, 31)
