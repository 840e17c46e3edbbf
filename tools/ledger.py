"""The tool ledger's reads and writes; every driver error leaves here as :class:`LedgerError`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.db import autocommit, one, storage_errors
from checkpoint.jsonutil import dumps
from checkpoint.queries import for_driver, load
from tools.errors import LedgerError

Q = load(Path(__file__).with_name("ledger.sql"))
D = for_driver(Path(__file__).with_name("ledger.sql"))  # the statements of a step's own path


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
        # One statement, committed on its own (autocommit, durable): one round trip on the step's path.
        status, attempts, result, artifact, error = one(autocommit(engine), D["begin_call"], params)
    return LedgerEntry(status, attempts, result, artifact, error)


def record_done(engine: Engine, *, key: str, run_id: str, seq: int, tool: str, version: str, result: Any,
                worker: str | None, owner: str | None) -> None:
    """Record a call that is done already (a reasoner's decision), once: a second record of the same key
    keeps the first. Durable, one statement."""
    params = dict(key=key, run_id=run_id, seq=seq, tool=tool, version=version, result=dumps(result),
                  worker=worker, owner=owner)
    with _ledger(f"cannot record {tool} ({key[:12]})"):
        one(autocommit(engine), D["record_done"], params)


def done_result(engine: Engine, key: str) -> Any:
    """The result of the call ``key`` (None when there is no such row)."""
    with _ledger(f"cannot read {key[:12]}"):
        row = one(autocommit(engine), D["done_result"], dict(key=key))
    return None if row is None else row[0]


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
