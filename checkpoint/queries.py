"""Named SQL, loaded once from ``.sql`` files: each query under a ``-- name: x`` header."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(source: str) -> dict[str, str]:
    parts = _HEADER.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def load(path: str | Path) -> dict[str, TextClause]:
    return {name: text(body) for name, body in parse(Path(path).read_text()).items()}


@cache
def driver_queries() -> dict[str, str]:
    """The event log's queries as the psycopg driver takes them (``%(name)s`` binds, ``%`` escaped),
    compiled by SQLAlchemy itself, for :func:`checkpoint.db.one`."""
    dialect = PGDialect_psycopg()
    return {name: str(clause.compile(dialect=dialect)) for name, clause in queries().items()}


def queries() -> dict[str, TextClause]:
    """The event log's queries (``checkpoint/queries.sql``)."""
    return load(Path(__file__).with_name("queries.sql"))
