"""Signals: outside events a run may wait for, stored durably first and delivered once.

:func:`send` stores the signal (deduplicated by its key), and, when the run waits for that signal now,
wakes it in the same transaction: a ``signal`` event, the run ``queued``, and the next step's outbox
row, which the caller publishes right away (a submitter's promise: the sweeper re-sends it if the
caller dies first). A signal the run does not wait for yet stays buffered; the step that later
commits ``Wait`` for it consumes it in its own commit (:func:`checkpoint.steps.commit`). A timer's
wake takes the run row with SKIP LOCKED and the sender holds it, so a signal racing a timeout has
exactly one outcome.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from checkpoint.errors import BadInput, RunNotFound, SteplogError
from checkpoint.jsonutil import dumps
from checkpoint.db import transaction
from checkpoint.queries import EVENT_LOG, for_driver
from checkpoint.statuses import TERMINAL_STATUSES
from checkpoint.steps import Dispatch

D = for_driver(EVENT_LOG)

MAX_NAME = 200


class RunFinished(SteplogError):
    """The run has ended (succeeded, failed or cancelled): it takes no more signals."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}: it takes no more signals")
        self.run_id, self.status = run_id, status


@dataclass(frozen=True)
class SignalOutcome:
    """What sending did: ``delivered`` (it woke the run), ``buffered`` (kept for a later wait), or
    ``duplicate`` (this key was sent before; ``delivered_seq`` says whether that one woke the run)."""

    status: str
    key: str
    dispatch: Dispatch | None = None
    delivered_seq: int | None = None


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise BadInput(f"a signal name must be a non-empty string of at most {MAX_NAME} characters, got {name!r}")
    return name


def send(
    engine: Engine, run_id: str, name: str, data: Any = None, *, key: str | None = None, sender: str,
    owner: str | None = None, max_bytes: int | None = None, workflows: Collection[str] | None = None, kind: str = "",
) -> SignalOutcome:
    """Store signal ``name`` for ``run_id`` and wake the run if it waits for it; see the module doc.

    ``owner`` is the liveness id of a worker process that will publish the dispatch (None: a submitter,
    whose unpublished dispatch the sweeper re-sends after STEPLOG_REDISPATCH_SECONDS). ``max_bytes``
    bounds the data's JSON (it lands in the run's event log as is). ``workflows``: the run must be of
    one of them (a ``kind``, e.g. a session), else :class:`BadInput`. Raises :class:`BadInput`,
    :class:`RunNotFound` or :class:`RunFinished`; then nothing was written.
    """
    check_name(name)
    payload = dumps(data)  # NotJSONError before anything is written
    size = len(payload.encode())
    if max_bytes is not None and size > max_bytes:
        raise BadInput(f"signal data is {size} bytes of JSON; at most {max_bytes} (STEPLOG_INLINE_LIMIT) are taken")
    if key is not None and not (0 < len(key) <= MAX_NAME):
        raise BadInput(f"a signal key must be 1 to {MAX_NAME} characters, got {len(key)}")
    key = key or uuid.uuid4().hex
    # At the driver level: a message to a session is on its turn's latency path (checkpoint.db.transaction).
    with transaction(engine) as run_sql:
        run = run_sql(D["lock_run"], dict(run_id=run_id))
        if run is None:
            raise RunNotFound(run_id)
        status, workflow = run[0], run[1]
        if workflows is not None and workflow not in workflows:
            raise BadInput(f"run {run_id} is a {workflow!r} run, not a {kind or 'run of ' + ', '.join(workflows)}")
        stored = None
        if status not in TERMINAL_STATUSES:
            stored = run_sql(D["store_signal"], dict(run_id=run_id, key=key, name=name, data=payload, sender=sender))
        if stored is None:
            # A key sent before is a duplicate whatever became of the run since (it may have finished).
            earlier = run_sql(D["get_signal"], dict(run_id=run_id, key=key))
            if earlier is not None:
                return SignalOutcome("duplicate", key, delivered_seq=earlier[1])
            raise RunFinished(run_id, status)
        woken = run_sql(D["wake_on_signal"], dict(run_id=run_id, owner=owner, worker=sender, pid=os.getpid()))
    if woken is None:
        return SignalOutcome("buffered", key)
    return SignalOutcome("delivered", key, Dispatch(woken[0], woken[1], woken[2], woken[3]), woken[1] - 1)
