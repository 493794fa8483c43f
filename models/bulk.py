"""Writing many rows at once without `INSERT … RETURNING`.

A multi-row `INSERT … VALUES (…), (…) RETURNING id` of a few hundred rows is one SQL text with thousands of
placeholders, different for every row count: psycopg parses each one anew, and that costs more than the insert.
On PostgreSQL the ids are taken from the table's sequence instead, in one round trip
(`nextval` over `generate_series`), and the rows go in with `COPY … FROM STDIN` (`insert_many`): one statement
for any number of rows, several times cheaper for psycopg and PostgreSQL alike than an `executemany` of as many
INSERTs. SQLite has no sequences: there the insert returns the ids (cheap in-process).
Likewise a batch's lookups pass their keys as one array (`among`) rather than an IN list of placeholders, and
`update_many` updates rows from one array per column. After a bulk write, `analyze` gives the planner the
statistics of what was written.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    Update,
    any_,
    bindparam,
    column,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.sqltypes import NullType

log = logging.getLogger(__name__)

_Column = ColumnElement[Any] | InstrumentedAttribute[Any]
_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)")


def table_of(model: type[Any]) -> Table:
    """Return a model's table: Core inserts write exactly the columns given, NULLs included, in one statement."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def uses_sequences(session: Session) -> bool:
    """Return whether the session's database hands out ids from sequences (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


def among(session: Session, column: _Column, values: Collection[Any]) -> ColumnElement[bool]:
    """Return `column IN (values)`; on PostgreSQL `column = ANY(:values)`, one array parameter for any count.

    An IN list of a thousand ids is a thousand placeholders to render, and for psycopg to parse, per query.
    """
    if uses_sequences(session):
        item_type = String() if isinstance(column.type, NullType) else column.type  # `func.upper(x)` has no type
        return column == any_(bindparam(None, sorted(values), type_=ARRAY(item_type)))
    return column.in_(values)


def id_window_end(session: Session, ids: _Column, after: int, size: int, *where: ColumnElement[bool]) -> int | None:
    """Return the last id of the next `size` ids of a column after `after` (keyset order); None when fewer are left.

    A job walking a large table a window at a time takes the rows with ids in (`after`, end] (to the last when
    None), without ever loading the ids: one index-only read of the window's last one. `where`: the rows walked.
    """
    end = session.scalar(select(ids).where(ids > after, *where).order_by(ids).offset(size - 1).limit(1))
    return None if end is None else int(end)


def next_ids(session: Session, table: Table, count: int) -> list[int]:
    """Return `count` new ids from the sequence of the table's `id` column (PostgreSQL), in ascending order."""
    with session.no_autoflush:
        return list(session.scalars(_NEXT_IDS, {"table": table.name, "count": count}))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert rows (dicts with the same keys) and return their new ids, in the order of the rows."""
    if not rows:
        return []
    if not uses_sequences(session):
        return list(session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows))
    ids = next_ids(session, table, len(rows))
    _copy(session, table, rows, ids)
    return ids


def insert_many(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) in the session's transaction: `COPY` on PostgreSQL.

    The rows are those `session.execute(insert(table), rows)` writes: values converted by the columns' types, the
    Python defaults of the columns left out filled in (evaluated once for all the rows), the others left to the
    database (ids from their sequence). A database error is raised as SQLAlchemy's (`IntegrityError`, …).
    """
    if not rows:
        return
    if not uses_sequences(session):
        session.execute(insert(table), rows)
        return
    _copy(session, table, rows)


def _copy(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], ids: Sequence[int] = ()) -> None:
    """`COPY` the rows into the table (`ids`: their ids, in their order, when the database is not to choose them)."""
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    given = [*names, "id"] if ids else names
    defaults = _defaults(table, given)
    columns = [table.c[name] for name in [*given, *defaults]]
    processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    convert = [(i, f) for i, f in enumerate(processors[: len(names)]) if f is not None]
    tail = zip(defaults.values(), processors[len(given) :], strict=True)
    extra = [value if f is None else f(value) for value, f in tail]
    quote = dialect.identifier_preparer
    statement = f"COPY {quote.format_table(table)} ({', '.join(quote.format_column(c) for c in columns)}) FROM STDIN"
    raw = connection.connection.dbapi_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[attr-defined]
            for index, row in enumerate(rows):
                values = [row[name] for name in names]
                for i, f in convert:
                    values[i] = f(values[i])
                if ids:
                    values.append(ids[index])
                copy.write_row(values + extra)
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, raw, None)
        if invalidated:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=invalidated, dialect=dialect
        ) from exc


