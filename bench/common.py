"""What the benchmark scripts share: a fresh PostgreSQL database with the schema (and the shipped schemes)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from sqlalchemy.orm import Session

import models
from models.db import make_engine
from models.scheme_file import load_scheme, parse_scheme_file

ROOT = Path(__file__).resolve().parent.parent


def fresh_database(admin_url: str, name: str, with_schemes: bool = True) -> str:
    """Recreate the named benchmark database with the schema (and the shipped schemes); return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    if with_schemes:
        with Session(engine) as session:
            for path in sorted((ROOT / "schemes").glob("*.toml")):
                load_scheme(session, parse_scheme_file(path))
            session.commit()
    engine.dispose()
    return url
