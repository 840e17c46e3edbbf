"""The read path of the commands that only look (`show`, `runs`, `report`): the event log's named
queries (``checkpoint/queries.sql``, read with :mod:`checkpoint.queries`) run on a plain psycopg
connection.

Importing SQLAlchemy alone takes longer than these commands should take in all. psycopg is the driver
SQLAlchemy uses underneath, so rows hold the same Python values as :mod:`checkpoint.runs` returns.
"""

from __future__ import annotations

import ast
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from checkpoint.errors import RunNotFound
from checkpoint.queries import EVENT_LOG, FANOUT, parse

#: Flow control's queries (``checkpoint/flow.sql``): why a run's next step is throttled.
FLOW = Path(__file__).parents[2] / "checkpoint" / "flow.sql"

#: The Alembic migrations (``steplog db upgrade``).
MIGRATIONS = Path(__file__).parents[1] / "migrations" / "versions"

_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)

# SQLAlchemy's rules for text(): a bind is ``:name`` not after a colon, word character or backslash
# and not before a colon (so ``::jsonb`` is a cast); ``\:`` is a literal colon; ``%`` is doubled for
# the driver. tests/test_cli.py checks the result equals checkpoint.queries.for_driver's.
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_ESCAPED_COLON = re.compile(r"\\(:[\w$]*)(?![:\w$])")


def driver_sql(sql: str) -> str:
    """``sql`` as written for SQLAlchemy's ``text()``, in the driver's ``%(name)s`` style."""
    return _ESCAPED_COLON.sub(r"\1", _BIND.sub(r"%(\1)s", sql.replace("%", "%%")))


@cache
def queries() -> dict[str, str]:
    return {name: driver_sql(body) for name, body in parse(EVENT_LOG.read_text()).items()}


@cache
def fanout_queries() -> dict[str, str]:
    return {name: driver_sql(body) for name, body in parse(FANOUT.read_text()).items()}


def children_counts(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    """As :func:`checkpoint.fanout.counts`."""
    return {r["status"]: r["n"] for r in conn.execute(fanout_queries()["children_by_status"], dict(run_id=run_id))}


def children(conn: psycopg.Connection, run_id: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
    """As :func:`checkpoint.fanout.children`."""
    return conn.execute(fanout_queries()["list_children"], dict(run_id=run_id, limit=limit)).fetchall()


def family(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """A run's parent, the parent's step and its index (all None for a run that is no child)."""
    return conn.execute(fanout_queries()["run_parent"], dict(run_id=run_id)).fetchone()


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL of Postgres (``postgresql+psycopg://...``, as the settings spell it) as libpq
    takes it: the same URL without the driver name."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def connect(url: str, *, prepared: bool = True) -> psycopg.Connection:
    conn = psycopg.connect(
        libpq_url(url), autocommit=True, row_factory=dict_row, application_name=f"steplog-{os.getpid()}"
    )
    if not prepared:  # STEPLOG_PREPARED_STATEMENTS=false: `watch` repeats its queries past the threshold
        conn.prepare_threshold = None
    return conn


@cache
def schema_head() -> str | None:
    """The newest migration's revision, read from the files' ``revision`` and ``down_revision`` lines
    without importing Alembic (tests/test_cli.py checks it is Alembic's head); None unless the
    migrations are one line of history, and then Alembic itself decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in MIGRATIONS.glob("*.py"):
        found = {k: ast.literal_eval(v) for k, v in _REVISION_LINE.findall(path.read_text())}
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        revisions.add(revision)
        parents.update([down] if down else [])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def schema_is_current(url: str) -> bool:
    """Whether the database is at the newest migration (:func:`schema_head`), so there is nothing
    for Alembic to do; False when that cannot be told."""
    head = schema_head()
    if head is None:
        return False
    with connect(url) as conn:
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except psycopg.errors.UndefinedTable:
            return False
    return [r["version_num"] for r in rows] == [head]


def _one(conn: psycopg.Connection, name: str, **params: Any) -> dict[str, Any] | None:
    return conn.execute(queries()[name], params).fetchone()


def _all(conn: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    return conn.execute(queries()[name], params).fetchall()


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any]:
    """As :func:`checkpoint.runs.get`."""
    row = _one(conn, "get_run", run_id=run_id)
    if row is None:
        raise RunNotFound(run_id)
    return row


def events(conn: psycopg.Connection, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
    """As :func:`checkpoint.runs.events`: an archived run's events come from its archive."""
    rows = _all(conn, "get_events", run_id=run_id, after=after)
    if rows:
        return rows
    found = _one(conn, "get_archive", run_id=run_id)
    if found is None or found["archive"] is None:
        return rows
    from checkpoint.archive import archived_events, store_for_archive

    pointer = found["archive"]
    return archived_events(store_for_archive(pointer), pointer, after=after)


def throttle(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """As :func:`checkpoint.flow.throttle_of`."""
    sql = {name: driver_sql(body) for name, body in parse(FLOW.read_text()).items()}["run_throttle"]
    return conn.execute(sql, dict(run_id=run_id)).fetchone()


def in_flight(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """As :func:`checkpoint.runs.in_flight`."""
    return _one(conn, "get_in_flight", run_id=run_id)


def recent(conn: psycopg.Connection, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """As :func:`checkpoint.runs.recent`."""
    return _all(conn, "list_runs", status=status, limit=limit, tenant=None, q=None)
