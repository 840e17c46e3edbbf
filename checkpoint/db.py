"""The Postgres engine: one per process, created explicitly and handed down."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from checkpoint.errors import StorageError


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    # No pool_pre_ping: it costs a round trip per checkout on the hot path. A connection that died
    # with a Postgres restart fails one statement, is invalidated, and the step is retried.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        pool_recycle=3600,
        connect_args={"application_name": f"steplog-{os.getpid()}"},
    )


def _derived(engine: Engine, registry: "WeakKeyDictionary[Engine, Engine]", **connect_args: str) -> Engine:
    """A second pool on ``engine``'s database whose connections are in autocommit from the start
    (so the hot path can use them at the driver level, see :func:`one`)."""
    try:
        return registry[engine]
    except KeyError:
        registry[engine] = derived = create_engine(
            engine.url,
            isolation_level="AUTOCOMMIT",
            pool_size=engine.pool.size(),
            max_overflow=5,
            pool_recycle=3600,
            connect_args={"application_name": f"steplog-{os.getpid()}", **connect_args},
        )
        return derived


_autocommit: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()
_soft: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()


def autocommit(engine: Engine) -> Engine:
    """An autocommit pool: a single statement is its own transaction, with no BEGIN and COMMIT
    round trips around it (a step's claim and commit are one statement each). Commits are durable."""
    return _derived(engine, _autocommit)


def soft(engine: Engine) -> Engine:
    """An autocommit pool whose commits do not wait for the WAL fsync (synchronous_commit=off).

    For writes that are safe to lose in a Postgres crash because they are redone: a step's claim
    (the lease; the step is claimed again), heartbeats, sweeps and lease hand-backs. A durable commit
    after them flushes their WAL too. The event append, a run's failure and a submission stay on
    the durable pool.
    """
    return _derived(engine, _soft, options="-c synchronous_commit=off")


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
            cur = driver.execute(sql, params, prepare=True)
            return cur.fetchone() if cur.description is not None else None

        with driver.transaction():
            yield run
    except psycopg.Error as exc:
        _raise(conn, pool, last[0], last[1], exc)
    finally:
        conn.close()


def one(pool: Engine, sql: str, params: Mapping[str, Any]) -> tuple | None:
    """Run one statement on an autocommit pool (:func:`autocommit` or :func:`soft`) through the
    driver itself and return its first row (a tuple), or None.

    The step's claim and commit take this path: SQLAlchemy's per-execute work (execution context,
    result metadata) measured as 0.35 ms of CPU per step, more than the driver's. Pooling stays
    SQLAlchemy's, and so do the errors callers catch: a driver error is raised as the matching
    ``sqlalchemy.exc`` class, and a connection that broke is invalidated, not pooled again.
    ``sql`` is in the driver's ``%(name)s`` style (:func:`checkpoint.queries.for_driver`).
    """
    conn = _checkout(pool)
    try:
        return conn.driver_connection.execute(sql, params, prepare=True).fetchone()
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
