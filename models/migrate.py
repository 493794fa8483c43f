"""Run Alembic from code: upgrade a database to head, or compare it with the models."""

from __future__ import annotations

import warnings
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import models
from config import BASE_DIR
from models.db import make_engine


def alembic_config(url: str) -> Config:
    """Return the Alembic configuration for the database URL."""
    cfg = Config(str(BASE_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(BASE_DIR / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at the URL to the revision."""
    command.upgrade(alembic_config(url), revision)


def schema_differences(engine: Engine) -> list[Any]:
    """Return what autogenerate would change to make the database match the models.

    SQLite cannot reflect indexes on expressions (`upper(x)`): there they are skipped (with that warning
    silenced); PostgreSQL compares them.
    """
    with engine.connect() as conn, warnings.catch_warnings():
        if engine.dialect.name == "sqlite":
            warnings.filterwarnings("ignore", message=".*expression-based index")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, models.Base.metadata))


def pending_differences(url: str) -> list[Any]:
    """Return the schema differences of the database at the URL."""
    engine = make_engine(url)
    try:
        return schema_differences(engine)
    finally:
        engine.dispose()
