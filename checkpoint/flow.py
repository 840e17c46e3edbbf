"""Flow control in Postgres: steps deferred for want of budget, concurrency waiters, what operators see.

A keyed run's claim and commit do the concurrency work themselves (``claim_step`` and ``commit_step``
call the SQL functions of migration 0011): at most ``limit`` runs of a key hold a slot; a step over the
limit is not claimed and its outbox row waits, without a due time or a broker message, until a freed
slot wakes it, oldest first. This module holds the rest: :func:`defer` (a rate limit said no: the step
goes back undone, due again later), :func:`repair` (the sweeper's backstop for a slot freed with no
waiter woken) and the operators' views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from checkpoint.db import soft
from checkpoint.queries import load
from checkpoint.steps import Claim, Dispatch, Woke, Worker, woken

Q = load(Path(__file__).with_name("flow.sql"))


def defer(engine: Engine, claim: Claim, worker: Worker, *, reason: str, delay: float, woke: Woke | None = None) -> bool:
    """Hand the step back undone (no attempt counted), dispatched again after ``delay`` seconds; ``show``
    says ``reason`` meanwhile. Its concurrency slot is freed (``woke``: as :func:`checkpoint.steps.commit`)."""
    params = dict(run_id=claim.run_id, seq=claim.seq, owner=worker.owner, attempt=claim.attempt,
                  delay=max(delay, 0.0), reason=reason)
    with soft(engine).begin() as conn:
        row = conn.execute(Q["defer_step"], params).one_or_none()
    if row is not None:
        woken(row[1:], woke)
    return row is not None


def admit_first(engine: Engine, run_id: str, seq: int, key: str, limit: int) -> bool:
    """Whether a keyed run's first step should be published now; no: it waits for a slot (its outbox row
    is a waiter, woken like any other)."""
    with soft(engine).begin() as conn:
        return bool(conn.execute(Q["admit_first"], dict(run_id=run_id, seq=seq, key=key, limit=limit)).scalar())


def repair(engine: Engine, owner: str) -> list[Dispatch]:
    """Wake waiters of keys that have a free slot nobody was woken for, for ``owner`` to publish."""
    with soft(engine).begin() as conn:
        rows = conn.execute(Q["flow_repair"], dict(owner=owner)).all()
    return [Dispatch(r.run_id, r.seq, r.workflow, r.priority) for r in rows]


def keys(engine: Engine) -> list[dict[str, Any]]:
    """Every concurrency key in use: ``key``, ``in_flight``, ``woken``, ``queued``, ``oldest``, ``limit``."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["flow_keys"])]


def deferred(engine: Engine) -> list[dict[str, Any]]:
    """Steps deferred by a rate limit, per reason: ``reason``, ``queued``, ``next_due``."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["rate_deferred"])]


def throttle_of(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """Why the run's next step waits, if throttled: ``reason``, ``key``, ``in_flight``, ``limit``,
    ``since``, ``due_at`` and ``woken`` (a freed slot is on its way to it)."""
    with engine.connect() as conn:
        row = conn.execute(Q["run_throttle"], dict(run_id=run_id)).one_or_none()
    return None if row is None else dict(row._mapping)

