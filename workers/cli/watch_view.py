"""What `steplog watch` shows: a run's progress folded from its events, and the rich view of it.

Kept apart from the polling loop so the view is a pure function of what was read from Postgres.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from checkpoint.statuses import TERMINAL_STATUSES
from workers.cli.render import activity as payload_activity
from workers.cli.render import children_line, result_line, status_text, waiting_json, waiting_text
from workers.cli.render import table as plain_table

RECENT = 12  # rows of the recent-steps table


def step_budget(input: Any) -> int | None:
    """Steps the run may take: research runs say ``max_steps``, countdown runs ``steps``; else unknown."""
    if not isinstance(input, dict):
        return None
    for key in ("max_steps", "steps"):
        value = input.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    return event["payload"] if isinstance(event.get("payload"), dict) else {}


def tokens_of(event: dict[str, Any]) -> int:
    usage = _payload(event).get("usage")
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else 0


def activity(event: dict[str, Any]) -> str:
    """``kind tool`` of a research event (e.g. ``tool fetch_url``); empty for payloads without them."""
    return payload_activity(_payload(event))


@dataclass
class WatchState:
    """Everything the view needs, updated from each poll; events arrive once each, in seq order."""

    run: dict[str, Any]
    in_flight: dict[str, Any] | None = None
    last_seq: int = 0
    steps_done: int = 0
    tokens: int = 0
    latest: dict[str, Any] | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    children: dict[str, int] | None = None  # a fan-out's children by status (render.children_json)

    @property
    def finished(self) -> bool:
        return self.run["status"] in TERMINAL_STATUSES

    def update(self, run: dict[str, Any], events: list[dict[str, Any]], in_flight: dict[str, Any] | None) -> None:
        self.run, self.in_flight = run, in_flight
        for e in events:
            if e["seq"] <= self.last_seq:  # never count an event twice
                continue
            self.last_seq = e["seq"]
            if e["attempt"] > 0:  # a step's event; `submitted` and `cancelled` are written by no step
                self.steps_done += 1
            self.tokens += tokens_of(e)
            self.latest = e
            self.recent.append(e)

    def elapsed(self, now: datetime | None = None) -> float:
        end = self.run["updated_at"] if self.finished else (now or datetime.now(timezone.utc))
        return max(0.0, (end - self.run["created_at"]).total_seconds())


def _current(state: WatchState, now: datetime | None = None) -> Text:
    f = state.in_flight
    if f is not None:
        return Text(f"step {f['seq']} on {f['worker']} (pid {f['pid']}, attempt {f['attempt']})")
    waiting = waiting_json(state.run)
    if waiting is not None and state.children and not waiting["signal"] and not waiting["timeout_at"]:
        return Text("waiting for its children")
    if waiting is not None:
        return Text("waiting for ").append_text(waiting_text(waiting, now))
    return Text("-" if state.finished else "waiting for a worker")


def _steps_table(state: WatchState) -> Table:
    table = plain_table()
    table.title = "recent steps"
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("kind/tool", overflow="fold")
    table.add_column("worker", overflow="fold")
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    previous_worker = None
    for e in state.recent:
        what = Text(activity(e))
        if _payload(e).get("replayed"):
            what.append(" (replayed)", style="bold magenta")
        attempt = Text(str(e["attempt"]), style="bold yellow" if e["attempt"] > 1 else "")
        # A step on another worker than the one before it: the run migrated.
        moved = previous_worker is not None and e["worker"] != previous_worker and e["attempt"] > 0
        worker = Text(e["worker"] or "", style="bold cyan" if moved else "")
        if e["attempt"] > 0:
            previous_worker = e["worker"]
        at = e["created_at"]
        at = at.strftime("%H:%M:%S.%f")[:-3] if isinstance(at, datetime) else str(at)
        table.add_row(str(e["seq"]), Text(e["type"]), what, worker, str(e["pid"] or ""), attempt, at)
    return table


def watch_view(state: WatchState, now: datetime | None = None) -> Group:
    run = state.run
    budget = step_budget(run["input"])
    head = Table.grid(padding=(0, 2))
    head.add_row("run", Text(run["run_id"]))
    head.add_row("workflow", Text(run["workflow"]))
    head.add_row("status", status_text(run["status"]))
    done = f"{state.steps_done}/{budget}" if budget is not None else str(state.steps_done)
    # ProgressBar pulses when the total is unknown.
    bar = ProgressBar(total=budget if budget else None, completed=min(state.steps_done, budget or 0), width=40)
    progress = Table.grid(padding=(0, 1))
    progress.add_row(bar, Text(f"{done} step{'' if budget is None and state.steps_done == 1 else 's'}"))
    head.add_row("progress", progress)
    head.add_row("current", _current(state, now))
    if state.children:
        head.add_row("children", Text(children_line(state.children)))
    if state.latest is not None and activity(state.latest):
        head.add_row("last", Text(activity(state.latest)))
    head.add_row("elapsed", f"{state.elapsed(now):.1f}s")
    head.add_row("tokens", str(state.tokens))
    return Group(head, _steps_table(state))


def final_line(state: WatchState) -> Text:
    """The last line of `steplog watch`: how the run ended."""
    run = state.run
    line = Text(f"run {run['run_id']} ")
    line.append_text(status_text(run["status"]))
    line.append(f" after {state.steps_done} step{'' if state.steps_done == 1 else 's'} in {state.elapsed():.1f}s")
    if run["status"] == "succeeded" and run["result"] is not None:
        line.append(f": {result_line(run['run_id'], run['result'])}")
    elif run["error"] is not None:
        err = run["error"]
        line.append(f": {err.get('type')}: {err.get('message')}" if isinstance(err, dict) else f": {err}", style="red")
    return line
