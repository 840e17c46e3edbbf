"""The tool ledger's reads and writes; every driver error leaves here as :class:`LedgerError`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.db import storage_errors
from checkpoint.jsonutil import dumps
from checkpoint.queries import load
from tools.errors import LedgerError

Q = load(Path(__file__).with_name("ledger.sql"))


#: Postgres errors inside become a LedgerError saying what the ledger was doing.
_ledger = partial(storage_errors, LedgerError)


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value)


@dataclass(frozen=True)
class LedgerEntry:
    """A ledger row as :func:`begin_call` left it."""

    status: str
    attempts: int
    result: Any
    result_artifact: dict[str, Any] | None
    error: dict[str, Any] | None


def begin_call(
    engine: Engine,
    *,
    key: str,
    run_id: str,
    seq: int,
    tool: str,
    version: str,
    input_hash: str,
    input: Any,
    worker: str | None,
    owner: str | None,
    refire: bool,
    unknown_error: dict[str, Any],
) -> LedgerEntry:
    """Commit the call as ``started`` (or find it done) in its own transaction, before the tool runs.

    ``refire``: whether a ``started`` row of a lost attempt may be executed again; if not, the row
    becomes ``unknown`` with ``unknown_error``.
    """
    params = dict(
        key=key, run_id=run_id, seq=seq, tool=tool, version=version, input_hash=input_hash,
        input=dumps(input), worker=worker, owner=owner, refire=refire, unknown_error=dumps(unknown_error),
    )
    with _ledger(f"cannot start tool call {tool} ({key[:12]})"):
        with engine.begin() as conn:
            row = conn.execute(Q["begin_call"], params).one()
    return LedgerEntry(row.status, row.attempts, row.result, row.result_artifact, row.error)


def bump_attempt(engine: Engine, key: str) -> int:
    """Count one more execution of the call (a retry inside the step); returns the new count."""
    with _ledger(f"cannot count an attempt of tool call {key[:12]}"):
        with engine.begin() as conn:
            return conn.execute(Q["bump_attempt"], dict(key=key)).scalar_one()


def finish_call(
    conn: Connection,
    *,
    key: str,
    status: str,
    result: Any = None,
    result_artifact: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Write the call's final status and result on the caller's connection (its transaction)."""
    params = dict(
        key=key, status=status, result=_json(result), result_artifact=_json(result_artifact), error=_json(error)
    )
    with _ledger(f"cannot record tool call {key[:12]}"):
        conn.execute(Q["finish_call"], params)


def count_replay(conn: Connection, key: str) -> None:
    """Count a replay answered from the step's memory, on the caller's connection."""
    with _ledger(f"cannot count a replay of tool call {key[:12]}"):
        conn.execute(Q["count_replay"], dict(key=key))


def record_rejected(
    conn: Connection,
    *,
    key: str,
    run_id: str,
    seq: int,
    tool: str,
    version: str,
    input_hash: str,
    input: Any,
    error: dict[str, Any],
    worker: str | None,
    owner: str | None,
) -> None:
    """Audit a call refused before execution (unknown tool, invalid input), on the caller's connection."""
    params = dict(
        key=key, run_id=run_id, seq=seq, tool=tool, version=version, input_hash=input_hash,
        input=dumps(input), error=dumps(error), worker=worker, owner=owner,
    )
    with _ledger(f"cannot record refused tool call {tool}"):
        conn.execute(Q["record_rejected"], params)
