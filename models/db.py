"""Engines and sessions: SQLite tuned for concurrent writers, PostgreSQL as is, fork-safe; work handed on at commit."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A pooled PostgreSQL connection idle for longer than this is pinged before use (see `_ping_after_idle`).
PING_AFTER_IDLE_SECONDS = 1.0

_engines: dict[str, tuple[int, Engine]] = {}
# Execution option of a statement that must see every mutuelle's rows even in a session kept to some
# (models/views/scope.py): the checks that a name, phone or key is free, which are unique across mutuelles.
EVERY_MUTUELLE = "every_mutuelle"
Stmt = TypeVar("Stmt", bound=Executable)


def every_mutuelle(statement: Stmt) -> Stmt:
    """Return the statement marked to run unfiltered by a session's mutuelle scope (uniqueness checks only)."""
    return statement.execution_options(**{EVERY_MUTUELLE: True})


# session.info: [(enqueue, items)] waiting for the session's transaction to commit (`enqueue_after_commit`).
_AFTER_COMMIT = "enqueue_after_commit"


def is_sqlite(url_or_engine: str | Engine) -> bool:
    """Return whether the URL or engine is SQLite."""
    url = url_or_engine if isinstance(url_or_engine, str) else str(url_or_engine.url)
    return url.startswith("sqlite")


def _tune_sqlite(engine: Engine) -> None:
    """Use WAL, a busy timeout, foreign keys, and let us choose BEGIN or BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so the "begin" hook below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # A writer that reads then writes must hold the write lock from the start, or
        # WAL snapshots make its first write fail with SQLITE_BUSY_SNAPSHOT.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has been idle for `PING_AFTER_IDLE_SECONDS` or more.

    `pool_pre_ping` pings on every checkout: one more round trip for each request, ~0.1 ms of a USSD hop's
    budget. A connection dies while idle (a database restart, a dropped NAT entry): one back in use within the
    second is alive but for a restart in that second, which fails that statement, after which SQLAlchemy
    invalidates it and every older pooled connection; the USSD menu reads run such a statement again (see
    `menus.data.DatabaseData.read`). A dead connection raises `DisconnectionError` here, so the pool replaces it.
    """

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # new (just connected) or used within the last second
        if not engine.dialect._do_ping_w_event(dbapi_connection):
            raise DisconnectionError("the pooled connection was closed while idle")


def make_engine(url: str, echo: bool = False) -> Engine:
    """Return a new engine for the URL with this project's connection settings."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if is_sqlite(url):
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _tune_sqlite(engine)
    else:
        engine = create_engine(url, echo=echo, pool_size=5, max_overflow=10)
        _ping_after_idle(engine)
    return engine


def get_engine(url: str, echo: bool = False) -> Engine:
    """Return this process's shared engine for the URL, replacing one inherited across a fork."""
    pid = os.getpid()
    cached = _engines.get(url)
    if cached is not None:
        owner, engine = cached
        if owner == pid:
            return engine
        # Inherited from the parent (RQ forks a work horse per job): never reuse its sockets.
        engine.dispose(close=False)
    engine = make_engine(url, echo=echo)
    _engines[url] = (pid, engine)
    return engine


def dispose_engines() -> None:
    """Close every cached engine of this process (tests and shutdown)."""
    for _pid, engine in _engines.values():
        engine.dispose()
    _engines.clear()


def session_factory(url: str) -> sessionmaker[Session]:
    """Return a session factory bound to the process's engine for the URL."""
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer (BEGIN IMMEDIATE on SQLite)."""
    if session.in_transaction():
        return
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def enqueue_after_commit(session: Session, enqueue: Callable[[list[T]], object], items: Iterable[T]) -> None:
    """Call `enqueue` with the items once the session's transaction has committed; never after a rollback.

    A worker never looks for a row that is not committed, and a rolled-back transaction enqueues nothing. The
    items of every call naming an equal `enqueue` in one transaction go to one call (one job for a batch). A
    failure of `enqueue` (Redis away) is logged, not raised: the rows are committed, and a sweeper finds their
    work again.
    """
    if not event.contains(Session, "after_commit", _run_after_commit):
        # Every session: a session from any factory (the web's, a job's, a test's) may hand work on.
        event.listen(Session, "after_commit", _run_after_commit)
        event.listen(Session, "after_transaction_end", _drop_after_rollback)
    waiting: list[tuple[Callable[[list[Any]], object], list[Any]]] = session.info.setdefault(_AFTER_COMMIT, [])
    for known, pending in waiting:
        if known == enqueue:
            pending.extend(items)
            return
    waiting.append((enqueue, list(items)))


def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the enclosing transaction may still roll back
    for enqueue, items in session.info.pop(_AFTER_COMMIT, []):
        name = getattr(enqueue, "__qualname__", type(enqueue).__qualname__)
        try:
            enqueue(items)
        except RedisError as exc:
            log.warning("%s of %d item(s) not enqueued after commit (%r): left for the sweeper", name, len(items), exc)
        except Exception:  # committed all the same: the sweeper enqueues it again
            log.exception("%s of %d item(s) failed after commit: left for the sweeper", name, len(items))


def _drop_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    # A commit has already taken the work of its transaction: what is left was rolled back.
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)
