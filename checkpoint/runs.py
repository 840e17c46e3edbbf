"""Runs as operators see them: submit, read, list, cancel."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.aio import AsyncReads
from checkpoint.archive import archived_events, store_for_archive
from checkpoint.artifacts import ArtifactStore
from checkpoint.db import autocommit
from checkpoint.errors import RunNotFound
from checkpoint.jsonutil import dumps
from checkpoint.queries import EVENT_LOG, for_driver, load

Q = load(EVENT_LOG)

FIRST_STEP = 2  # seq 1 is the `submitted` event holding the initial checkpoint
DEFAULT_TENANT = "default"


def new_run_id() -> str:
    return uuid.uuid4().hex


def create(engine: Engine, workflow: str, input: dict[str, Any], state: dict[str, Any], *, submitted_by: str,
           tenant: str = DEFAULT_TENANT, extra: dict[str, Any] | None = None, flow: tuple[str, int] | None = None,
           priority: int = 0) -> str:
    """Write the run, its `submitted` event (the first checkpoint) and the first step's dispatch;
    ``extra`` joins the `submitted` event's payload (e.g. the caller's ``traceparent``); ``flow``: the
    run's concurrency key and limit; ``priority``: 0-9 (9 first)."""
    with engine.begin() as conn:
        return create_in(conn, workflow, input, state, submitted_by=submitted_by, tenant=tenant, extra=extra,
                         flow=flow, priority=priority)


def create_in(conn: Connection, workflow: str, input: dict[str, Any], state: dict[str, Any], *, submitted_by: str,
              extra: dict[str, Any] | None = None, tenant: str = DEFAULT_TENANT,
              flow: tuple[str, int] | None = None, priority: int = 0) -> str:
    """:func:`create` inside the caller's transaction (a schedule's tick and its run commit together);
    ``extra`` joins the `submitted` event's payload."""
    run_id = new_run_id()
    conn.execute(
        Q["create_run"],
        dict(
            run_id=run_id, workflow=workflow, input=dumps(input), state=dumps(state),
            payload=dumps({"input": input, **(extra or {})}), worker=submitted_by, pid=os.getpid(), tenant=tenant,
            flow_key=flow[0] if flow else None, flow_limit=flow[1] if flow else None, priority=priority,
        ),
    )
    return run_id


def get(engine: Engine, run_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(Q["get_run"], dict(run_id=run_id)).one_or_none()
    if row is None:
        raise RunNotFound(run_id)
    return dict(row._mapping)


def events(engine: Engine, run_id: str, *, after: int = 0, store: ArtifactStore | None = None) -> list[dict[str, Any]]:
    """A run's events after seq ``after``, oldest first; for an archived run (``steplog gc``), read back
    from its archive in ``store`` (default: the store the archive records it was written to)."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(Q["get_events"], dict(run_id=run_id, after=after))]
        if rows:
            return rows
        pointer = conn.execute(Q["get_archive"], dict(run_id=run_id)).scalar_one_or_none()
    if pointer is None:
        return rows
    return archived_events(store or store_for_archive(pointer), pointer, after=after)


def in_flight(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(Q["get_in_flight"], dict(run_id=run_id)).one_or_none()
    return None if row is None else dict(row._mapping)


def attempts(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["get_attempts"], dict(run_id=run_id))]


def recent(engine: Engine, *, status: str | None = None, limit: int = 50, tenant: str | None = None,
           q: str | None = None) -> list[dict[str, Any]]:
    """Runs newest first: of one ``status``, one ``tenant``, whose id starts with ``q`` or whose workflow is ``q``."""
    params = dict(status=status, limit=limit, tenant=tenant, q=q or None)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(Q["list_runs"], params)]


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did: ended the run now, asked the in-flight step to stop there, or nothing."""

    status: str  # cancelled | requested | already_<status>
    in_flight_seq: int | None = None


def cancel(engine: Engine, run_id: str, *, by: str, lease_seconds: float) -> CancelOutcome:
    with engine.begin() as conn:
        requested = conn.execute(Q["request_cancel"], dict(run_id=run_id, by=by)).one_or_none()
    if requested is None:
        return CancelOutcome(f"already_{get(engine, run_id)['status']}")
    if finalize_cancel(engine, run_id, worker=by, lease_seconds=lease_seconds):
        return CancelOutcome("cancelled")
    flight = in_flight(engine, run_id)
    return CancelOutcome("requested", flight["seq"] if flight else None)


def finalize_cancel(engine: Engine, run_id: str, *, worker: str, lease_seconds: float) -> bool:
    """End a cancel-requested run that no live worker is stepping; False if one still is."""
    with engine.begin() as conn:
        row = conn.execute(
            Q["finalize_cancel"], dict(run_id=run_id, worker=worker, pid=os.getpid(), lease_seconds=lease_seconds)
        ).one_or_none()
    return row is not None


def waiting_for(engine: Engine, signal: str, *, tenant: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Runs waiting for ``signal`` (of ``tenant``, or every tenant), longest waiting first, each with
    ``payload``: its `waiting` event's (an approval's tool, arguments and key)."""
    with engine.connect() as conn:
        rows = conn.execute(Q["waiting_for"], dict(signal=signal, tenant=tenant, limit=limit)).all()
    return [dict(r._mapping) for r in rows]


def count_by_status(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r.status: r.n for r in conn.execute(Q["count_by_status"])}


def traceparent(engine: Engine, run_id: str) -> str | None:
    """The trace context the run was submitted with (its `submitted` event keeps it), or None."""
    return event_traceparent(engine, run_id, FIRST_STEP - 1)


def event_traceparent(engine: Engine, run_id: str, seq: int) -> str | None:
    """The ``traceparent`` in event ``seq``'s payload (a `waiting` event keeps its step's span), or None."""
    with engine.connect() as conn:
        return conn.execute(Q["event_traceparent"], dict(run_id=run_id, seq=seq)).scalar_one_or_none()


def count_waiting(engine: Engine) -> dict[str, int]:
    """Waiting runs by the signal they wait for ('' for a sleep)."""
    with engine.connect() as conn:
        return {r.signal: r.n for r in conn.execute(Q["count_waiting"])}


async def version(reads: AsyncReads, run_id: str) -> tuple[str, str | None]:
    """The run's tenant and a digest that changes whenever what `show` reads changes (None when `show`
    also reads other rows that change on their own: a parent's children, a queued step's throttle)."""
    row = await reads.one(for_driver(EVENT_LOG)["run_version"], dict(run_id=run_id))
    if row is None:
        raise RunNotFound(run_id)
    return row["tenant"], row["version"] if row["fixed"] else None


def view(engine: Engine, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """The run, its events and the step in flight, read on one autocommit connection (no transaction
    to open or roll back): what `show` and the API's run page read, in the fewest round trips."""
    with autocommit(engine).connect() as conn:
        row = conn.execute(Q["get_run"], dict(run_id=run_id)).one_or_none()
        if row is None:
            raise RunNotFound(run_id)
        rows = [dict(r._mapping) for r in conn.execute(Q["get_events"], dict(run_id=run_id, after=0))]
        # A run that has ended or waits has no step in flight: one statement fewer.
        busy = row.status in ("queued", "running")
        flight = conn.execute(Q["get_in_flight"], dict(run_id=run_id)).one_or_none() if busy else None
    run = dict(row._mapping)
    if not rows and run.get("archive") is not None:
        rows = archived_events(store_for_archive(run["archive"]), run["archive"], after=0)
    return run, rows, None if flight is None else dict(flight._mapping)
