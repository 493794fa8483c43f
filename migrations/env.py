"""Alembic environment: the URL comes from the project's settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import models
from config import Settings
from models.db import is_sqlite, make_engine

target_metadata = models.Base.metadata


def run_with(connection: Connection) -> None:
    """Run migrations on an open connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(connection.engine),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run migrations against the configured database."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or Settings.from_env().DATABASE_URL
    engine = make_engine(url)
    with engine.connect() as conn:
        if is_sqlite(engine):
            # SQLite alters a table by copying it (batch mode): rows of other tables pointing at it would fail
            # the copy's DROP TABLE. Foreign keys are off while migrating (a pragma outside any transaction,
            # hence on the DBAPI connection) and checked whole afterwards.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            run_with(conn)
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            raw.execute("PRAGMA foreign_keys=ON")
            if broken:
                raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
        else:
            run_with(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `flask --app app db upgrade`")
run_online()
