"""`research`: a question in, a cited Markdown report out; one reasoning or one tool step per task.

The checkpoint (the state) is all a step knows: the question, the step budget used, the decision
waiting to be carried out, the most recent observations (older ones folded into a summary line
each), the notes saved, and token usage. It stays bounded however long the run gets: large tool
results are stored as artifacts and referenced from the state by pointer.

Phases: reason -> tool -> reason -> ... -> publish (publish_report) -> notify (if a URL) -> done.
A tool that needs approval (``--approve`` for publish_report and notify, ``STEPLOG_APPROVE_TOOLS``)
parks the run in its phase until a person answers (:mod:`tasks.approvals`); a rejection is told to
the agent (an observation) or, for publish and notify, written into the result's report.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from checkpoint.artifacts import is_pointer_json, offload, resolve
from tasks.reasoning.base import FinalReport, Observation, ResearchContext, ToolCall
from tasks.reasoning.errors import InvalidDecision
from tasks import approvals
from tasks.reasoning.report import compose
from tasks.research import decisions
from tasks.research.inputs import ResearchInput
from tasks.workflow import Continue, FailRun, Finish, InvalidInput, StepContext, Wait, Workflow

WINDOW = 6  # observations kept whole in the checkpoint; older ones become a summary line
APPROVED_BY_FLAG = ("publish_report", "notify")  # what `steplog research --approve` asks approval for


def _gate(ctx: StepContext, state: dict[str, Any], tool: str, args: Any) -> Wait | approvals.Verdict | None:
    also = APPROVED_BY_FLAG if ctx.input.approve else ()
    return approvals.gate(ctx, state, tool, args, also=also)


def _runtime(ctx: StepContext, verdict: approvals.Verdict | None):
    """The tool runtime of this step; an approved call keeps the key it was approved with."""
    return ctx.services.tool_runtime(ctx, key_seq=verdict.seq if verdict else None)


def start(inp: ResearchInput) -> dict[str, Any]:
    return {
        "phase": "reason", "steps_used": 0, "pending": None, "observations": [], "summary": [],
        "notes": [], "corrections": 0, "last_error": None, "report": None,
        "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def describe(state: dict[str, Any]) -> str:
    """What the next step does, for Flower's task names (`research #12 search_corpus`)."""
    phase = state.get("phase")
    if phase == "tool" and state.get("pending"):
        return state["pending"]["tool"]
    return {"publish": "publish_report", "notify": "notify"}.get(phase, "reason")


def step(ctx: StepContext) -> Continue | Finish:
    state = json.loads(json.dumps(ctx.state))  # a private copy: the checkpoint itself stays untouched
    state["steps_used"] += 1
    return PHASES[state["phase"]](ctx, state)


# -- reasoning -------------------------------------------------------------------------------------


def _context(ctx: StepContext, state: dict[str, Any]) -> ResearchContext:
    inp: ResearchInput = ctx.input  # type: ignore[assignment]
    store = ctx.services.artifacts
    observations = [
        Observation(
            ToolCall(o["tool"], o["args"], o.get("call_id"), o.get("thought", "")), o["ok"],
            resolve(o["result"], store=store) if is_pointer_json(o.get("result")) else o.get("result"),
            o.get("error"), o.get("replayed", False),
        )
        for o in state["observations"]
    ]
    return ResearchContext(
        run_id=ctx.run_id, question=inp.question, corpus=inp.corpus, max_steps=inp.max_steps,
        steps_used=state["steps_used"] - 1, observations=observations, notes=state["notes"],
        summary="\n".join(state["summary"]), corrections=state["corrections"], last_error=state["last_error"],
    )