def update_many(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str = "id") -> None:
    """Update rows found by their `key` column (dicts with the same keys, `key` among them), each with its values.

    On PostgreSQL one `UPDATE … FROM unnest(…)` with one array per column; elsewhere an executemany of UPDATEs.
    The rows are not updated in any given order: the caller holds their locks already.
    """
    if not rows:
        return
    names = tuple(rows[0])
    if not uses_sequences(session):
        by_key = update(table).where(table.c[key] == bindparam("_key"))
        session.execute(by_key, [{("_key" if name == key else name): row[name] for name in names} for row in rows])
        return
    arrays = {f"v_{name}": [row[name] for row in rows] for name in names}
    session.execute(_update_from_arrays(table, names, key), arrays)


@functools.cache
def _update_from_arrays(table: Table, names: tuple[str, ...], key: str) -> Update:
    """Return `UPDATE table SET c = v.c, … FROM unnest(:v_key, :v_c, …) AS v(key, c, …) WHERE table.key = v.key …`."""
    arrays = {name: bindparam(f"v_{name}", type_=ARRAY(table.c[name].type)) for name in names}
    values = func.unnest(*arrays.values()).table_valued(*[column(name, table.c[name].type) for name in names])
    v = values.render_derived(name="v")
    # `key = ANY(keys)` too: the table is read by its index, never scanned whole to hash it against the arrays.
    found = (table.c[key] == any_(arrays[key])) & (table.c[key] == v.c[key])
    return update(table).where(found).values({name: v.c[name] for name in names if name != key})


def _defaults(table: Table, given: list[str]) -> dict[str, Any]:
    """Return the values of the Python-side defaults of the table's columns not given (`created_at`: now)."""
    values: dict[str, Any] = {}
    for each in table.columns:
        default = each.default
        if each.name in given or default is None:
            continue
        if default.is_scalar:
            values[each.name] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            function = getattr(default.arg, "__wrapped__", None)  # type: ignore[attr-defined]
            if function is None:  # it reads the execution context: not supported here
                raise ValueError(f"{table.name}.{each.name}: give its value (its default reads the statement)")
            values[each.name] = function()
        else:  # a SQL expression or sequence
            raise ValueError(f"{table.name}.{each.name}: give its value (its default is evaluated in SQL)")
    return values


def preassign_ids(session: Session) -> None:
    """Give the session's pending new objects their ids now, one round trip per table (PostgreSQL only).

    The next flush then inserts them with `executemany` instead of `INSERT … RETURNING`.
    """
    if not uses_sequences(session):
        return
    waiting: dict[Table, list[Any]] = defaultdict(list)
    for instance in session.new:
        mapper = inspect(instance).mapper
        key = mapper.primary_key
        if len(key) == 1 and key[0].name == "id" and key[0].autoincrement and instance.id is None:
            waiting[mapper.local_table].append(instance)
    for table, instances in waiting.items():
        for instance, new_id in zip(instances, next_ids(session, table, len(instances)), strict=True):
            instance.id = new_id


def analyze(session: Session, models: Iterable[type[Any]] | None = None) -> None:
    """Refresh the planner's statistics of the tables of bulk-written models (all tables: None), then commit.

    Call it once the writes are committed. Straight after a load the planner knows nothing of the new rows: at
    national scale (4,000,000 members) the USSD answered 28 req/s with a p99 of 4.4 s until an `ANALYZE`, and
    1,495 req/s with a p99 of 19 ms after it. Autovacuum gets there in its own time; a scheme's go-live cannot
    wait for it. PostgreSQL only: SQLite keeps no statistics until asked, and its plans are tuned without them.
    A failure is logged, not raised: the writes are committed all the same.
    """
    statement = _analyze_statement(session, models)
    if statement is None:
        return
    try:
        session.execute(text(statement))
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("%s failed (%s): the planner works from old statistics until autovacuum", statement, exc)


def refresh_statistics(session: Session, models: Iterable[type[Any]]) -> None:
    """`ANALYZE` the models' tables inside the session's open transaction (PostgreSQL; elsewhere nothing).

    For a long bulk write: its own uncommitted rows are counted, so its later lookups are planned for the tables it
    is filling. It holds the tables' SHARE UPDATE EXCLUSIVE lock (autovacuum waits, readers and writers do not)
    until the transaction ends; an error is raised, as any statement's in the transaction.
    """
    statement = _analyze_statement(session, models)
    if statement is not None:
        session.execute(text(statement))


def _analyze_statement(session: Session, models: Iterable[type[Any]] | None) -> str | None:
    """Return the `ANALYZE` of the models' tables (all tables: None); None when there is nothing to analyse."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    if models is None:
        return "ANALYZE"
    names = sorted({bind.dialect.identifier_preparer.format_table(table_of(model)) for model in models})
    return "ANALYZE " + ", ".join(names) if names else None
