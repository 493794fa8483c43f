"""`members import` with the optional `network_phone` column (issue 18): the network's contact, who pays for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from flask import Flask
from sqlalchemy import select

from extensions import db
from models.members.household import Network
from tests.members_helpers import SAMPLE, cli, rows_of, write_rows

__all__ = ["cli"]  # the CLI fixture with the schemes loaded


def with_network_phone(tmp_path: Path, phones: dict[str, str]) -> Path:
    """Return the sample export with a `network_phone` column, filled per household number."""
    rows = [dict(row, network_phone=phones.get(row["household_no"], "")) for row in rows_of(SAMPLE)]
    return write_rows(tmp_path / "members.csv", rows)


def contacts(app: Flask) -> dict[str, str | None]:
    with app.app_context():
        return dict(db().execute(select(Network.code, Network.contact_phone)).tuples().all())


def test_network_phone_sets_the_network_contact(app: Flask, cli: Callable[..., Result], tmp_path: Path) -> None:
    path = with_network_phone(tmp_path, {"SN-TN-000123": "77 555 00 00"})
    result = cli("members", "import", str(path))
    assert result.exit_code == 0, result.output
    assert contacts(app)["reseau-thies-nord-1"] == "+221775550000"
    assert contacts(app)["reseau-pekesse"] is None

    # A later file names another contact: it wins.
    path = with_network_phone(tmp_path, {"SN-TN-000123": "+221 78 555 00 01"})
    assert cli("members", "import", str(path)).exit_code == 0
    assert contacts(app)["reseau-thies-nord-1"] == "+221785550001"


def test_network_phone_errors_name_the_line(app: Flask, cli: Callable[..., Result], tmp_path: Path) -> None:
    rows = [dict(row, network_phone="") for row in rows_of(SAMPLE)]
    rows[0]["network_phone"] = "12"  # not a phone
    rows[3]["network_phone"] = "775550000"  # a network contact for a household of no network is refused too
    rows[3]["network"] = ""
    path = write_rows(tmp_path / "bad.csv", rows)
    result = cli("members", "import", str(path))
    assert result.exit_code != 0
    assert "line 2" in result.output and "network_phone" in result.output
    assert "line 5" in result.output and "needs a network" in result.output
    assert contacts(app) == {}  # nothing half-imported
