"""How an agent runs: reason -> tool -> reason -> ... -> its output calls -> done, one step per task.

The checkpoint (the state) is all a step knows: the step budget used, the decision waiting to be
carried out, the most recent observations (older ones folded into a summary line each), the notes
kept, the answer once there is one, and token usage. It stays bounded however long the run gets:
large tool results are stored as artifacts and referenced from the state by pointer.

- A reasoning step asks the reasoner once. Its decision is recorded in the tool ledger the moment it
  exists (:mod:`tasks.agents.decisions`) and in the checkpoint when the step commits, before any tool
  runs: a retried step reads it back instead of asking again. Unusable answers are corrections, a
  bounded number in a row (``services.max_corrections``), then the run fails.
- A tool step makes exactly one keyed, ledgered call (:class:`tools.runtime.ToolRuntime`), unless the
  tool needs approval: then the run parks (:func:`tasks.approvals.gate`) and the step after the
  answer makes the call with the key it was approved with, or tells the agent it was rejected.
- After the answer (or when the step budget is spent), the agent's output calls run, one step each,
  gated the same way (research: ``publish_report``, then ``notify``), and the run finishes with the
  agent's output.

The tool runtime of an agent's steps sees the agent's tools (its own ``@tool`` declarations and the
built-ins it names) and nothing else: this module hands each step a ``ctx`` whose ``services.tools``
is that registry, so :func:`tasks.approvals.gate` and ``services.tool_runtime`` find them, and other
workflows never see them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checkpoint.artifacts import is_pointer_json, offload, resolve
from tasks import approvals
from tasks.agents import decisions, session
from tasks.reasoning.base import FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.errors import InvalidDecision
from tasks.reasoning.toolspec import ToolSpec, tool_specs
from tasks.workflow import Continue, FailRun, Finish, Map, StepContext, Wait
from tools.declaration import Tool
from tools.registry import ToolRegistry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tools.runtime import ToolOutcome

REASON, TOOL = "reason", "tool"
#: Calls of one decision made at once (a Map over the tool) keep at most this many in flight.
PARALLEL_CALLS = 3


@dataclass(frozen=True)
class AgentContext(ResearchContext):
    """What a reasoner reads for an agent's run: the research context (``question`` is the task), plus
    the agent's instructions and the tools it may call."""

    instructions: str = ""
    tools: tuple[ToolSpec, ...] = ()
    #: A session's recent turns, oldest first (``{"turn", "message", "reply", "citations", ...}``), and
    #: a line for each older turn: what the conversation so far says. Empty outside sessions.
    conversation: tuple[dict[str, Any], ...] = ()
    memory: tuple[str, ...] = ()
    chat: bool = False  # a turn of a session: ``question`` is the user's latest message


@dataclass
class AgentRun:
    """What an agent's hooks (output calls, ``remember``, ``out_of_steps``) see of the current step:
    its context and the state being built for the next checkpoint (change it in place)."""

    ctx: StepContext
    state: dict[str, Any]
    agent: Any

    @property
    def input(self) -> BaseModel:
        return self.ctx.input

    @property
    def answer(self) -> dict[str, Any]:
        """The agent's answer: ``{"markdown", "citations", "truncated"}`` (None before it answered)."""
        return self.state["answer"]

    def context(self, **overrides: Any) -> AgentContext:
        """The reasoner's view of this run (the context a reasoning step now would get)."""
        return dataclasses.replace(self.agent.loop.context(self.ctx, self.state), **overrides)


@dataclass(frozen=True)
class Then:
    """A call the agent makes itself once it has its answer (research: publish the report, then
    notify), one step of its own, behind the approval gate like any call.

    ``args(run)``: the call's arguments. ``when(run)``: whether to make it at all (None: always).
    ``done(run, outcome)``: after the call (raise to retry the step). ``rejected(run, verdict)``: after
    a person said no (the call was not made). ``phase``: its name in the state (default: the tool's).
    """

    tool: str
    args: Callable[[AgentRun], dict[str, Any]]
    when: Callable[[AgentRun], Any] | None = None
    done: Callable[[AgentRun, ToolOutcome], None] | None = None
    rejected: Callable[[AgentRun, approvals.Verdict], None] | None = None
    phase: str | None = None

    @property
    def name(self) -> str:
        return self.phase or self.tool


