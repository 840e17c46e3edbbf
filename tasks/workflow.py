"""What a workflow is: a name, a pydantic input model, an initial state, and a step function.

A step is a pure function of the checkpoint (input + state) plus whatever external calls it makes.
It returns :class:`Continue` (the next state), :class:`Finish` (the result), or waits: :class:`Wait`
(for a signal, maybe with a timeout) or :class:`Sleep` (until a time), or fans out: :class:`Map` (one
child run per item, of a workflow or a tool) or :class:`Spawn` (child runs of any workflows), then waits
for them. A waiting run holds no worker, lease, broker message or Redis key: only its Postgres rows.
The step after a wait finds what woke it in ``ctx.wake``; after a fan-out, ``ctx.joined`` holds the
children's outcomes in item order. Nothing else survives between steps: the next step may run in
another process on another machine.
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
    "Child", "ChildFailed", "ChildResult", "Concurrency", "Continue", "FailRun", "Finish", "InvalidInput", "Joined",
    "Map", "Sleep", "Spawn", "StepContext", "Wait", "Wake", "Workflow", "WorkflowError",
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


def _on_error(value: str) -> tuple[str, int | None]:
    """``all`` | ``settled`` | ``quorum:K`` as (mode, K); ValueError naming the problem."""
    if value in ("all", "settled"):
        return value, None
    mode, _, k = str(value).partition(":")
    if mode == "quorum" and k.isdigit() and int(k) >= 1:
        return "quorum", int(k)
    raise ValueError(f'on_error must be "all", "settled" or "quorum:K" with K >= 1, got {value!r}')


@dataclass(frozen=True)
class Child:
    """One child run of a :class:`Spawn`: a workflow and its input."""

    workflow: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Spawn:
    """Start ``children`` (ordinary runs, each recording this run as its parent and its index) and park
    until they are done: the next step (the join) finds their outcomes, in order, in ``ctx.joined``.

    ``max_parallel``: most children in flight at once (None: all); the next starts as one ends.
    ``on_error``: ``"all"`` (the first failure ends the wait; ``ctx.joined.values()`` raises),
    ``"settled"`` (wait for every outcome), or ``"quorum:K"`` (go on after K successes; the rest are
    cancelled). A cancelled child counts as a failure. ``state``: the checkpoint to resume from (None:
    unchanged). More children than ``STEPLOG_MAX_CHILDREN`` fail the step, and nothing is spawned."""

    children: Sequence[Child]
    max_parallel: int | None = None
    on_error: str = "all"
    state: dict[str, Any] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    writes: Sequence[Callable] = ()

    def __post_init__(self) -> None:
        mode, k = _on_error(self.on_error)
        if not self.children:
            raise ValueError("a fan-out needs at least one child (with nothing to do, return Continue)")
        if self.max_parallel is not None and (isinstance(self.max_parallel, bool) or not isinstance(self.max_parallel, int)
                                              or self.max_parallel < 1):
            raise ValueError(f"max_parallel must be a positive integer or None, got {self.max_parallel!r}")
        if k is not None and k > len(self.children):
            raise ValueError(f"on_error {self.on_error!r} asks for more successes than there are children ({len(self.children)})")

    @property
    def mode(self) -> tuple[str, int | None]:
        return _on_error(self.on_error)


@dataclass(frozen=True, init=False)
class Map(Spawn):
    """One child per item: ``workflow=`` (each item is a child's input) or ``tool=`` (each item is the
    arguments of one call of that tool, made in a child step with its own idempotency key, so a
    retried parent never repeats a call). Otherwise as :class:`Spawn`."""

    workflow: str | None = None
    tool: str | None = None

    def __init__(self, items: Sequence[Any], *, workflow: str | None = None, tool: Any = None,
                 max_parallel: int | None = None, on_error: str = "all", state: dict[str, Any] | None = None,
                 payload: dict[str, Any] | None = None, writes: Sequence[Callable] = ()) -> None:
        if (workflow is None) == (tool is None):
            raise ValueError("Map takes exactly one of workflow= or tool=")
        tool_name = getattr(tool, "name", tool)
        if tool is not None and not isinstance(tool_name, str):
            raise ValueError(f"Map tool= is a tool's name or its @tool declaration, not {tool!r}")
        if isinstance(items, (str, bytes, dict)):
            raise ValueError("Map items must be a list of inputs")
        if tool is not None:
            children = [Child(TOOL_CALL, {"tool": tool_name, "args": item}) for item in items]
        else:
            children = [Child(workflow, item) for item in items]
        object.__setattr__(self, "workflow", workflow)
        object.__setattr__(self, "tool", tool_name)
        object.__setattr__(self, "children", tuple(children))
        object.__setattr__(self, "max_parallel", max_parallel)
        object.__setattr__(self, "on_error", on_error)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "payload", dict(payload or {}))
        object.__setattr__(self, "writes", tuple(writes))
        self.__post_init__()


#: The built-in workflow each child of a ``Map(tool=...)`` runs (tasks/tool_call.py).
TOOL_CALL = "tool_call"


class ChildFailed(FailRun):
    """A fan-out under ``on_error="all"`` had a child fail (or be cancelled): the join fails."""


@dataclass(frozen=True)
class ChildResult:
    """One child's outcome: ``status`` succeeded, failed or cancelled; its ``result`` or ``error``."""

    index: int
    run_id: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class Joined:
    """The children of the fan-out the current step follows, in item order."""

    on_error: str
    quorum: int | None
    results: tuple[ChildResult, ...]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def succeeded(self) -> int:
        return self.count("succeeded")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def cancelled(self) -> int:
        return self.count("cancelled")

    @property
    def ok(self) -> bool:
        """Whether the join's rule was met: no failure (all), K successes (quorum), always (settled)."""
        if self.on_error == "settled":
            return True
        if self.on_error == "quorum":
            return self.succeeded >= (self.quorum or 0)
        return self.succeeded == len(self.results)

    def first_failure(self) -> ChildResult | None:
        """The first child that failed, else the first cancelled (a sibling stopped by the join)."""
        return next((r for r in self.results if r.status == "failed"), None) or next(
            (r for r in self.results if not r.ok), None)

    def values(self) -> list[Any]:
        """The results of the children that succeeded, in item order; raises :class:`ChildFailed`
        (ending the run failed) when the join's rule was not met."""
        if not self.ok:
            bad = self.first_failure()
            what = (bad.error or {}).get("message") if bad and bad.error else (bad.status if bad else "")
            raise ChildFailed(
                f"fan-out ({self.on_error}{':' + str(self.quorum) if self.quorum else ''}) not met: "
                f"{self.succeeded} of {len(self.results)} children succeeded; "
                + (f"child {bad.index} ({bad.run_id}) {bad.status}: {what}" if bad else "")
            )
        return [r.result for r in self.results if r.ok]


@dataclass(frozen=True)
class Wake:
    """What ended the wait the current step follows.

    ``kind``: ``signal`` (``name``, ``data``, ``sender``, ``key``, ``at``: when it was sent),
    ``timeout`` (the wait for signal ``name`` timed out), ``timer`` (a sleep ended) or ``joined`` (the
    children of a fan-out are done: ``data`` is the :class:`Joined`, also ``ctx.joined``). ``late_seconds``:
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
        if event["type"] == "joined":
            return cls("joined", data=p)  # the step runner replaces data with the children's outcomes
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

    @property
    def joined(self) -> Joined | None:
        """After a fan-out: its children's outcomes in item order; None otherwise."""
        return self.wake.data if self.wake is not None and self.wake.kind == "joined" else None


@dataclass(frozen=True)
class Workflow:
    name: str
    input_model: type[BaseModel]
    start: Callable[[BaseModel], dict[str, Any]]
    step: Callable[[StepContext], Continue | Finish | Wait | Sleep | Spawn]
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
    # @tool declarations a Map(tool=...) of this workflow's steps may call besides the built-in tools.
    tools: tuple = ()

