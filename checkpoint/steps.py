"""One step's path through Postgres: claim the lease, then commit (fenced), retry or fail.

Each public function is one statement and one commit, except where a caller passes extra writes
that must share the commit's transaction (a tool result recorded with its checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.db import autocommit, one, soft
from checkpoint.jsonutil import dumps
from checkpoint.queries import EVENT_LOG, for_driver, load

Q = load(EVENT_LOG)
D = for_driver(EVENT_LOG)  # the hot path's two statements run at the driver level (checkpoint.db.one)


@dataclass(frozen=True)
class Worker:
    """Who runs a step: the process's liveness id, its Celery node name and its pid."""

    owner: str
    name: str
    pid: int


@dataclass(frozen=True)
class Dispatch:
    """A step to publish to the broker, at its run's priority (0-9, 9 first)."""

    run_id: str
    seq: int
    workflow: str
    priority: int = 0


#: Called with the dispatch of a waiter a freed concurrency slot woke, for the caller to publish.
Woke = Callable[[Dispatch], None]


@dataclass(frozen=True)
class Claim:
    """A lease on step ``seq`` of a run, and the checkpoint the step starts from."""

    run_id: str
    seq: int
    attempt: int
    workflow: str
    input: dict[str, Any]
    state: dict[str, Any]
    #: What ended the wait this step follows: ``{"type": "signal"|"timed_out"|"woke", "payload": ...}``.
    wake: dict[str, Any] | None = None
    #: Seconds from the dispatch (publish) of this step to this claim, by Postgres's clock; None if unknown.
    queue_wait: float | None = None
    priority: int = 0  # the run's, for the next step's message


@dataclass(frozen=True)
class Position:
    """Where a run stands, for a step that could not claim."""

    status: str
    next_seq: int
    cancel_requested_by: str | None
    lease_free: bool
    lease_owner: str | None = None
    attempt: int = 0
    throttled: bool = False


def claim(engine: Engine, run_id: str, seq: int, worker: Worker, *, deadline: float, lease_seconds: float) -> Claim | None:
    params = dict(
        run_id=run_id, seq=seq, owner=worker.owner, worker=worker.name, pid=worker.pid,
        deadline=deadline, lease_seconds=lease_seconds,
    )
    row = one(autocommit(engine), D["claim_step"], params)  # its commit is asynchronous (see the SQL)
    if row is None:
        return None
    workflow, input_, attempt, state, wake, queue_wait, priority = row
    return Claim(run_id, seq, attempt, workflow, input_, state, wake, queue_wait, priority)


def position(engine: Engine, run_id: str, *, lease_seconds: float, seq: int = 0) -> Position | None:
    """Where the run stands; ``throttled``: step ``seq`` waits for a concurrency slot."""
    with engine.connect() as conn:
        row = conn.execute(Q["run_position"], dict(run_id=run_id, lease_seconds=lease_seconds, seq=seq)).one_or_none()
    return None if row is None else Position(**row._mapping)


def commit(
    engine: Engine,
    claim: Claim,
    worker: Worker,
    *,
    event_type: str,
    state: dict[str, Any],
    payload: dict[str, Any],
    status: str = "running",
    result: Any = None,
    extra_writes: Sequence[Callable[[Connection], None]] = (),
    step_ms: float | None = None,
    wait_signal: str | None = None,
    wait_until: datetime | None = None,
    woke: Woke | None = None,
) -> str | None:
    """Append event ``claim.seq`` and queue the next step, if this attempt still holds the lease.

    Returns the run's new status, or None when the write was fenced off (another attempt owns the
    step now). ``extra_writes`` run in the same transaction, only when the append succeeded.

    With ``status="waiting"`` the run parks instead, waiting for ``wait_signal`` (None: a sleep) until
    ``wait_until`` (None: no timeout). A signal that arrived before the wait is consumed in the same
    transaction: the run is then ``queued`` again, and ``claim.seq + 2`` is the step to publish.

    A keyed run's commit frees its concurrency slot and wakes the key's oldest waiter in the same
    statement; ``woke`` gets that waiter's dispatch (to publish after this step's own), if any.
    """
    params = dict(
        run_id=claim.run_id, seq=claim.seq, owner=worker.owner, attempt=claim.attempt,
        worker=worker.name, pid=worker.pid, type=event_type, status=status,
        state=dumps(state), payload=dumps(payload), result=None if result is None else dumps(result),
        step_ms=step_ms, wait_signal=wait_signal, wait_until=wait_until,
    )
    if not extra_writes and status != "waiting":
        row = one(autocommit(engine), D["commit_step"], params)
        if row is None:
            return None
        woken(row[1:], woke)
        return row[0]
    with engine.begin() as conn:
        row = conn.execute(Q["commit_step"], params).one_or_none()
        if row is None:
            return None
        for write in extra_writes:
            write(conn)
        status = row.status
        if row.status == "waiting" and wait_signal is not None:
            signalled = conn.execute(Q["wake_on_signal"], dict(
                run_id=claim.run_id, owner=worker.owner, worker=worker.name, pid=worker.pid,
            )).one_or_none()
            if signalled is not None:
                status = "queued"
    woken(row[1:], woke)  # after the commit: the waiter's claim must find its slot free
    return status


def retry(engine: Engine, claim: Claim, worker: Worker, *, error: dict[str, Any], delay: float, outcome: str = "failed",
          woke: Woke | None = None) -> bool:
    """Hand the step back after a failed attempt; it is dispatched again after ``delay`` seconds.
    A keyed run's slot is freed meanwhile (``woke``: as :func:`commit`)."""
    params = dict(
        run_id=claim.run_id, seq=claim.seq, owner=worker.owner, attempt=claim.attempt,
        error=dumps(error), delay=delay, outcome=outcome,
    )
    with soft(engine).begin() as conn:
        row = conn.execute(Q["retry_step"], params).one_or_none()
    if row is not None:
        woken(row[1:], woke)
    return row is not None


def fail(engine: Engine, claim: Claim, worker: Worker, *, error: dict[str, Any], woke: Woke | None = None) -> bool:
    """End the run ``failed``: its last event lists every attempt at the step."""
    params = dict(
        run_id=claim.run_id, seq=claim.seq, owner=worker.owner, attempt=claim.attempt,
        worker=worker.name, pid=worker.pid, error=dumps(error),
    )
    with autocommit(engine).connect() as conn:
        row = conn.execute(Q["fail_run"], params).one_or_none()
    if row is not None:
        woken(row[1:], woke)
    return row is not None


# -- flow control: a freed concurrency slot's next holder ------------------------------------------

def woken(row: Sequence[Any], woke: Woke | None) -> None:
    """``row``: the ``woke_run_id, woke_seq, woke_workflow, woke_priority`` columns of a statement."""
    if row and row[0] is not None and woke is not None:
        woke(Dispatch(row[0], row[1], row[2], row[3]))


def release(engine: Engine, claim: Claim, worker: Worker) -> None:
    """Give the lease back at once (after a failed commit) so the step is taken up again quickly."""
    hand_back(engine, claim.run_id, claim.seq, claim.attempt, worker)


def hand_back(engine: Engine, run_id: str, seq: int, attempt: int, worker: Worker) -> None:
    """Release ``worker``'s lease of attempt ``attempt`` at step ``seq`` and queue the step again (or, if
    that attempt's commit landed, the next step's unsent dispatch: see ``release_lease``)."""
    params = dict(run_id=run_id, seq=seq, owner=worker.owner, attempt=attempt)
    with soft(engine).begin() as conn:
        conn.execute(Q["release_lease"], params)
