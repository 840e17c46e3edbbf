"""How runs look to operators: the `--json` shapes (a contract scripts rely on) and rich tables.

Everything shown comes from data, so it is built from :class:`rich.text.Text`, never parsed as markup
(a report's ``[doc_id]`` citations stay as they are). Ids are never cut: their columns do not wrap and
fold rather than end in an ellipsis when the terminal is too narrow; other columns fold.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {
    "succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "blue", "waiting": "magenta",
}


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


def run_json(run: dict[str, Any], events: list[dict[str, Any]], in_flight: dict[str, Any] | None,
             throttle: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "run_id": run["run_id"], "workflow": run["workflow"], "tenant": run.get("tenant", "default"),
        "status": run["status"], "input": run["input"],
        "result": run["result"], "error": run["error"], "cancel_requested_by": run["cancel_requested_by"],
        "created_at": iso(run["created_at"]), "updated_at": iso(run["updated_at"]),
        "priority": run.get("priority", 0),
        "in_flight": in_flight_json(in_flight), "waiting": waiting_json(run),
        "throttled": throttled_json(throttle) if throttle and not in_flight else None,
        "events": [event_json(e) for e in events],
    }


def throttled_json(t: dict[str, Any]) -> dict[str, Any]:
    """Why the next step waits: ``{"seq", "reason", "key", "in_flight", "limit", "since", "due_at", "text"}``;
    ``text`` is what ``show`` prints (``concurrency tenant=acme 3/3``, ``rate: llm tpm``)."""
    return {
        "seq": t["seq"], "reason": t["reason"], "key": t["key"],
        "in_flight": t["in_flight"] if t["key"] else None, "limit": t["limit"] if t["key"] else None,
        "since": iso(t["since"]), "due_at": iso(t["due_at"]), "text": throttle_text(t),
    }


def throttle_text(t: dict[str, Any]) -> str:
    """``concurrency tenant=acme 3/3`` or ``rate: llm tpm``: why a step waits."""
    if t.get("key"):
        text = f"{t['reason']} {t['key']} {t['in_flight']}/{t['limit']}"
        return text + (" (a freed slot is on its way to it)" if t.get("woken") else "")
    return str(t["reason"])


CHILD_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")


def children_json(counts: dict[str, int]) -> dict[str, int] | None:
    """A run's children by status, with their ``total``; None for a run that spawned none."""
    if not counts:
        return None
    return {"total": sum(counts.values()), **{s: counts.get(s, 0) for s in CHILD_STATUSES}}


def parent_json(family: dict[str, Any] | None) -> dict[str, Any] | None:
    """On a child run: ``{"run_id", "seq", "index"}`` of its parent (the step that spawned it); else None."""
    if not family or family.get("parent_run_id") is None:
        return None
    return {"run_id": family["parent_run_id"], "seq": family["parent_seq"], "index": family["child_index"]}


