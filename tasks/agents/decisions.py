"""A reasoning step's decision, made durable the moment it exists.

The decision is also recorded in the checkpoint when the step commits; this earlier record covers a
worker killed between the model's answer and that commit: the retried step of any agent (research
included) reads the decision back instead of asking the model again. Rows live in the tool ledger
(tool ``reasoner``), so the ledger stays the audit trail of everything the agent did.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine

from tasks.reasoning.base import Decision, FinalReport, ToolCall
from tools import ledger

TOOL = "reasoner"


def _key(run_id: str, seq: int) -> str:
    return hashlib.sha256(f"{run_id}\x00{seq}\x00{TOOL}".encode()).hexdigest()


def to_json(decision: Decision) -> dict[str, Any]:
    a = decision.action
    if isinstance(a, ToolCall):
        action = {"tool": a.tool, "args": a.args, "call_id": a.call_id, "thought": a.thought}
    elif isinstance(a, tuple):  # calls made at once
        action = {"calls": [{"tool": c.tool, "args": c.args, "call_id": c.call_id, "thought": c.thought} for c in a]}
    else:
        action = {"report": a.markdown, "citations": a.citations, "truncated": a.truncated}
    return {"action": action, "usage": decision.usage, "record": decision.record}


def from_json(doc: dict[str, Any]) -> Decision:
    a = doc["action"]
    if "calls" in a:
        return Decision(tuple(ToolCall(c["tool"], c["args"], c.get("call_id"), c.get("thought", "")) for c in a["calls"]),
                        doc.get("usage") or {}, doc.get("record") or {})
    if "tool" in a:
        action: ToolCall | FinalReport = ToolCall(a["tool"], a["args"], a.get("call_id"), a.get("thought", ""))
    else:
        action = FinalReport(a["report"], a.get("citations") or [], bool(a.get("truncated")))
    return Decision(action, doc.get("usage") or {}, doc.get("record") or {})


def recall(engine: Engine, run_id: str, seq: int) -> Decision | None:
    doc = ledger.done_result(engine, _key(run_id, seq))
    return None if doc is None else from_json(doc)


def remember(engine: Engine, run_id: str, seq: int, decision: Decision, *, reasoner: str, owner: str, worker: str) -> None:
    ledger.record_done(engine, key=_key(run_id, seq), run_id=run_id, seq=seq, tool=TOOL, version=reasoner,
                       result=to_json(decision), worker=worker, owner=owner)
