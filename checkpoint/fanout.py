"""Fan-out in Postgres: a step's children spawned in its commit, and read back at its join.

A child is an ordinary run whose row names its parent, the parent's step that spawned it and its
index; its id is ``{parent}.{seq}.{index}``. Counting the children that end, firing the join once and
starting the next child when one ends (the ``max_parallel`` window) happen in the database, in the
transaction that ends each child (the trigger ``steplog_run_ended``, migration 0010), whatever ends it:
a commit, a failure, a cancel. The rows that trigger queues (the parent's next step, the next child)
have no owner yet, so the first sweep publishes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.jsonutil import dumps
from checkpoint.queries import FANOUT, load

Q = load(FANOUT)

ON_ERROR = ("all", "settled", "quorum")


def child_id(run_id: str, seq: int, index: int) -> str:
    """The run id of child ``index`` of step ``seq`` of ``run_id`` (the same on every process)."""
    return f"{run_id}.{seq}.{index}"


@dataclass(frozen=True)
class NewChild:
    """A child to create: its workflow, its validated input and its first checkpoint."""

    workflow: str
    input: dict[str, Any]
    state: dict[str, Any]


def spawn(
    run_id: str, seq: int, children: Sequence[NewChild], *, window: int, on_error: str, quorum: int | None,
    owner: str, worker: str,
) -> Callable[[Connection], None]:
    """An extra write for the commit of step ``seq`` (which parks the run): the fan-out row and all
    ``children`` in one statement; the first ``window`` of them are dispatched, promised by ``owner``."""
    body = dumps([{"w": c.workflow, "i": c.input, "s": c.state} for c in children])
    params = dict(run_id=run_id, seq=seq, total=len(children), max_parallel=window, on_error=on_error,
                  quorum=quorum, window=window, children=body, owner=owner, worker=worker, pid=os.getpid())

    def write(conn: Connection) -> None:
        conn.execute(Q["spawn_children"], params)

    return write


def join(engine: Engine, run_id: str, seq: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The fan-out row of step ``seq`` and its children in item order, for the step after the join.
    After an early join (a quorum reached, a failure under ``all``), children still going are cancelled
    first (those the join's own transaction could not reach)."""
    with engine.begin() as conn:
        fan = conn.execute(Q["get_fanout"], dict(run_id=run_id, seq=seq)).one()._mapping
        rows = [dict(r._mapping) for r in conn.execute(Q["join_children"], dict(run_id=run_id, seq=seq))]
        if any(r["status"] not in ("succeeded", "failed", "cancelled") for r in rows):
            conn.execute(Q["cancel_children"], dict(run_id=run_id, seq=seq, by=f"join of {run_id}"))
            rows = [dict(r._mapping) for r in conn.execute(Q["join_children"], dict(run_id=run_id, seq=seq))]
    return dict(fan), rows


def cancel_children(engine: Engine, run_id: str, *, by: str) -> int:
    """Cancel every child of ``run_id`` that has not ended (its own children too); returns how many
    ended now (the others end at their step's commit)."""
    with engine.begin() as conn:
        return conn.execute(Q["cancel_children"], dict(run_id=run_id, seq=None, by=by)).scalar_one()


def counts(engine: Engine, run_id: str) -> dict[str, int]:
    """A run's children by status (empty when it has none)."""
    with engine.connect() as conn:
        return {r.status: r.n for r in conn.execute(Q["children_by_status"], dict(run_id=run_id))}


def children(engine: Engine, run_id: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["list_children"], dict(run_id=run_id, limit=limit))]
