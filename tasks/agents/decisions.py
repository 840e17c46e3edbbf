"""A reasoning step's decision, made durable the moment it exists.

The decision is also recorded in the checkpoint when the step commits; this earlier record covers a
worker killed between the model's answer and that commit: the retried step of any agent (research
included) reads the decision back instead of asking the model again. Rows live in the tool ledger
(tool ``reasoner``), so the ledger stays the audit trail of everything the agent did.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert

from tasks.reasoning.base import Decision, FinalReport, ToolCall
from tools.ledger_table import tool_ledger

TOOL = "reasoner"


def _key(run_id: str, seq: int) -> str:
    return hashlib.sha256(f"{run_id}\x00{seq}\x00{TOOL}".encode()).hexdigest()


def to_json(decision: Decision) -> dict[str, Any]:
    a = decision.action
    if isinstance(a, ToolCall):
        action = {"tool": a.tool, "args": a.args, "call_id": a.call_id, "thought": a.thought}
    else:
        action = {"report": a.markdown, "citations": a.citations, "truncated": a.truncated}
    return {"action": action, "usage": decision.usage, "record": decision.record}


def from_json(doc: dict[str, Any]) -> Decision:
    a = doc["action"]
    if "tool" in a:
        action: ToolCall | FinalReport = ToolCall(a["tool"], a["args"], a.get("call_id"), a.get("thought", ""))
    else:
        action = FinalReport(a["report"], a.get("citations") or [], bool(a.get("truncated")))
    return Decision(action, doc.get("usage") or {}, doc.get("record") or {})


def recall(engine: Engine, run_id: str, seq: int) -> Decision | None:
    with engine.connect() as conn:
        row = conn.execute(select(tool_ledger.c.result).where(tool_ledger.c.key == _key(run_id, seq))).first()
    return None if row is None else from_json(row.result)


def remember(engine: Engine, run_id: str, seq: int, decision: Decision, *, reasoner: str, owner: str, worker: str) -> None:
    key = _key(run_id, seq)
    stmt = insert(tool_ledger).values(
        key=key, run_id=run_id, seq=seq, tool=TOOL, version=reasoner, input_hash=key, input={},
        status="succeeded", result=to_json(decision), attempts=1, worker=worker, owner=owner,
    )
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
