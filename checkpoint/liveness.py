"""Worker liveness and the sweeps that turn a dead worker's or a lost message's step into a dispatch.

Liveness costs one heartbeat row per worker *process*, not per step: a lease points at its owner's
row, and an owner whose heartbeat is older than the lease time is dead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from checkpoint.db import soft
from checkpoint.queries import queries

Q = queries()


@dataclass(frozen=True)
class Dispatch:
    """A step to publish to the broker."""

    run_id: str
    seq: int
    workflow: str


def register(engine: Engine, owner: str, worker: str, pid: int) -> None:
    with soft(engine).begin() as conn:
        conn.execute(Q["register_proc"], dict(id=owner, worker=worker, pid=pid))


def heartbeat(engine: Engine, owner: str, worker: str, pid: int) -> None:
    with soft(engine).connect() as conn:
        if conn.execute(Q["heartbeat"], dict(id=owner)).one_or_none() is None:
            # Forgotten after a long pause: come back as the same owner; leases taken meanwhile stay taken.
            conn.execute(Q["register_proc"], dict(id=owner, worker=worker, pid=pid))


def sweep_lost_leases(engine: Engine, owner: str, *, lease_seconds: float) -> list[Dispatch]:
    with soft(engine).begin() as conn:
        rows = conn.execute(Q["sweep_lost_leases"], dict(owner=owner, lease_seconds=lease_seconds)).all()
    return [Dispatch(r.run_id, r.seq, r.workflow) for r in rows]


def sweep_outbox(
    engine: Engine, owner: str, *, lease_seconds: float, redispatch_seconds: float, run_id: str | None = None
) -> list[Dispatch]:
    """Take the due dispatches that look lost (all runs, or one) for ``owner`` to publish."""
    with soft(engine).begin() as conn:
        rows = conn.execute(
            Q["sweep_outbox"],
            dict(owner=owner, lease_seconds=lease_seconds, redispatch_seconds=redispatch_seconds, run_id=run_id),
        ).all()
    return [Dispatch(r.run_id, r.seq, r.workflow) for r in rows]


def forget_dead(engine: Engine) -> None:
    with soft(engine).begin() as conn:
        conn.execute(Q["forget_procs"])
