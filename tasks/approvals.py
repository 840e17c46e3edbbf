"""Human approval of tool calls: a step asks by waiting, a person answers with a signal.

A step about to call a tool that needs approval (declared on the tool, ``STEPLOG_APPROVE_TOOLS``, or a
run's own list) calls :func:`gate` instead. It returns a :class:`~tasks.workflow.Wait` for the
``approval`` signal, whose ``waiting`` event shows the tool, its exact arguments and the idempotency
key the call will use; the request rides in the checkpoint. The step after the wake calls :func:`gate`
again and gets the :class:`Verdict`: approved, the caller runs the call with that same key (a tool
runtime at the asking step's seq); rejected, or timed out, it tells the agent and goes on without it.

Operators answer with :func:`decide` (``steplog approve`` / ``steplog reject``): one signal keyed by the
waiting step, so approving twice delivers once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from checkpoint import runs, signals
from checkpoint.errors import SteplogError
from checkpoint.queries import EVENT_LOG, load
from checkpoint.signals import SignalOutcome
from tasks.workflow import StepContext, Wait

SIGNAL = "approval"
STATE_KEY = "approval"  # where the pending request rides in a workflow's state

Q = load(EVENT_LOG)


class NotAwaitingApproval(SteplogError):
    """The run waits for no approval now (it waits for something else, or for nothing)."""


@dataclass(frozen=True)
class Verdict:
    """A person's answer to the call asked for at step ``seq`` (or its timeout, which rejects it)."""

    approved: bool
    tool: str
    args: Any
    key: str
    seq: int
    by: str | None = None
    text: str | None = None  # the approver's note, or the reason given for a rejection
    timed_out: bool = False

    def refusal(self) -> str:
        """The rejection as the agent is told it."""
        if self.timed_out:
            return f"the call to {self.tool} was not approved in time; it was not made"
        why = f": {self.text}" if self.text else ""
        return f"the call to {self.tool} was rejected by {self.by or 'an operator'}{why}; it was not made"


def gate(
    ctx: StepContext, state: dict[str, Any], tool: str, args: Any, *, also: Iterable[str] = ()
) -> Wait | Verdict | None:
    """Whether the step may call ``tool`` with ``args`` now: None (no approval needed: call it), a
    :class:`Wait` to commit (approval asked; ``state`` now carries the request), or the
    :class:`Verdict` on the request this step's wait was for (``state`` no longer carries it)."""
    asked = state.get(STATE_KEY)
    wake = ctx.wake
    if asked and wake is not None and wake.name == SIGNAL and asked["tool"] == tool:
        state[STATE_KEY] = None
        data = wake.data if isinstance(wake.data, dict) else {}
        approved = wake.kind == "signal" and data.get("approved") is True
        return Verdict(
            approved, tool, asked["args"], asked["key"], asked["seq"], by=data.get("by") or wake.sender,
            text=data.get("note") if approved else data.get("reason"), timed_out=wake.kind == "timeout",
        )
    runtime = ctx.services.tool_runtime(ctx)
    if not runtime.requires_approval(tool, also):
        return None
    key = runtime.key_for(tool, args)
    if key is None:
        return None  # a call the runtime refuses anyway: nothing to approve
    state[STATE_KEY] = {"tool": tool, "args": args, "key": key, "seq": ctx.seq}
    return Wait(
        SIGNAL, timeout=runtime.config.approval_timeout_seconds, state=state,
        payload={"kind": "approval", "approval": {"tool": tool, "args": args, "key": key}},
    )


def decide(engine: Engine, run_id: str, *, approved: bool, by: str, text: str | None = None,
           max_bytes: int | None = None) -> SignalOutcome:
    """Approve or reject the call run ``run_id`` waits on, as ``by``. Raises :class:`RunNotFound`, or
    :class:`NotAwaitingApproval` saying what the run waits for; repeating the same answer is harmless
    (outcome ``duplicate``)."""
    run = runs.get(engine, run_id)  # RunNotFound
    word = "approved" if approved else "rejected"
    if run["status"] == "waiting" and run["wait_signal"] == SIGNAL:
        data = {"approved": approved, "by": by, ("note" if approved else "reason"): text}
        return signals.send(engine, run_id, SIGNAL, data, key=f"{SIGNAL}:{run['next_seq'] - 1}", sender=by,
                            max_bytes=max_bytes)
    last = _last_answer(engine, run_id)
    if last is not None and last["approved"] is approved:
        return SignalOutcome("duplicate", last["key"], delivered_seq=last["seq"])
    if run["status"] == "waiting":
        what = f"signal {run['wait_signal']!r}" if run["wait_signal"] else "a timer"
        raise NotAwaitingApproval(f"run {run_id} waits for {what}, not for an approval; nothing {word}")
    raise NotAwaitingApproval(f"run {run_id} is {run['status']} and waits for no approval; nothing {word}")


def _last_answer(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(Q["last_signal"], dict(run_id=run_id, name=SIGNAL)).one_or_none()
    if row is None or not isinstance(row.data, dict):
        return None
    return {"approved": row.data.get("approved") is True, "key": row.key, "seq": row.consumed_seq}
