"""The Postgres engine: one per process, created explicitly and handed down."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from checkpoint.errors import StorageError


#: The driver's connection arguments of each engine made here, for the pools derived from it.
_connect_args: "WeakKeyDictionary[Engine, dict[str, Any]]" = WeakKeyDictionary()


def make_engine(url: str, *, pool_size: int = 5, prepared: bool = True) -> Engine:
    """``prepared=False`` for a pooler that cannot keep prepared statements (PgBouncer before 1.21 in
    transaction mode hands each transaction to any server connection): psycopg then never prepares,
    neither on request (the hot path's ``prepare=True``) nor automatically after five executions."""
    # No pool_pre_ping: it costs a round trip per checkout on the hot path. A connection that died
    # with a Postgres restart fails one statement, is invalidated, and the step is retried.
    # Only startup parameters PgBouncer passes on: no ``options`` (it refuses the connection).
    connect_args: dict[str, Any] = {"application_name": f"steplog-{os.getpid()}"}
    if not prepared:
        connect_args["prepare_threshold"] = None
    engine = create_engine(url, pool_size=pool_size, max_overflow=5, pool_recycle=3600, connect_args=connect_args)
    _connect_args[engine] = connect_args
    return engine


def _derived(engine: Engine, registry: "WeakKeyDictionary[Engine, Engine]", **options: Any) -> Engine:
    """A second pool on ``engine``'s database, with the same connection arguments."""
    try:
        return registry[engine]
    except KeyError:
        registry[engine] = derived = create_engine(
            engine.url,
            pool_size=engine.pool.size(),
            max_overflow=5,
            pool_recycle=3600,
            connect_args=_connect_args.get(engine, {"application_name": f"steplog-{os.getpid()}"}),
            **options,
        )
        return derived


_autocommit: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()
_soft: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()

#: Inside one transaction (``SET LOCAL``): a session-level setting would stay on a pooler's server
#: connection and make other clients' commits asynchronous too.
ASYNC_COMMIT = "SET LOCAL synchronous_commit TO off"


def autocommit(engine: Engine) -> Engine:
    """An autocommit pool: a single statement is its own transaction, with no BEGIN and COMMIT
    round trips around it (a step's claim and commit are one statement each). Commits are durable,
    unless the statement itself says otherwise (the claim calls ``set_config('synchronous_commit',
    'off', true)``: that lasts only for its own transaction)."""
    return _derived(engine, _autocommit, isolation_level="AUTOCOMMIT")


def soft(engine: Engine) -> Engine:
    """A pool whose transactions do not wait for the WAL fsync at commit (``SET LOCAL
    synchronous_commit TO off`` as each begins). Use it with ``begin()``.

    For writes that are safe to lose in a Postgres crash because they are redone: heartbeats,
    sweeps, retries and lease hand-backs (the claim does the same within its one statement). A
    durable commit after them flushes their WAL too. The event append, a run's failure and a
    submission stay on the durable pools.
    """
    try:
        return _soft[engine]
    except KeyError:
        derived = _derived(engine, _soft)
        event.listen(derived, "begin", lambda conn: conn.exec_driver_sql(ASYNC_COMMIT))
        return derived


def prepares(driver: psycopg.Connection) -> bool:
    """The ``prepare`` argument for the hot path's statements: prepared at once, unless the engine was
    made with ``prepared=False`` (then never)."""
    return False if driver.prepare_threshold is None else True


def after_fork(engine: Engine) -> None:
    """A forked child must not share its parent's sockets, nor close them (that would end the
    parent's sessions): forget inherited connections in the engine and the pools derived from it."""
    engine.dispose(close=False)
    for registry in (_autocommit, _soft):
        derived = registry.get(engine)
        if derived is not None:
            derived.dispose(close=False)


def _raise(conn: Any, pool: Engine, sql: str, params: Mapping[str, Any], exc: psycopg.Error) -> None:
    """A driver error as the matching ``sqlalchemy.exc`` class; a broken connection is invalidated."""
    driver = conn.driver_connection
    broken = driver is None or driver.broken or driver.closed or pool.dialect.is_disconnect(exc, driver, None)
    if broken:
        conn.invalidate(exc)
    raise DBAPIError.instance(sql, dict(params), exc, psycopg.Error, connection_invalidated=broken) from exc


def _checkout(pool: Engine) -> Any:
    """A pooled connection; a server that refuses it (down, restarting, shutting down) raises the
    matching ``sqlalchemy.exc`` class, as a failed statement does. (``raw_connection`` lets the
    driver's own error out, which a caller handling ``OperationalError`` would not catch: a step
    message would be dropped instead of retried.)"""
    try:
        return pool.raw_connection()
    except psycopg.Error as exc:
        raise DBAPIError.instance(None, None, exc, psycopg.Error, connection_invalidated=True) from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Any]:
    """One transaction at the driver level, on an autocommit pool connection (:func:`autocommit`):
    yields ``run(sql, params)``, which executes one statement (``%(name)s`` style) and returns its first
    row or None. Commits when the block ends, rolls back if it raises. For short transactions on a
    latency path (a signal's store and wake), where SQLAlchemy's per-execute work would dominate."""
    pool = autocommit(engine)
    conn = _checkout(pool)
    last = ("", {})
    try:
        driver = conn.driver_connection

        def run(sql: str, params: Mapping[str, Any]) -> tuple | None:
            nonlocal last
            last = (sql, params)
            cur = driver.execute(sql, params, prepare=prepares(driver))
            return cur.fetchone() if cur.description is not None else None

        with driver.transaction():
            yield run
    except psycopg.Error as exc:
        _raise(conn, pool, last[0], last[1], exc)
    finally:
        conn.close()


def one(pool: Engine, sql: str, params: Mapping[str, Any]) -> tuple | None:
    """Run one statement on an autocommit pool (:func:`autocommit`) through the
    driver itself and return its first row (a tuple), or None.

    The step's claim and commit take this path: SQLAlchemy's per-execute work (execution context,
    result metadata) measured as 0.35 ms of CPU per step, more than the driver's. Pooling stays
    SQLAlchemy's, and so do the errors callers catch: a driver error is raised as the matching
    ``sqlalchemy.exc`` class, and a connection that broke is invalidated, not pooled again.
    ``sql`` is in the driver's ``%(name)s`` style (:func:`checkpoint.queries.for_driver`).
    """
    conn = _checkout(pool)
    try:
        driver = conn.driver_connection
        return driver.execute(sql, params, prepare=prepares(driver)).fetchone()
    except psycopg.Error as exc:
        _raise(conn, pool, sql, params, exc)
    finally:
        conn.close()


@contextmanager
def storage_errors(error: type[StorageError], what: str) -> Iterator[None]:
    """Postgres errors raised inside become ``error`` (a :class:`StorageError` of the caller's
    subsystem) saying what was being done; the driver's error stays chained as its cause."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise error(f"{what}: {exc.__class__.__name__}: {exc}") from exc
