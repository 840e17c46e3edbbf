"""Named SQL, loaded once from ``.sql`` files: each query under a ``-- name: x`` header.

Every module that runs SQL loads its file the same way: ``Q = load(path)`` (SQLAlchemy text clauses),
or ``for_driver(path)`` for the hot path's statements run through the driver itself.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import TextClause

#: The event log, outbox, leases and liveness (``checkpoint/queries.sql``).
EVENT_LOG = Path(__file__).with_name("queries.sql")
#: Child runs and their parents' joins (``checkpoint/fanout.sql``).
FANOUT = Path(__file__).with_name("fanout.sql")

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(source: str) -> dict[str, str]:
    parts = _HEADER.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def load(path: str | Path) -> dict[str, TextClause]:
    from sqlalchemy import text  # here, not above: the CLI's read path uses parse() without SQLAlchemy

    return {name: text(body) for name, body in parse(Path(path).read_text()).items()}


@cache
def for_driver(path: str | Path) -> dict[str, str]:
    """The queries of ``path`` as the psycopg driver takes them (``%(name)s`` binds, ``%`` escaped),
    compiled by SQLAlchemy itself, for :func:`checkpoint.db.one`."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    dialect = PGDialect_psycopg()
    return {name: str(clause.compile(dialect=dialect)) for name, clause in load(path).items()}
