"""What a workflow is: a name, a pydantic input model, an initial state, and a step function.

A step is a pure function of the checkpoint (input + state) plus whatever external calls it makes.
It returns :class:`Continue` (the next state), :class:`Finish` (the result), or waits: :class:`Wait`
(for a signal, maybe with a timeout) or :class:`Sleep` (until a time). A waiting run holds no worker,
lease, broker message or Redis key: only its Postgres rows. The step after a wait finds what woke it in
``ctx.wake``. Nothing else survives between steps: the next step may run in another process on
another machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tasks.concurrency import Concurrency
from tasks.errors import (  # part of the workflow author's API
    FailRun,
    InvalidInput,
    WorkflowError,
)

__all__ = [
    "Concurrency", "Continue", "FailRun", "Finish", "InvalidInput", "Sleep", "StepContext", "Wait", "Wake", "Workflow", "WorkflowError",
]


@dataclass(frozen=True)
class Continue:
    """Go on: ``state`` is the next checkpoint; ``payload`` is what the event shows of this step."""

    state: dict[str, Any]
    payload: dict[str, Any] = field(default_factory=dict)
    event: str = "step"
    writes: Sequence[Callable] = ()  # run inside the commit's transaction (tool results)


@dataclass(frozen=True)
class Finish:
    """The run is done with ``result``."""

    result: dict[str, Any]
    state: dict[str, Any] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    writes: Sequence[Callable] = ()


@dataclass(frozen=True)
class Wait:
    """Park the run until signal ``signal`` arrives (one sent earlier counts), or ``timeout`` seconds
    pass (None: no timeout). ``state`` is the checkpoint to resume from (None: unchanged).

    ``event`` is the type of the event that records the wait (a session's turn ends with ``reply``).
    ``after``: best-effort calls made once the commit succeeded (hot-tier writes, doorbells); never
    made when the commit was fenced off, and a failing one is logged, not retried."""

    signal: str
    timeout: float | None = None
    state: dict[str, Any] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    writes: Sequence[Callable] = ()
    event: str = "waiting"
    after: Sequence[Callable[[], Any]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.signal, str) or not self.signal.strip():
            raise ValueError(f"Wait needs a signal name, got {self.signal!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"Wait timeout must be a positive number of seconds or None, got {self.timeout!r}")


@dataclass(frozen=True)
class Sleep:
    """Park the run for ``seconds``, or until ``until`` (an aware datetime); exactly one of them."""

    seconds: float | None = None
    until: datetime | None = None
    state: dict[str, Any] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    writes: Sequence[Callable] = ()

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("Sleep takes exactly one of seconds= or until=")
        if self.seconds is not None and not self.seconds >= 0:
            raise ValueError(f"Sleep seconds must not be negative, got {self.seconds!r}")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("Sleep until= must be a timezone-aware datetime")

    def due(self, now: datetime) -> datetime:
        return self.until if self.until is not None else now + timedelta(seconds=self.seconds or 0)


@dataclass(frozen=True)
class Wake:
    """What ended the wait the current step follows.

    ``kind``: ``signal`` (``name``, ``data``, ``sender``, ``key``, ``at``: when it was sent),
    ``timeout`` (the wait for signal ``name`` timed out) or ``timer`` (a sleep ended). ``late_seconds``:
    how long after its due time a timer fired (a fleet that was down fires it when it is back).
    """

    kind: str
    name: str | None = None
    data: Any = None
    sender: str | None = None
    key: str | None = None
    at: str | None = None
    late_seconds: float | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any] | None) -> Wake | None:
        if not event:
            return None
        p = event.get("payload") or {}
        if event["type"] == "signal":
            return cls("signal", p.get("name"), p.get("data"), p.get("sender"), p.get("key"), p.get("sent_at"))
        kind = "timeout" if event["type"] == "timed_out" else "timer"
        return cls(kind, p.get("signal"), at=p.get("due_at"), late_seconds=p.get("late_seconds"))


@dataclass(frozen=True)
class StepContext:
    """Everything a step may read: the checkpoint and who is running it. No process memory."""

    run_id: str
    seq: int
    attempt: int
    input: BaseModel
    state: dict[str, Any]
    worker: str
    owner: str = ""  # this process's liveness id (the lease holder), e.g. for the tool ledger
    services: Any = None  # per-process handles a workflow needs (tasks.services.StepServices)
    history: Any = None  # checkpoint.context.RunContext, for workflows declared with history=True
    wake: Wake | None = None  # what ended the wait this step follows; None when it follows no wait


@dataclass(frozen=True)
class Workflow:
    name: str
    input_model: type[BaseModel]
    start: Callable[[BaseModel], dict[str, Any]]
    step: Callable[[StepContext], Continue | Finish | Wait | Sleep]
    time_limit: float | None = None  # seconds one step may take; None: STEPLOG_STEP_TIME_LIMIT
    describe: Callable[[dict[str, Any]], str] | None = None  # what the next step will do, for Flower
    # Checks an input against the world before a run is created (e.g. that a corpus exists);
    # raises WorkflowError naming the problem. Gets the validated input and the Postgres engine.
    precheck: Callable[[BaseModel, Any], None] | None = None
    # Steps get ctx.history: the run's reconstructed context (latest checkpoint, latest summary, the
    # events after it within the token budget), from the Redis hot cache when it is current.
    history: bool = False
    # A session: a long-lived run that answers each `message` signal sent to it (`steplog say`, `chat`).
    session: bool = False
    # At most `limit` steps of runs with the same key value in flight (tasks.concurrency.Concurrency).
    concurrency: Concurrency | None = None