@dataclass(frozen=True)
class Output:
    """What a run of the agent ends with: ``then`` (calls made after the answer, in order) and
    ``result(run)``, the run's result (default: :func:`default_result`)."""

    then: Sequence[Then] = ()
    result: Callable[[AgentRun], dict[str, Any]] | None = None


def default_result(run: AgentRun) -> dict[str, Any]:
    """The answer, what it cites, whether the step budget cut it short, steps and tokens used."""
    a, s = run.answer, run.state
    return {"answer": a["markdown"], "citations": a["citations"], "truncated": a["truncated"],
            "steps_used": s["steps_used"], "tokens": s["tokens"], "notes": len(s["notes"])}


def _spent(run: AgentRun) -> FinalReport:
    steps = run.state["steps_used"]
    return FinalReport(f"Stopped after {steps} steps: the step budget was spent before an answer.", truncated=True)


def as_output(output: Output | Callable[[AgentRun], dict[str, Any]] | None) -> Output:
    if output is None:
        return Output()
    if isinstance(output, Output):
        return output
    if callable(output):
        return Output(result=output)
    raise TypeError(f"output must be an Output or a function of the run, not {output!r}")


class Loop:
    """The step function of one agent (``agent``: a :class:`tasks.agent.Agent`)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.output: Output = as_output(agent.output)
        self.then = {t.name: t for t in self.output.then}
        clash = {REASON, TOOL} & set(self.then) or len(self.then) != len(self.output.then)
        if clash:
            raise ValueError(f"agent {agent.name!r}: output calls need distinct phase names other than reason/tool")
        self._scoped: tuple[Any, ToolRegistry, tuple[ToolSpec, ...]] | None = None  # per process, never per run

    # -- the workflow's functions ------------------------------------------------------------------

    def start(self, inp: BaseModel) -> dict[str, Any]:
        state = {
            "phase": REASON, "steps_used": 0, "pending": None, "observations": [], "summary": [],
            "notes": [], "corrections": 0, "last_error": None, "answer": None,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        if self.agent.chat:
            state.update(session.start_state())
        return state

    def describe(self, state: dict[str, Any]) -> str:
        """What the next step does, for Flower's task names (`research #12 search_corpus`)."""
        phase = state.get("phase")
        if phase == TOOL and state.get("pending"):
            return state["pending"]["tool"]
        if phase == session.LISTEN:
            return session.LISTEN
        then = self.then.get(phase)
        return then.tool if then is not None else REASON

    def step(self, ctx: StepContext) -> Continue | Finish | Wait | Map:
        state = json.loads(json.dumps(ctx.state))  # a private copy: the checkpoint itself stays untouched
        if "answer" not in state:  # a research run checkpointed before research became an agent
            state["answer"] = state.pop("report", None)
        ctx = self.scoped(ctx)
        if state["phase"] == session.LISTEN:
            if not session.begin(ctx, state, window=self.agent.turns_window):
                return session.listen(state)
            if state["message"]["problem"]:  # an unreadable message gets a reply saying why
                state["steps_used"] += 1
                state["answer"] = {"markdown": f"I could not read that message: {state['message']['problem']}",
                                   "citations": [], "truncated": False}
                return session.reply(AgentRun(ctx, state, self.agent), {"kind": "reason"}, (),
                                     window=self.agent.turns_window)
        state["steps_used"] += 1
        phase = state["phase"]
        if phase == REASON:
            return self._reason(ctx, state)
        if phase == TOOL:
            return self._tool(ctx, state)
        return self._then(ctx, state, self.then[phase])

    # -- the agent's tools, where the step's tool runtime finds them -------------------------------

    def scoped(self, ctx: StepContext) -> StepContext:
        """``ctx`` with services whose tool registry holds exactly this agent's tools."""
        base = ctx.services.tools
        if self._scoped is None or self._scoped[0] is not base:
            registry = ToolRegistry(self._resolve(base, self.agent.tools))
            for name in dict.fromkeys(t.tool for t in self.output.then):
                if name not in registry:
                    registry.register(self._resolve(base, [name])[0])
            offered = tuple(tool_specs(self._resolve(base, self.agent.tools)))
            self._scoped = (base, registry, offered)
        services = copy.copy(ctx.services)
        services.tools = self._scoped[1]
        return dataclasses.replace(ctx, services=services)

    def _resolve(self, base: ToolRegistry, tools: Iterable[Tool | str]) -> list[Tool]:
        """Tool objects as they are; names from the process's registry (the built-in tools)."""
        return [t if isinstance(t, Tool) else base.get(t) for t in tools]

    def specs(self) -> tuple[ToolSpec, ...]:
        return self._scoped[2] if self._scoped else ()

    # -- reasoning ---------------------------------------------------------------------------------

    def limit(self, ctx: StepContext) -> int:
        return getattr(ctx.input, "max_steps", None) or self.agent.max_steps

    def context(self, ctx: StepContext, state: dict[str, Any]) -> AgentContext:
        inp = ctx.input
        store = ctx.services.artifacts
        observations = [
            Observation(
                ToolCall(o["tool"], o["args"], o.get("call_id"), o.get("thought", "")), o["ok"],
                resolve(o["result"], store=store) if is_pointer_json(o.get("result")) else o.get("result"),
                o.get("error"), o.get("replayed", False),
            )
            for o in state["observations"]
        ]
        chat = self.agent.chat and state.get("message")
        return AgentContext(
            run_id=ctx.run_id, question=state["message"]["text"] if chat else self.agent.task(inp),
            corpus=str(getattr(inp, "corpus", "") or ""),
            max_steps=self.limit(ctx), steps_used=state["steps_used"] - 1, observations=observations,
            notes=state["notes"], summary="\n".join(state["summary"]), corrections=state["corrections"],
            last_error=state["last_error"], instructions=self.agent.instructions, tools=self.specs(),
            conversation=tuple(state.get("conversation") or ()) if chat else (),
            memory=tuple(state.get("memory") or ()) if chat else (), chat=bool(chat),
        )

    def _reason(self, ctx: StepContext, state: dict[str, Any]) -> Continue | Finish | Wait:
        services = ctx.services
        reasoner = self.agent.reasoner or (services.chat_reasoner if self.agent.chat else services.reasoner)
        # Only a step's later attempts can find a decision an earlier attempt recorded.
        decision = decisions.recall(services.engine, ctx.run_id, ctx.seq) if ctx.attempt > 1 else None
        replayed = decision is not None
        model_ms = None
        if decision is None:
            started = time.perf_counter()
            try:
                decision = reasoner.decide(self.context(ctx, state), **self._streaming(ctx, state, reasoner))
            except InvalidDecision as exc:
                state["corrections"] += 1
                state["last_error"] = str(exc)
                if state["corrections"] > services.max_corrections:
                    raise FailRun(
                        f"the reasoner gave {state['corrections']} unusable answers in a row; the last: {exc}"
                    ) from exc
                return Continue(state, payload={"kind": "reason", "refused": str(exc)})
            model_ms = round((time.perf_counter() - started) * 1000, 3)
            decisions.remember(services.engine, ctx.run_id, ctx.seq, decision, reasoner=reasoner.name,
                               owner=ctx.owner, worker=ctx.worker)
            if services.fault_after_decision:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: the answer is recorded, the step is not
        for k, v in decision.usage.items():
            if isinstance(v, int):
                state["tokens"][k] = state["tokens"].get(k, 0) + v
        state["corrections"], state["last_error"] = 0, None
        action = decision.action
        payload: dict[str, Any] = {"kind": "reason", "usage": decision.usage, "record": decision.record,
                                   "replayed": replayed, "model_ms": model_ms}
        if isinstance(action, tuple) and self.limit(ctx) - state["steps_used"] < 3:
            action = action[0]  # no room for a fan-out (two steps) and the reasoning after it: one call
        if isinstance(action, tuple) and len({c.tool for c in action}) == 1 and action:
            state["pending"] = {"tool": action[0].tool, "batch": [
                {"tool": c.tool, "args": c.args, "call_id": c.call_id, "thought": c.thought} for c in action]}
            state["phase"] = TOOL
            payload.update(decision={"tool": action[0].tool, "calls": [c.args for c in action]},
                           thought="; ".join(c.thought for c in action))
            return Continue(state, payload=payload)
        if isinstance(action, tuple):
            action = action[0]
        if isinstance(action, ToolCall) and self.limit(ctx) - state["steps_used"] >= 2:
            state["pending"] = {"tool": action.tool, "args": action.args, "call_id": action.call_id,
                                "thought": action.thought}
            state["phase"] = TOOL
            payload.update(decision={"tool": action.tool, "args": action.args}, thought=action.thought)
            return Continue(state, payload=payload)
        run = AgentRun(ctx, state, self.agent)
        if not isinstance(action, FinalReport):  # a call with no steps left to make it and reason after
            action = (self.agent.out_of_steps or _spent)(run)
        state["answer"] = {"markdown": action.markdown, "citations": action.citations, "truncated": action.truncated}
        payload.update(decision={"report": True, "truncated": action.truncated})
        return self._next(run, 0, payload, ())

    # -- tools -------------------------------------------------------------------------------------

    def _gate(self, ctx: StepContext, state: dict[str, Any], tool: str, args: Any) -> Wait | approvals.Verdict | None:
        return approvals.gate(ctx, state, tool, args, also=self.agent.approvals(ctx.input))

    def _tool(self, ctx: StepContext, state: dict[str, Any]) -> Continue | Wait | Map:
        if state["pending"].get("batch"):
            return self._calls(ctx, state)
        call = state["pending"]
        verdict = self._gate(ctx, state, call["tool"], call["args"])
        if isinstance(verdict, Wait):
            return verdict
        if verdict is not None and not verdict.approved:
            state["observations"].append({**call, "ok": False, "result": None, "error": verdict.refusal(), "replayed": False})
            state["pending"], state["phase"] = None, REASON
            return Continue(state, payload={"kind": "tool", "tool": call["tool"], "key": verdict.key,
                                            "status": "rejected", "error": verdict.refusal()})
        tools = _runtime(ctx, verdict)
        outcome = tools.call(call["tool"], call["args"])
        result = outcome.result
        if outcome.ok and ctx.services.artifacts is not None:
            result = offload(result, store=ctx.services.artifacts, inline_limit=ctx.services.inline_limit)
        state["observations"].append({
            **call, "ok": outcome.ok, "result": result if outcome.ok else None,
            "error": None if outcome.ok else (outcome.error or {}).get("message"), "replayed": outcome.replayed,
        })
        if outcome.ok and self.agent.remember is not None:
            note = self.agent.remember(call, outcome.result)
            if note is not None:
                state["notes"].append(note)
        self._fold(state)
        state["pending"], state["phase"] = None, REASON
        payload = {"kind": "tool", "tool": call["tool"], "key": outcome.key, "status": outcome.status,
                   "replayed": outcome.replayed, "error": outcome.error, "tool_ms": outcome.elapsed_ms}
        return Continue(state, payload=payload, writes=tools.records())

    def _fold(self, state: dict[str, Any]) -> None:
        while len(state["observations"]) > self.agent.window:
            old = state["observations"].pop(0)
            state["summary"].append(f"{old['tool']}({json.dumps(old['args'])[:160]}) -> {'ok' if old['ok'] else 'failed'}")

    def _calls(self, ctx: StepContext, state: dict[str, Any]) -> Continue | Wait | Map:
        """Several calls of one tool at once: a Map over the tool (each call a child step with its own
        key, at most ``PARALLEL_CALLS`` in flight), then, at the join, one observation per call in
        order, as if they had been made one by one. A tool that needs approval is called one at a time."""
        batch = state["pending"]["batch"]
        tool = batch[0]["tool"]
        joined = ctx.joined
        if joined is None:
            if _runtime(ctx, None).requires_approval(tool, self.agent.approvals(ctx.input)):
                state["pending"] = batch[0]  # the others are decided again after it
                return self._tool(ctx, state)
            return Map([c["args"] for c in batch], tool=tool, max_parallel=PARALLEL_CALLS, on_error="settled",
                       state=state, payload={"kind": "tool", "tool": tool, "calls": len(batch)})
        keys = []
        for call, child in zip(batch, joined.results, strict=True):
            done = child.result or {}
            keys.append(done.get("key"))
            result = done.get("result") if child.ok else None
            if child.ok and ctx.services.artifacts is not None:
                result = offload(result, store=ctx.services.artifacts, inline_limit=ctx.services.inline_limit)
            state["observations"].append({
                **call, "ok": child.ok, "result": result,
                "error": None if child.ok else (child.error or {}).get("message", child.status),
                "replayed": bool(done.get("replayed")),
            })
            if child.ok and self.agent.remember is not None:
                note = self.agent.remember(call, done.get("result"))
                if note is not None:
                    state["notes"].append(note)
        self._fold(state)
        # The budget is charged as for calls one by one (a tool step and a reasoning step each): the
        # Map step, this join and the next reasoning step stand for 2n of them.
        state["steps_used"] += 2 * len(batch) - 3
        state["pending"], state["phase"] = None, REASON
        return Continue(state, payload={"kind": "tool", "tool": tool, "keys": keys, "children": len(batch),
                                        "status": "succeeded" if joined.succeeded == len(batch) else "partial"})

    # -- output ------------------------------------------------------------------------------------

    def _then(self, ctx: StepContext, state: dict[str, Any], then: Then) -> Continue | Finish | Wait:
        run = AgentRun(ctx, state, self.agent)
        args = then.args(run)
        verdict = self._gate(ctx, state, then.tool, args)
        if isinstance(verdict, Wait):
            return verdict
        index = [t.name for t in self.output.then].index(then.name) + 1
        if verdict is not None and not verdict.approved:
            if then.rejected is not None:
                then.rejected(run, verdict)
            payload = {"kind": "tool", "tool": then.tool, "key": verdict.key, "status": "rejected",
                       "error": verdict.refusal()}
            return self._next(run, index, payload, ())
        tools = _runtime(ctx, verdict)
        outcome = tools.call(then.tool, verdict.args if verdict is not None else args)  # the call as approved
        if then.done is not None:
            then.done(run, outcome)
        payload = {"kind": "tool", "tool": then.tool, "key": outcome.key, "status": outcome.status,
                   "replayed": outcome.replayed, "error": outcome.error}
        return self._next(run, index, payload, tools.records())

    def _streaming(self, ctx: StepContext, state: dict[str, Any], reasoner: Any) -> dict[str, Any]:
        """A session's reply tokens stream to its live view when the reasoner can stream."""
        if not (self.agent.chat and getattr(reasoner, "streams", False)):
            return {}
        return session.live(ctx, state)

    def _next(self, run: AgentRun, index: int, payload: dict[str, Any], writes: Sequence[Callable]) -> Continue | Finish | Wait:
        """The first output call from ``index`` on that is to be made, or the end of the run (of the
        turn, in a session)."""
        if self.agent.chat:
            return session.reply(run, payload, writes, window=self.agent.turns_window)
        for then in self.output.then[index:]:
            if then.when is None or then.when(run):
                run.state["phase"] = then.name
                return Continue(run.state, payload=payload, writes=writes)
        result = (self.output.result or default_result)(run)
        return Finish(result, state=run.state, payload=payload, writes=writes)


def _runtime(ctx: StepContext, verdict: approvals.Verdict | None):
    """The tool runtime of this step; an approved call keeps the key it was approved with."""
    return ctx.services.tool_runtime(ctx, key_seq=verdict.seq if verdict else None)


__all__ = ["AgentContext", "AgentRun", "Loop", "Output", "Then", "default_result"]
