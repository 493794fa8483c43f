"""Helpers of the member import tests: the sample export, both schemes loaded, the CLI, CSV rows."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy.orm import Session

from extensions import db
from models.schemes.scheme_file import load_scheme, parse_scheme_file
from tests.conftest import FIXTURES, ROOT

SAMPLE = FIXTURES / "members_sample.csv"
SCHEMES = ROOT / "schemes"


def load_schemes(session: Session) -> None:
    """Load both shipped schemes and commit."""
    for name in ("cmu-thies.toml", "sky-cambodia.toml"):
        load_scheme(session, parse_scheme_file(SCHEMES / name))
    session.commit()


@pytest.fixture
def cli(app: Flask) -> Callable[..., Result]:
    """Return a runner of `flask --app app …` commands on the test app, with both schemes loaded."""
    with app.app_context():
        load_schemes(db())

    def run(*args: str) -> Result:
        return app.test_cli_runner().invoke(args=list(args))

    return run


def rows_of(path: Path) -> list[dict[str, str]]:
    """Return the rows of a CSV file as dicts."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows (dicts with the same keys) as a CSV file and return its path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