def _reason(ctx: StepContext, state: dict[str, Any]) -> Continue:
    services = ctx.services
    reasoner = services.reasoner
    decision = decisions.recall(services.engine, ctx.run_id, ctx.seq)
    replayed = decision is not None
    if decision is None:
        try:
            decision = reasoner.decide(_context(ctx, state))
        except InvalidDecision as exc:
            state["corrections"] += 1
            state["last_error"] = str(exc)
            if state["corrections"] > services.max_corrections:
                raise FailRun(
                    f"the reasoner gave {state['corrections']} unusable answers in a row; the last: {exc}"
                ) from exc
            return Continue(state, payload={"kind": "reason", "refused": str(exc)})
        decisions.remember(services.engine, ctx.run_id, ctx.seq, decision, reasoner=reasoner.name,
                           owner=ctx.owner, worker=ctx.worker)
        if services.fault_after_decision:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: the answer is recorded, the step is not
    for k, v in decision.usage.items():
        if isinstance(v, int):
            state["tokens"][k] = state["tokens"].get(k, 0) + v
    state["corrections"], state["last_error"] = 0, None
    action = decision.action
    payload: dict[str, Any] = {"kind": "reason", "usage": decision.usage, "record": decision.record, "replayed": replayed}
    if isinstance(action, ToolCall) and ctx.input.max_steps - state["steps_used"] >= 2:
        state["pending"] = {"tool": action.tool, "args": action.args, "call_id": action.call_id, "thought": action.thought}
        state["phase"] = "tool"
        payload.update(decision={"tool": action.tool, "args": action.args}, thought=action.thought)
        return Continue(state, payload=payload)
    report = action if isinstance(action, FinalReport) else _best_so_far(ctx, state)
    state["report"] = {"markdown": report.markdown, "citations": report.citations, "truncated": report.truncated}
    state["phase"] = "publish"
    payload.update(decision={"report": True, "truncated": report.truncated})
    return Continue(state, payload=payload)


def _best_so_far(ctx: StepContext, state: dict[str, Any]) -> FinalReport:
    """The step budget is spent: a report from the notes taken, marked as cut short."""
    from tasks.reasoning.offline import OfflineReasoner

    wrap = OfflineReasoner().decide(_context(ctx, {**state, "steps_used": ctx.input.max_steps}))
    if isinstance(wrap.action, FinalReport):
        return FinalReport(wrap.action.markdown, wrap.action.citations, truncated=True)
    return compose(ctx.input.question, [], corpus=ctx.input.corpus, truncated=True, stop_reason="step budget spent")


# -- tools -----------------------------------------------------------------------------------------


def _tool(ctx: StepContext, state: dict[str, Any]) -> Continue | Wait:
    call = state["pending"]
    verdict = _gate(ctx, state, call["tool"], call["args"])
    if isinstance(verdict, Wait):
        return verdict
    if verdict is not None and not verdict.approved:
        state["observations"].append({**call, "ok": False, "result": None, "error": verdict.refusal(), "replayed": False})
        state["pending"], state["phase"] = None, "reason"
        return Continue(state, payload={"kind": "tool", "tool": call["tool"], "key": verdict.key, "status": "rejected",
                                        "error": verdict.refusal()})
    tools = _runtime(ctx, verdict)
    outcome = tools.call(call["tool"], call["args"])
    result = outcome.result
    if outcome.ok and ctx.services.artifacts is not None:
        result = offload(result, store=ctx.services.artifacts, inline_limit=ctx.services.inline_limit)
    state["observations"].append({
        **call, "ok": outcome.ok, "result": result if outcome.ok else None,
        "error": None if outcome.ok else (outcome.error or {}).get("message"), "replayed": outcome.replayed,
    })
    if call["tool"] == "save_note" and outcome.ok:
        state["notes"].append({"text": call["args"]["text"], "citations": list(call["args"].get("citations", []))})
    while len(state["observations"]) > WINDOW:
        old = state["observations"].pop(0)
        state["summary"].append(f"{old['tool']}({json.dumps(old['args'])[:160]}) -> {'ok' if old['ok'] else 'failed'}")
    state["pending"], state["phase"] = None, "reason"
    payload = {"kind": "tool", "tool": call["tool"], "key": outcome.key, "status": outcome.status,
               "replayed": outcome.replayed, "error": outcome.error}
    return Continue(state, payload=payload, writes=tools.records())


