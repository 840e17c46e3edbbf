"""Workflows only the tests use, loaded by workers through STEPLOG_WORKFLOW_MODULES=tests.workflows."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tasks.workflow import Continue, Finish, StepContext, Workflow


class Nothing(BaseModel):
    pass


def _always_fails(ctx: StepContext):
    raise ValueError(f"step {ctx.seq} always fails (attempt {ctx.attempt})")


class SlowInput(BaseModel):
    sleep: float


def _slow_once(ctx: StepContext):
    # Overruns its 1 s limit on the first attempt only, then finishes.
    if ctx.attempt == 1:
        time.sleep(ctx.input.sleep)
    return Finish({"attempt": ctx.attempt})


WORKFLOWS = [
    Workflow("always_fails", Nothing, lambda inp: {}, _always_fails),
    Workflow("slow_once", SlowInput, lambda inp: {}, _slow_once, time_limit=1.0),
]


def _kills_its_process(ctx: StepContext):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


WORKFLOWS.append(Workflow("kills_its_process", Nothing, lambda inp: {}, _kills_its_process))
