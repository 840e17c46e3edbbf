"""A step's fan-out, between the workflow API (:class:`~tasks.workflow.Spawn`, ``Map``) and Postgres
(:mod:`checkpoint.fanout`): the children checked and planned before anything is written, and their
outcomes read back for the join."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint import fanout
from checkpoint.artifacts import is_pointer_json, resolve
from tasks.errors import FailRun, WorkflowError
from tasks.workflow import TOOL_CALL, ChildResult, Joined, Spawn
from tasks.workflow_registry import WorkflowRegistry

#: The setting that caps a fan-out (named in the error a bigger one gets).
MAX_CHILDREN_SETTING = "STEPLOG_MAX_CHILDREN"
#: Children dispatched at once by a fan-out with no max_parallel: enough to keep any fleet busy (each
#: child's end dispatches the next), few enough that the broker's queue stays short. Thousands of
#: queued steps would wait past STEPLOG_REDISPATCH_SECONDS and be published again as lost.
UNBOUNDED_WINDOW = 256


@dataclass(frozen=True)
class Plan:
    """A fan-out ready to commit: its children, the window and the join's rule."""

    run_id: str
    seq: int
    children: tuple[fanout.NewChild, ...]
    window: int
    on_error: str
    quorum: int | None
    max_parallel: int | None = None  # as the step asked (None: no bound; ``window`` is then UNBOUNDED_WINDOW)

    def write(self, owner: str, worker: str) -> Callable[[Connection], None]:
        return fanout.spawn(self.run_id, self.seq, self.children, window=self.window, on_error=self.on_error,
                            quorum=self.quorum, owner=owner, worker=worker)

    def first(self) -> list[tuple[str, str]]:
        """(run id, workflow) of the children dispatched by the commit itself."""
        return [(fanout.child_id(self.run_id, self.seq, i), c.workflow) for i, c in enumerate(self.children[: self.window])]

    def payload(self) -> dict[str, Any]:
        """What the `waiting` event shows of the fan-out (not the children: they are rows of their own)."""
        return {"children": len(self.children), "max_parallel": self.max_parallel,
                "on_error": self.on_error + (f":{self.quorum}" if self.quorum else "")}


def plan(spawn: Spawn, registry: WorkflowRegistry, *, run_id: str, seq: int, max_children: int,
         parent_workflow: str, tool_known: Callable[[str], bool]) -> Plan:
    """Check every child before anything is written; raises :class:`FailRun` naming the problem (too
    many children, an unknown workflow or tool, an input that does not fit)."""
    n = len(spawn.children)
    if n > max_children:
        raise FailRun(f"a fan-out of {n} children is over the limit of {max_children} ({MAX_CHILDREN_SETTING}); "
                      "nothing was spawned")
    made = []
    for i, child in enumerate(spawn.children):
        data = child.input
        if child.workflow == TOOL_CALL:
            if not tool_known(data["tool"]):
                raise FailRun(f"Map over unknown tool {data['tool']!r}; nothing was spawned")
            data = {**data, "workflow": parent_workflow}
        try:
            wf, valid = registry.validate(child.workflow, data)
        except WorkflowError as exc:
            raise FailRun(f"child {i} of the fan-out: {exc}; nothing was spawned") from None
        made.append(fanout.NewChild(wf.name, valid, wf.start(wf.input_model.model_validate(valid))))
    mode, k = spawn.mode
    window = min(spawn.max_parallel or UNBOUNDED_WINDOW, n)
    return Plan(run_id, seq, tuple(made), window, mode, k, spawn.max_parallel)


def joined(engine: Engine, run_id: str, seq: int, *, artifacts: Any = None) -> Joined:
    """The outcomes of step ``seq``'s children, in item order (a child still stopping after an early
    join counts as cancelled)."""
    fan, rows = fanout.join(engine, run_id, seq)
    results = []
    for r in rows:
        status = r["status"]
        if status not in ("succeeded", "failed", "cancelled"):
            status = "cancelled"
        result = r["result"]
        if artifacts is not None and is_pointer_json(result):
            result = resolve(result, store=artifacts)
        results.append(ChildResult(r["child_index"], r["run_id"], status, result if status == "succeeded" else None,
                                   r["error"] if status == "failed" else None))
    return Joined(fan["on_error"], fan["quorum"], tuple(results))
