"""Workflows that wait, for the tests of durable waits: for a signal (with or without a timeout), or
for a time. Each ends with what woke it, so a test reads the outcome from the run's result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasks.workflow import Continue, Finish, Sleep, StepContext, Wait, Workflow


class WaitInput(BaseModel):
    signal: str = "go"
    timeout: float | None = None
    before: int = 0  # ordinary steps before the wait


def _woke(ctx: StepContext) -> dict[str, Any]:
    w = ctx.wake
    return {"kind": w.kind, "name": w.name, "data": w.data, "sender": w.sender, "key": w.key,
            "late_seconds": w.late_seconds, "resumed_at_seq": ctx.seq}


def _wait_step(ctx: StepContext) -> Continue | Finish | Wait:
    done = ctx.state["done"]
    if done < ctx.input.before:
        return Continue({"done": done + 1, "waited": False})
    if not ctx.state["waited"]:
        return Wait(ctx.input.signal, timeout=ctx.input.timeout, state={"done": done, "waited": True},
                    payload={"asked_at_step": ctx.seq})
    return Finish(_woke(ctx))


WAITER = Workflow("waiter", WaitInput, lambda i: {"done": 0, "waited": False}, _wait_step)


class SleepInput(BaseModel):
    seconds: float = 2.0


def _sleep_step(ctx: StepContext) -> Finish | Sleep:
    if not ctx.state["slept"]:
        return Sleep(seconds=ctx.input.seconds, state={"slept": True})
    return Finish(_woke(ctx))


SLEEPER = Workflow("sleeper", SleepInput, lambda i: {"slept": False}, _sleep_step)

WORKFLOWS = [WAITER, SLEEPER]
