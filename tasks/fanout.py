"""`fanout`: the built-in fan-out workflow for tests, benchmarks and operators (like `countdown`).

Its first step maps over ``children`` items: each child (`fanout_child`) sleeps ``sleep`` seconds in its
one step, and those at the ``fail`` indices fail permanently. The join (the second step) finishes with
``{"succeeded", "failed", "cancelled", "results"}``, results in item order; under ``on_error="all"`` a
failed child fails the run instead.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.workflow import FailRun, Finish, Map, StepContext, Workflow, _on_error


class FanoutInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    children: int = Field(ge=1, le=1_000_000, description="How many children (over STEPLOG_MAX_CHILDREN fails the run).")
    max_parallel: int | None = Field(None, ge=1, description="Most children in flight at once (default: all).")
    sleep: float = Field(0.0, ge=0, le=3600, description="Seconds each child's step sleeps.")
    fail: list[int] = Field(default_factory=list, description="Indices of the children that fail permanently.")
    on_error: str = Field("all", description='"all", "settled" or "quorum:K".')

    @field_validator("on_error")
    @classmethod
    def _rule(cls, v: str) -> str:
        _on_error(v)
        return v


class ChildInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    sleep: float = Field(0.0, ge=0, le=3600)
    fail: bool = False


def start(inp: FanoutInput) -> dict:
    return {"phase": "map"}


def step(ctx: StepContext) -> Map | Finish:
    inp: FanoutInput = ctx.input  # type: ignore[assignment]
    joined = ctx.joined
    if joined is None:
        failing = set(inp.fail)
        items = [{"index": i, "sleep": inp.sleep, "fail": i in failing} for i in range(inp.children)]
        return Map(items, workflow="fanout_child", max_parallel=inp.max_parallel, on_error=inp.on_error,
                   state={"phase": "join"})
    joined.values()  # under "all", a failed child fails the run here, naming it
    results = [{"index": r.index, "run_id": r.run_id, "status": r.status, "result": r.result,
                "error": None if r.error is None else r.error.get("message")} for r in joined.results]
    return Finish({"succeeded": joined.succeeded, "failed": joined.failed, "cancelled": joined.cancelled,
                   "results": results}, state={"phase": "done"})


def child_step(ctx: StepContext) -> Finish:
    inp: ChildInput = ctx.input  # type: ignore[assignment]
    if inp.sleep:
        time.sleep(inp.sleep)
    if inp.fail:
        raise FailRun(f"child {inp.index} fails on purpose (its index is in `fail`)")
    return Finish({"index": inp.index})


WORKFLOW = Workflow("fanout", FanoutInput, start, step, describe=lambda s: s.get("phase", "map"))
CHILD = Workflow("fanout_child", ChildInput, lambda inp: {}, child_step)
