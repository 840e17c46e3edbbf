"""What a workflow is: a name, a pydantic input model, an initial state, and a step function.

A step is a pure function of the checkpoint (input + state) plus whatever external calls it makes.
It returns :class:`Continue` (the next state) or :class:`Finish` (the result). Nothing else survives
between steps: the next step may run in another process on another machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tasks.errors import FailRun, InvalidInput, WorkflowError  # part of the workflow author's API

__all__ = ["Continue", "FailRun", "Finish", "InvalidInput", "StepContext", "Workflow", "WorkflowError"]


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


@dataclass(frozen=True)
class Workflow:
    name: str
    input_model: type[BaseModel]
    start: Callable[[BaseModel], dict[str, Any]]
    step: Callable[[StepContext], Continue | Finish]
    time_limit: float | None = None  # seconds one step may take; None: STEPLOG_STEP_TIME_LIMIT
    describe: Callable[[dict[str, Any]], str] | None = None  # what the next step will do, for Flower
    # Checks an input against the world before a run is created (e.g. that a corpus exists);
    # raises WorkflowError naming the problem. Gets the validated input and the Postgres engine.
    precheck: Callable[[BaseModel, Any], None] | None = None
    # Steps get ctx.history: the run's reconstructed context (latest checkpoint, latest summary, the
    # events after it within the token budget), from the Redis hot cache when it is current.
    history: bool = False

