"""The Postgres engine: one per process, created explicitly and handed down."""

from __future__ import annotations

import os
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine


class DatabaseError(RuntimeError):
    """Postgres could not be reached or refused a statement steplog relies on."""


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


_autocommit: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()


def autocommit(engine: Engine) -> Engine:
    """The same pool in autocommit mode: a single statement is its own transaction, with no BEGIN
    and COMMIT round trips around it (a step's claim and commit are one statement each)."""
    try:
        return _autocommit[engine]
    except KeyError:
        _autocommit[engine] = ac = engine.execution_options(isolation_level="AUTOCOMMIT")
        return ac


def after_fork(engine: Engine) -> None:
    """A forked child must not share its parent's sockets, nor close them (that would end the
    parent's sessions): forget inherited connections in the engine and the pools derived from it."""
    engine.dispose(close=False)
    fast = _soft.get(engine)
    if fast is not None:
        fast.dispose(close=False)


_soft: "WeakKeyDictionary[Engine, Engine]" = WeakKeyDictionary()


def soft(engine: Engine) -> Engine:
    """An autocommit pool whose commits do not wait for the WAL fsync (synchronous_commit=off).

    For writes that are safe to lose in a Postgres crash because they are redone: a step's claim
    (the lease; the step is claimed again), heartbeats, sweeps and lease hand-backs. A durable commit
    after them flushes their WAL too. The event append, a run's failure and a submission stay on
    the durable pool.
    """
    try:
        return _soft[engine]
    except KeyError:
        _soft[engine] = fast = create_engine(
            engine.url,
            isolation_level="AUTOCOMMIT",
            pool_size=engine.pool.size(),
            max_overflow=5,
            pool_recycle=3600,
            connect_args={"application_name": f"steplog-{os.getpid()}", "options": "-c synchronous_commit=off"},
        )
        return fast

