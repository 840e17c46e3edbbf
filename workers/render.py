"""How runs look to operators: the `--json` shapes (a contract scripts rely on) and rich tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "blue"}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def event_json(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": e["seq"], "type": e["type"], "worker": e["worker"], "pid": e["pid"], "attempt": e["attempt"],
        "created_at": iso(e["created_at"]), "payload": e["payload"],
    }


def in_flight_json(f: dict[str, Any] | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "seq": f["seq"], "worker": f["worker"], "pid": f["pid"], "attempt": f["attempt"],
        "started_at": iso(f["started_at"]), "lease_expires_at": iso(f["lease_expires_at"]),
    }


def run_json(run: dict[str, Any], events: list[dict[str, Any]], in_flight: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "run_id": run["run_id"], "workflow": run["workflow"], "status": run["status"], "input": run["input"],
        "result": run["result"], "error": run["error"], "cancel_requested_by": run["cancel_requested_by"],
        "created_at": iso(run["created_at"]), "updated_at": iso(run["updated_at"]),
        "in_flight": in_flight_json(in_flight), "events": [event_json(e) for e in events],
    }


def run_summary_json(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"], "workflow": run["workflow"], "status": run["status"],
        "created_at": iso(run["created_at"]), "updated_at": iso(run["updated_at"]),
    }


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def run_view(doc: dict[str, Any]) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row("run", doc["run_id"])
    head.add_row("workflow", doc["workflow"])
    head.add_row("status", status_text(doc["status"]))
    head.add_row("input", str(doc["input"]))
    if doc["result"] is not None:
        head.add_row("result", str(doc["result"]))
    if doc["error"] is not None:
        head.add_row("error", Text(f"{doc['error'].get('type')}: {doc['error'].get('message')}", style="red"))
    if doc["in_flight"]:
        f = doc["in_flight"]
        head.add_row("in flight", f"step {f['seq']} on {f['worker']} (pid {f['pid']}, attempt {f['attempt']})")
    events = Table("seq", "type", "worker", "pid", "attempt", "at", title="events")
    for e in doc["events"]:
        attempt = Text(str(e["attempt"]), style="bold yellow" if e["attempt"] > 1 else "")
        events.add_row(str(e["seq"]), e["type"], e["worker"] or "", str(e["pid"] or ""), attempt, e["created_at"])
    return Group(head, events)


def runs_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("run", "workflow", "status", "created", "updated")
    for r in rows:
        table.add_row(r["run_id"], r["workflow"], status_text(r["status"]), r["created_at"], r["updated_at"])
    return table
