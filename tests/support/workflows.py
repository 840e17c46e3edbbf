"""Workflows only the tests use, loaded by workers through STEPLOG_WORKFLOW_MODULES=tests.support.workflows."""

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


class NotifyAfterInput(BaseModel):
    url: str
    steps: int = 4
    sleep: float = 0.0


def _notify_after(ctx: StepContext):
    """Counts down; half way it notifies a webhook once, through the tool runtime."""
    inp = ctx.input
    time.sleep(inp.sleep)
    remaining = ctx.state["remaining"] - 1
    if remaining <= 0:
        return Finish({"steps_run": inp.steps}, state={"remaining": 0})
    if remaining == inp.steps // 2:
        tools = ctx.services.tool_runtime(ctx)
        out = tools.call("notify", {"url": inp.url, "payload": {"run_id": ctx.run_id}})
        return Continue({"remaining": remaining}, payload={"notify": out.as_message()}, writes=tools.records())
    return Continue({"remaining": remaining})


WORKFLOWS.append(
    Workflow("notify_after", NotifyAfterInput, lambda inp: {"remaining": inp.steps}, _notify_after)
)


class BigFetchInput(BaseModel):
    url: str


def _big_fetch(ctx: StepContext):
    """Step 1 fetches a large page into the checkpoint; step 2 proves it arrived intact."""
    import hashlib

    if ctx.state.get("page"):
        text = ctx.state["page"]["text"]
        return Finish({"sha256": hashlib.sha256(text.encode()).hexdigest(), "size": len(text)})
    tools = ctx.services.tool_runtime(ctx)
    out = tools.call("fetch_url", {"url": ctx.input.url})
    return Continue({"page": out.result}, payload={"status": out.status}, writes=tools.records())


WORKFLOWS.append(Workflow("big_fetch", BigFetchInput, lambda inp: {}, _big_fetch))


class JournalInput(BaseModel):
    entries: int


def _journal(ctx: StepContext):
    """Writes one entry per step and summarizes its history as it grows, through ctx.history."""
    import hashlib

    from checkpoint.summary import condense, pending_events, should_summarize, summary_payload, summary_write

    h, s = ctx.history, ctx.services
    seen = {"tokens": h.tokens, "budget": h.budget_tokens, "summary_seq": h.summary_seq, "tail": len(h.tail)}
    written = ctx.state["written"]
    if written >= ctx.input.entries:
        view = (h.summary or "") + "|" + "|".join(str(e["payload"].get("entry")) for e in h.tail)
        return Finish({"entries": written, "digest": hashlib.sha256(view.encode()).hexdigest()})
    if should_summarize(h, every_steps=s.summary_every_steps, budget_tokens=s.budget_tokens):
        text = condense(pending_events(s.engine, h), h.summary, max_tokens=s.budget_tokens // 4)
        return Continue(ctx.state, payload=summary_payload(text, seen=seen), event="summary",
                        writes=[summary_write(ctx.run_id, ctx.seq, text)])
    entry = f"entry {written + 1}: the journal notes step {ctx.seq} of a long run"
    return Continue({"written": written + 1}, payload={"entry": entry, "seen": seen})


WORKFLOWS.append(Workflow("journal", JournalInput, lambda inp: {"written": 0}, _journal, history=True))

# Workflows that wait for a signal or a time (the durable-waits tests).
from tests.support.wait_workflows import WORKFLOWS as _WAITING  # noqa: E402

WORKFLOWS.extend(_WAITING)

# Chat agents (the session tests, scripts/bench_sessions.py).
from tests.support.chat_agents import WORKFLOWS as _CHAT  # noqa: E402

WORKFLOWS.extend(_CHAT)


class NotifyEachInput(BaseModel):
    url: str
    n: int = 3


def _notify_each(ctx: StepContext):
    """A Map over the irreversible `notify` tool: one webhook call per item, each a child step."""
    from tasks.workflow import Map

    if ctx.joined is None:
        items = [{"url": ctx.input.url, "payload": {"item": i}} for i in range(ctx.input.n)]
        return Map(items, tool="notify", max_parallel=2)
    return Finish({"keys": [r.result["key"] for r in ctx.joined.results], "ok": [r.ok for r in ctx.joined.results]})


WORKFLOWS.append(Workflow("notify_each", NotifyEachInput, lambda inp: {}, _notify_each))