def children_line(children: dict[str, int]) -> str:
    """``12/200 ended: 10 succeeded, 1 failed, 1 cancelled; 20 running, 168 queued``."""
    ended = [s for s in ("succeeded", "failed", "cancelled") if children.get(s)]
    going = [s for s in ("running", "waiting", "queued") if children.get(s)]
    done = sum(children.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
    line = f"{done}/{children['total']} ended"
    if ended:
        line += ": " + ", ".join(f"{children[s]} {s}" for s in ended)
    if going:
        line += "; " + ", ".join(f"{children[s]} {s}" for s in going)
    return line


def children_table(rows: list[dict[str, Any]]) -> Table:
    t = table()
    t.add_column("step", justify="right", no_wrap=True)
    t.add_column("index", justify="right", no_wrap=True)
    t.add_column("run", no_wrap=True)
    t.add_column("workflow", overflow="fold")
    t.add_column("status", no_wrap=True)
    t.add_column("updated", no_wrap=True)
    for r in rows:
        t.add_row(str(r["parent_seq"]), str(r["child_index"]), Text(r["run_id"]), Text(r["workflow"]),
                  status_text(r["status"]), when(iso(r["updated_at"]), "%H:%M:%S"))
    return t


def child_json(r: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": r["run_id"], "workflow": r["workflow"], "status": r["status"], "seq": r["parent_seq"],
            "index": r["child_index"], "created_at": iso(r["created_at"]), "updated_at": iso(r["updated_at"])}


def waiting_json(run: dict[str, Any]) -> dict[str, Any] | None:
    """What a waiting run waits for: ``{"signal", "since", "timeout_at"}`` (signal None: a sleep)."""
    if run["status"] != "waiting":
        return None
    return {"signal": run["wait_signal"], "since": iso(run["wait_since"]), "timeout_at": iso(run["wait_until"])}


def waiting_text(waiting: dict[str, Any], now: datetime | None = None) -> Text:
    """``signal 'approval' for 12.3s, times out at ...`` / ``a timer, due at ...``."""
    now = now or datetime.now(timezone.utc)
    since = datetime.fromisoformat(waiting["since"]) if waiting["since"] else now
    what = f"signal {waiting['signal']!r}" if waiting["signal"] else "a timer"
    text = f"{what} for {max(0.0, (now - since).total_seconds()):.1f}s"
    if waiting["timeout_at"]:
        due = datetime.fromisoformat(waiting["timeout_at"])
        verb = "times out" if waiting["signal"] else "due"
        text += f", {verb} at {when(waiting['timeout_at'])} (in {max(0.0, (due - now).total_seconds()):.1f}s)"
    return Text(text)


def run_summary_json(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run["run_id"], "workflow": run["workflow"], "status": run["status"],
        "created_at": iso(run["created_at"]), "updated_at": iso(run["updated_at"]),
    }


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def when(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO 8601 time of the JSON shapes, as people read it (the time zone as Postgres gave it)."""
    return "" if value is None else datetime.fromisoformat(value).strftime(fmt)


def whole(value: str, style: str = "") -> Text:
    """A value that is never cut: for cells of columns that do not wrap (so a narrow terminal folds the
    other columns first), folded rather than cut should even that not be enough."""
    return Text(value, style=style, no_wrap=False, overflow="fold")


def compact_json(value: Any) -> Text:
    return Text(json.dumps(value, ensure_ascii=False, default=str))


def activity(payload: Any) -> str:
    """``kind tool`` of a research step (e.g. ``tool search_corpus``); empty for other payloads."""
    if not isinstance(payload, dict):
        return ""
    return " ".join(str(payload[k]) for k in ("kind", "tool") if payload.get(k) is not None)


def _report_title(report: str) -> str:
    return next((line.lstrip("#").strip() for line in report.splitlines() if line.strip()), "")


def result_line(run_id: str, result: Any) -> str:
    """A result in one line: a research run's report by its title, any other result as JSON."""
    report = result.get("report") if isinstance(result, dict) else None
    if not isinstance(report, str):
        return json.dumps(result, ensure_ascii=False, default=str)
    return f"report: {_report_title(report)} ({len(report):,} characters; steplog report {run_id})"


def result_summary(run_id: str, result: Any) -> Text:
    """A research run's report in brief (title, size, what it cites) and where the whole of it is;
    any other result as one line of JSON."""
    report = result.get("report") if isinstance(result, dict) else None
    if not isinstance(report, str):
        return compact_json(result)
    title = _report_title(report)
    text = Text("report: ")
    text.append(title, style="bold")
    text.append(f"\n{len(report):,} characters")
    citations = result.get("citations")
    if isinstance(citations, list):
        ids = [f"[{c['doc_id']}]" for c in citations if isinstance(c, dict) and c.get("doc_id")]
        text.append(f"; {len(citations)} citation{'' if len(citations) == 1 else 's'}")
        text.append(f": {' '.join(ids)}" if ids else "")
    if result.get("truncated"):
        text.append("; cut short by the step budget")
    text.append("\nthe full report: ")
    text.append(f"steplog report {run_id}", style="bold")
    return text


def table(*columns: str) -> Table:
    """A plain table: a rule under the header, two spaces between columns, no frame."""
    return Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                 header_style="bold")


def _head() -> Table:
    head = Table.grid(padding=(0, 2))
    head.add_column(no_wrap=True, style="bold")
    head.add_column(overflow="fold")
    return head


def event_name(e: dict[str, Any]) -> str:
    """The event type, and a research step's kind and tool (``tool search_corpus``) in place of
    ``step`` or after a run's last event type (``succeeded: tool publish_report``)."""
    p = e["payload"] if isinstance(e["payload"], dict) else {}
    if e["type"] == "waiting":
        asked = p.get("approval") or {}
        return f"waiting: approval of {asked['tool']}" if asked else f"waiting: {p.get('signal') or 'timer'}"
    if e["type"] == "signal":
        data = p.get("data")
        if p.get("name") == "message" and isinstance(data, dict) and isinstance(data.get("text"), str):
            return f"message from {p.get('sender')}: {_clip(data['text'])}"
        return f"signal {p.get('name')} from {p.get('sender')}"
    if e["type"] == "reply":
        cites = " ".join(f"[{c}]" for c in p.get("citations") or [])
        return f"reply, turn {p.get('turn')}: {_clip(str(p.get('reply', '')))}" + (f" {cites}" if cites else "")
    if e["type"] in ("timed_out", "woke"):
        late = p.get("late_seconds")
        return f"{e['type']}" + (f" ({float(late):.2f}s late)" if late is not None else "")
    what = activity(e["payload"])
    if e["type"] == "step":
        return what or "step"
    return f"{e['type']}: {what}" if what else e["type"]


def _clip(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def conversation(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """A session's turns from its events: (turn, message, reply), in order."""
    said = {p.get("key"): (p.get("data") or {}).get("text", "") for e in events
            if e["type"] == "signal" and isinstance(p := e["payload"], dict) and isinstance(p.get("data"), dict)}
    return [(p.get("turn"), str(said.get(p.get("message_key"), "")), str(p.get("reply", ""))) for e in events
            if e["type"] == "reply" and isinstance(p := e["payload"], dict)]


def run_view(doc: dict[str, Any]) -> Group:
    head = _head()
    head.add_row("run", Text(doc["run_id"]))
    head.add_row("workflow", Text(doc["workflow"]))
    head.add_row("status", status_text(doc["status"]))
    head.add_row("created", Text(f"{when(doc['created_at'])}, updated {when(doc['updated_at'])}"))
    head.add_row("input", compact_json(doc["input"]))
    if doc["result"] is not None:
        head.add_row("result", result_summary(doc["run_id"], doc["result"]))
    if doc["error"] is not None:
        error = doc["error"]
        message = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else str(error)
        head.add_row("error", Text(message, style="red"))
    if doc.get("parent"):
        p = doc["parent"]
        head.add_row("parent", Text(f"{p['run_id']} (child {p['index']} of its step {p['seq']})"))
    if doc.get("children"):
        head.add_row("children", Text(children_line(doc["children"])))
    if doc["waiting"]:
        head.add_row("waiting for", Text("its children") if doc.get("children") and not doc["waiting"]["signal"]
                     and not doc["waiting"]["timeout_at"] else waiting_text(doc["waiting"]))
    if doc.get("throttled"):
        t = doc["throttled"]
        due = f", due at {when(t['due_at'])}" if t["due_at"] else ""
        head.add_row("throttled", Text(f"{t['text']}{due}", style="yellow"))
    if doc["in_flight"]:
        f = doc["in_flight"]
        head.add_row("in flight", Text(f"step {f['seq']} on {f['worker']} (pid {f['pid']}, attempt {f['attempt']})"))
    events = table()
    events.add_column("seq", justify="right", no_wrap=True)
    events.add_column("event", overflow="fold")
    events.add_column("worker", overflow="fold")
    events.add_column("pid", justify="right", no_wrap=True)
    events.add_column("attempt", justify="right", no_wrap=True)
    events.add_column("at", no_wrap=True)
    for e in doc["events"]:
        attempt = Text(str(e["attempt"]), style="bold yellow" if e["attempt"] > 1 else "")
        events.add_row(
            str(e["seq"]), Text(event_name(e)), Text(e["worker"] or ""), str(e["pid"] or ""), attempt,
            when(e["created_at"], "%H:%M:%S.%f")[:-3],
        )
    n = len(doc["events"])
    parts: list[Any] = [head]
    turns = conversation(doc["events"])
    if turns:  # a session: its conversation first, then the events that made it
        talk = Text(f"\nconversation ({len(turns)} turn{'' if len(turns) == 1 else 's'})\n", style="bold")
        for turn, message, reply in turns:
            talk.append(f"{turn}. you: ", style="bold")
            talk.append(f"{message}\n")
            talk.append("   agent: ", style="bold")
            talk.append(f"{_clip(reply, 400)}\n")
        parts.append(talk)
    return Group(*parts, Text(f"\n{n} event{'' if n == 1 else 's'}", style="bold"), events)


def runs_table(rows: list[dict[str, Any]]) -> Table:
    runs = table()
    runs.add_column("run", no_wrap=True)  # never cut: operators paste run ids
    runs.add_column("workflow", overflow="fold")
    runs.add_column("status", no_wrap=True)
    runs.add_column("created", overflow="fold")
    runs.add_column("updated", overflow="fold")
    for r in rows:
        runs.add_row(
            whole(r["run_id"]), Text(r["workflow"]), whole(r["status"], STATUS_STYLE.get(r["status"], "")),
            when(r["created_at"]), when(r["updated_at"]),
        )
    return runs
