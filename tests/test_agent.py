"""Your own agent (tasks/agent.py): the README's refund agent through a real worker, its tools only in
its own runs, its construction errors, its OpenAI-compatible model, and the README kept true."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from tasks.agent import Agent, AgentContext, OpenAIModel, Scripted, ToolCall, call
from tasks.reasoning.base import FinalReport, Observation
from tasks.reasoning.toolspec import tool_specs
from tasks.workflow import StepContext
from tests.support import custom_agent
from tests.support.fake_llm import tool_call
from tests.support.harness import Fleet, cli, cli_json, wait_for
from tools.keys import idempotency_key
from tools.registry import builtin_registry

ROOT = Path(__file__).resolve().parent.parent
MODULES = "tests.support.workflows,tests.support.custom_agent"


def _ledger(fleet: Fleet, run_id: str) -> list[dict[str, Any]]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT tool, key, seq, status, attempts, input, result FROM tool_ledger "
                                 "WHERE run_id = :r ORDER BY started_at, seq"), {"r": run_id}).mappings().all()
    return [dict(r) for r in rows]


def _parked(fleet: Fleet, run_id: str) -> dict[str, Any]:
    """The `waiting` event of the run once it waits for an approval."""

    def parked():
        run = fleet.run(run_id)
        assert run["status"] != "failed", run["error"]
        if run["status"] != "waiting" or run["wait_signal"] != "approval":
            return None
        return fleet.events(run_id)[-1]

    return wait_for(parked, timeout=60, what=f"run {run_id} to wait for approval")


def test_the_readme_agent_calls_its_tools_waits_for_approval_and_refunds_once(fast_env, tmp_path):
    env = {**fast_env, "STEPLOG_WORKFLOW_MODULES": MODULES}
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        run_id = cli_json(env, "submit", "refunds", "--input", '{"task": "A-1001"}', "--json")["run_id"]
        no = fleet.submit("refunds", {"task": "B-2002"})

        # It called the read tool, then parked before the irreversible one, showing tool, args and key.
        ask = _parked(fleet, run_id)
        gate = ask["payload"]["approval"]
        assert gate["tool"] == "refund" and gate["args"] == {"order_id": "A-1001", "cents": 4200}
        assert gate["key"] == idempotency_key(run_id, ask["seq"], "refund", "1", gate["args"])
        events = fleet.events(run_id)
        kinds = [(e["payload"].get("kind"), e["payload"].get("tool")) for e in events[1:]]
        assert kinds == [("reason", None), ("tool", "find_order"), ("reason", None), ("approval", None)]
        assert events[2]["payload"]["status"] == "succeeded"
        assert [(r["tool"], r["status"]) for r in _ledger(fleet, run_id)] == [
            ("reasoner", "succeeded"), ("find_order", "succeeded"), ("reasoner", "succeeded")]  # no refund yet
        shown = cli(env, "show", run_id)
        assert shown.returncode == 0 and "refund" in shown.stdout

        # Approved: the refund runs exactly once, with the key shown; the run ends with the agent's answer.
        said = cli_json(env, "approve", run_id, "--note", "ok", "--json")
        assert said["status"] == "delivered"
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        refunds = [r for r in _ledger(fleet, run_id) if r["tool"] == "refund"]
        assert [(r["key"], r["status"], r["attempts"]) for r in refunds] == [(gate["key"], "succeeded", 1)]
        receipt = refunds[0]["result"]
        assert receipt == {"refund_id": f"re_{gate['key'][:12]}"}
        assert run["result"]["answer"] == f"Order A-1001: {receipt}"
        assert run["result"]["truncated"] is False and run["result"]["steps_used"] == 6
        again = cli_json(env, "approve", run_id, "--json")
        assert again["status"] == "duplicate"
        assert len([r for r in _ledger(fleet, run_id) if r["tool"] == "refund"]) == 1

        # Rejected: the refund is not made; the agent is told and answers with that.
        _parked(fleet, no)
        fleet.app.steplog.decide(no, approved=False, by="tester", text="not this one")
        later = fleet.wait_finished(no, timeout=60)
        assert later["status"] == "succeeded", later["error"]
        assert "rejected by tester: not this one" in later["result"]["answer"]
        assert "refund" not in {r["tool"] for r in _ledger(fleet, no)}
    finally:
        fleet.close()


def _ctx(services: Any) -> StepContext:
    return StepContext("r", 2, 1, None, {}, "w", services=services)  # type: ignore[arg-type]


def test_an_agents_tools_reach_its_own_steps_runtime_and_no_other_workflows():
    from tasks.research.workflow import AGENT as research

    process = builtin_registry()
    services = SimpleNamespace(tools=process, reasoner=None)
    mine = custom_agent.refunds.loop.scoped(_ctx(services)).services.tools
    theirs = research.loop.scoped(_ctx(services)).services.tools
    assert sorted(t.name for t in mine) == ["find_order", "refund"]
    assert "refund" not in theirs and "find_order" not in theirs and "refund" not in process
    assert sorted(t.name for t in theirs) == sorted(t.name for t in process)  # research: the built-ins
    assert services.tools is process  # the process's services are untouched; each step gets a copy
    assert [s.name for s in custom_agent.refunds.loop.specs()] == ["find_order", "refund"]


def test_agent_definitions_are_checked_when_made():
    with pytest.raises(ValueError, match="approve names"):
        Agent("a", "x", tools=[custom_agent.find_order], approve=["refund"])
    with pytest.raises(ValueError, match="listed twice"):
        Agent("a", "x", tools=[custom_agent.find_order, "find_order"])
    with pytest.raises(TypeError, match="decide"):
        Agent("a", "x", tools=[custom_agent.find_order], reasoner=object())
    with pytest.raises(ValueError, match="max_steps"):
        Agent("a", "x", max_steps=0)
    agent = Agent("a", "x", tools=["search_corpus", custom_agent.refund], approve=["refund"])
    assert agent.as_workflow().name == "a" and agent.workflow.input_model.model_json_schema()["required"] == ["task"]


def test_scripted_plans_see_what_each_tool_returned():
    plan = Scripted(custom_agent.plan)
    first = plan.decide(_context([]))
    assert first.action == ToolCall("find_order", {"order_id": "A-1"}) == call("find_order", order_id="A-1")
    found = Observation(call("find_order", order_id="A-1"), True, {"order_id": "A-1", "cents": 5})
    assert plan.decide(_context([found])).action == call("refund", order_id="A-1", cents=5)
    no = Observation(call("refund", order_id="A-1", cents=5), False, None, "rejected")
    assert plan.decide(_context([found, no])).action == FinalReport("Order A-1: {'error': 'rejected'}")


def _context(observations: list[Observation], **kw: Any) -> AgentContext:
    return AgentContext(run_id="r", question="A-1", corpus="", max_steps=10, steps_used=len(observations) * 2,
                        observations=observations, notes=[], instructions="Refund the order named in the task.",
                        tools=tuple(tool_specs([custom_agent.find_order, custom_agent.refund])), **kw)


def test_an_openai_compatible_model_gets_the_instructions_and_the_agents_tools(fake_llm):
    fake_llm.script(tool_call("find_order", {"order_id": "A-1"}),
                    tool_call("final_report", {"markdown": "Refunded A-1."}))
    model = OpenAIModel("fake-model", base_url=fake_llm.url, api_key="sk-x", max_retries=1)
    first = model.decide(_context([]))
    assert first.action.tool == "find_order" and first.action.args == {"order_id": "A-1", "cents": 0}
    found = Observation(first.action, True, {"order_id": "A-1", "cents": 5})
    assert model.decide(_context([found])).action.markdown == "Refunded A-1."
    request = fake_llm.chat_requests[1]
    assert request.tool_names == ["find_order", "refund", "final_report"]
    assert request.messages[0]["content"].startswith("Refund the order named in the task.")
    assert request.messages[1]["content"].startswith("Task: A-1")
    assert request.messages[2]["tool_calls"][0]["function"]["name"] == "find_order"


def test_the_readme_shows_the_agent_the_tests_run():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your own agent", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks == [(ROOT / "tests/support/custom_agent.py").read_text()]
