"""Named SQL, loaded once from ``.sql`` files: each query under a ``-- name: x`` header."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(source: str) -> dict[str, str]:
    parts = _HEADER.split(source)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def load(path: str | Path) -> dict[str, TextClause]:
    return {name: text(body) for name, body in parse(Path(path).read_text()).items()}


_BIND = re.compile(r"(?<!:):(\w+)")  # :name, not the :: of a cast


@cache
def driver_queries() -> dict[str, str]:
    """The event log's queries in the driver's own ``%(name)s`` style, for :func:`checkpoint.db.one`."""
    source = parse(Path(__file__).with_name("queries.sql").read_text())
    return {name: _BIND.sub(r"%(\1)s", body.replace("%", "%%")) for name, body in source.items()}


def queries() -> dict[str, TextClause]:
    """The event log's queries (``checkpoint/queries.sql``)."""
    return load(Path(__file__).with_name("queries.sql"))
