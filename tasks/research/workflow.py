"""`research`: a question in, a cited Markdown report out. An :class:`~tasks.agent.Agent` like any other.

Its steps are an agent's (:mod:`tasks.agents.loop`): reason -> tool -> reason -> ... over the research
tools, then its output: publish (publish_report) -> notify (if a URL) -> done. What is research's own
is below: the input (question, corpus, budget, webhook, ``--approve``), the notes ``save_note`` keeps,
the report from the notes when the step budget is spent, and the output calls. ``--approve`` makes
publish_report and notify wait for a person (as does ``STEPLOG_APPROVE_TOOLS``); a rejection is told
to the agent (an observation) or, for publish and notify, written into the result's report.
"""

from __future__ import annotations

from typing import Any

from tasks.agent import Agent, AgentRun, FinalReport, Output, Then
from tasks.reasoning.factory import AGENT_TOOLS
from tasks.reasoning.report import compose
from tasks.research.inputs import ResearchInput
from tasks.workflow import InvalidInput

APPROVED_BY_FLAG = ("publish_report", "notify")  # what `steplog research --approve` asks approval for


def _remember(call: dict[str, Any], result: Any) -> dict[str, Any] | None:
    """A saved note stays in the context after its call has left the observation window."""
    if call["tool"] != "save_note":
        return None
    return {"text": call["args"]["text"], "citations": list(call["args"].get("citations", []))}


def _best_so_far(run: AgentRun) -> FinalReport:
    """The step budget is spent: a report from the notes taken, marked as cut short."""
    from tasks.reasoning.offline import OfflineReasoner

    inp: ResearchInput = run.input  # type: ignore[assignment]
    wrap = OfflineReasoner().decide(run.context(steps_used=inp.max_steps - 1))
    if isinstance(wrap.action, FinalReport):
        return FinalReport(wrap.action.markdown, wrap.action.citations, truncated=True)
    return compose(inp.question, [], corpus=inp.corpus, truncated=True, stop_reason="step budget spent")


# -- output: publish the report, then notify -------------------------------------------------------


def _publish_args(run: AgentRun) -> dict[str, Any]:
    report = run.answer
    cites = sorted({c["doc_id"] if isinstance(c, dict) else str(c) for c in report["citations"]})
    return {"markdown": report["markdown"], "citations": cites}


def _published(run: AgentRun, outcome: Any) -> None:
    if not outcome.ok:
        raise RuntimeError(f"publish_report failed: {outcome.error}")  # retried as a step
    artifacts = run.ctx.services.artifacts
    if artifacts is not None:
        run.state["report_artifact"] = artifacts.put(run.answer["markdown"].encode(), "text/markdown").to_dict()


def _not_published(run: AgentRun, verdict: Any) -> None:
    run.state["published"] = "rejected"
    run.answer["markdown"] += f"\n\n_The report was not published: {verdict.refusal()}._\n"


def _notify_args(run: AgentRun) -> dict[str, Any]:
    inp: ResearchInput = run.input  # type: ignore[assignment]
    body = {"run_id": run.ctx.run_id, "question": inp.question, "truncated": run.answer["truncated"]}
    return {"url": inp.notify_url, "payload": body}


def _notified(run: AgentRun, outcome: Any) -> None:
    run.state["notified"] = outcome.status


def _not_notified(run: AgentRun, verdict: Any) -> None:
    run.state["notified"] = "rejected"
    run.answer["markdown"] += f"\n\n_No notification was sent: {verdict.refusal()}._\n"


def _result(run: AgentRun) -> dict[str, Any]:
    report, state = run.answer, run.state
    return {
        "report": report["markdown"], "citations": report["citations"], "truncated": report["truncated"],
        "steps_used": state["steps_used"], "tokens": state["tokens"], "notes": len(state["notes"]),
        "report_artifact": state.get("report_artifact"), "notified": state.get("notified"),
        "published": state.get("published", "published"),
    }


def precheck(inp: ResearchInput, engine: Any) -> None:
    from tools.corpus import corpora, corpus_exists

    if not corpus_exists(engine, inp.corpus):
        known = ", ".join(corpora(engine)) or "none yet: run `steplog corpus build`"
        raise InvalidInput(f"invalid input for workflow 'research': corpus: unknown corpus {inp.corpus!r} (known: {known})")


AGENT = Agent(
    "research",
    "Answer the question from the documents of a search corpus, citing every claim's source as [doc_id].",
    tools=AGENT_TOOLS,  # built-ins, by name
    reasoner=None,  # the worker's: the LLM (STEPLOG_LLM_*) or the offline research reasoner
    approve=lambda inp: APPROVED_BY_FLAG if inp.approve else (),
    output=Output(then=[
        Then("publish_report", _publish_args, done=_published, rejected=_not_published, phase="publish"),
        Then("notify", _notify_args, when=lambda run: run.input.notify_url, done=_notified,
             rejected=_not_notified),
    ], result=_result),
    input=ResearchInput, task=lambda inp: inp.question, remember=_remember, out_of_steps=_best_so_far,
    precheck=precheck,
)
WORKFLOW = AGENT.workflow
