"""The Postgres engine: one per process, created explicitly and handed down."""

from __future__ import annotations

import os

from sqlalchemy import Engine, create_engine


class DatabaseError(RuntimeError):
    """Postgres could not be reached or refused a statement steplog relies on."""


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    # pool_pre_ping: a worker outlives Postgres restarts; a dead pooled connection is replaced, not raised.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"application_name": f"steplog-{os.getpid()}"},
    )


def after_fork(engine: Engine) -> None:
    """A forked child must not share its parent's sockets: drop inherited connections, keep the pool."""
    engine.dispose(close=False)