def _publish(ctx: StepContext, state: dict[str, Any]) -> Continue | Finish | Wait:
    report = state["report"]
    cites = sorted({c["doc_id"] if isinstance(c, dict) else str(c) for c in report["citations"]})
    args = {"markdown": report["markdown"], "citations": cites}
    verdict = _gate(ctx, state, "publish_report", args)
    if isinstance(verdict, Wait):
        return verdict
    if verdict is not None and not verdict.approved:
        state["published"] = "rejected"
        report["markdown"] += f"\n\n_The report was not published: {verdict.refusal()}._\n"
        payload = {"kind": "tool", "tool": "publish_report", "key": verdict.key, "status": "rejected"}
        if ctx.input.notify_url:
            state["phase"] = "notify"
            return Continue(state, payload=payload)
        return Finish(_result(state), state=state, payload=payload)
    tools = _runtime(ctx, verdict)
    outcome = tools.call("publish_report", args)
    if not outcome.ok:
        raise RuntimeError(f"publish_report failed: {outcome.error}")  # retried as a step
    if ctx.services.artifacts is not None:
        state["report_artifact"] = ctx.services.artifacts.put(report["markdown"].encode(), "text/markdown").to_dict()
    payload = {"kind": "tool", "tool": "publish_report", "key": outcome.key, "status": outcome.status,
               "replayed": outcome.replayed}
    if ctx.input.notify_url:
        state["phase"] = "notify"
        return Continue(state, payload=payload, writes=tools.records())
    return Finish(_result(state), state=state, payload=payload, writes=tools.records())


def _notify(ctx: StepContext, state: dict[str, Any]) -> Finish | Wait:
    body = {"run_id": ctx.run_id, "question": ctx.input.question, "truncated": state["report"]["truncated"]}
    args = {"url": ctx.input.notify_url, "payload": body}
    verdict = _gate(ctx, state, "notify", args)
    if isinstance(verdict, Wait):
        return verdict
    if verdict is not None and not verdict.approved:
        state["notified"] = "rejected"
        state["report"]["markdown"] += f"\n\n_No notification was sent: {verdict.refusal()}._\n"
        payload = {"kind": "tool", "tool": "notify", "key": verdict.key, "status": "rejected"}
        return Finish(_result(state), state=state, payload=payload)
    tools = _runtime(ctx, verdict)
    outcome = tools.call("notify", args)
    state["notified"] = outcome.status
    payload = {"kind": "tool", "tool": "notify", "key": outcome.key, "status": outcome.status,
               "replayed": outcome.replayed, "error": outcome.error}
    return Finish(_result(state), state=state, payload=payload, writes=tools.records())


def _result(state: dict[str, Any]) -> dict[str, Any]:
    report = state["report"]
    return {
        "report": report["markdown"], "citations": report["citations"], "truncated": report["truncated"],
        "steps_used": state["steps_used"], "tokens": state["tokens"], "notes": len(state["notes"]),
        "report_artifact": state.get("report_artifact"), "notified": state.get("notified"),
        "published": state.get("published", "published"),
    }


PHASES = {"reason": _reason, "tool": _tool, "publish": _publish, "notify": _notify}

def precheck(inp: ResearchInput, engine: Any) -> None:
    from tools.corpus import corpora, corpus_exists

    if not corpus_exists(engine, inp.corpus):
        known = ", ".join(corpora(engine)) or "none yet: run `steplog corpus build`"
        raise InvalidInput(f"invalid input for workflow 'research': corpus: unknown corpus {inp.corpus!r} (known: {known})")


WORKFLOW = Workflow("research", ResearchInput, start, step, describe=describe, precheck=precheck)
