"""`countdown`: the built-in workflow for tests and benchmarks. Each step sleeps, then decrements."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from tasks.workflow import Continue, Finish, StepContext, Workflow


class CountdownInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(ge=0, le=1_000_000, description="How many steps to run.")
    sleep: float = Field(0.0, ge=0, le=3600, description="Seconds each step sleeps.")
    tenant: str | None = Field(
        None, min_length=1, max_length=100,
        description="Whose run this is, for concurrency limits (STEPLOG_CONCURRENCY keyed on input.tenant).",
    )

    @model_serializer(mode="wrap")
    def _without_no_tenant(self, handler):  # a run's input shows a tenant only when it has one
        data = handler(self)
        if data.get("tenant") is None:
            data.pop("tenant", None)
        return data


def start(inp: CountdownInput) -> dict:
    return {"remaining": inp.steps}


def step(ctx: StepContext) -> Continue | Finish:
    inp: CountdownInput = ctx.input  # type: ignore[assignment]
    if inp.sleep:
        time.sleep(inp.sleep)
    remaining = ctx.state["remaining"] - 1
    if remaining <= 0:
        return Finish({"steps_run": inp.steps}, state={"remaining": 0})
    return Continue({"remaining": remaining}, payload={"remaining": remaining})


WORKFLOW = Workflow("countdown", CountdownInput, start, step)
