"""The warm tier's summaries: when to condense a run's history, a generic extractive condenser, and
the write that records a summary (searchable) in the same transaction as its ``summary`` event.

A workflow summarizes in a step of its own::

    if should_summarize(ctx, every_steps=s.summary_every_steps, budget_tokens=s.context_budget_tokens):
        text = condense(pending_events(engine, ctx), ctx.summary, max_tokens=s.context_budget_tokens // 4)
        steps.commit(engine, claim, worker, event_type=SUMMARY_EVENT, state=state,
                     payload=summary_payload(text), extra_writes=[summary_write(run_id, claim.seq, text)])

Workflows with a model may bring their own condenser; the event and the write stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from checkpoint.artifacts import is_pointer_json
from checkpoint.context import SUMMARY_EVENT, RunContext, summary_payload
from checkpoint.errors import HistoryInputError
from checkpoint.jsonutil import dumps
from checkpoint.queries import load
from checkpoint.tokens import clip_to_tokens, count_tokens

Q = load(Path(__file__).with_name("history.sql"))  # the history tiers' named SQL

__all__ = ["SUMMARY_EVENT", "condense", "pending_events", "should_summarize", "summary_payload", "summary_write"]

_MIN_LINE_TOKENS = 24  # below this an event's line says nothing; fewer events get more room instead


def should_summarize(ctx: RunContext, *, every_steps: int, budget_tokens: int) -> bool:
    """Whether the run should write a summary now: ``every_steps`` events have passed since the last
    one, or its history no longer fits (events were left out of the context, or it holds
    ``budget_tokens`` or more)."""
    if not isinstance(every_steps, int) or every_steps < 1:
        raise HistoryInputError(f"every_steps must be an int >= 1 (STEPLOG_SUMMARY_EVERY_STEPS), got {every_steps!r}")
    if not isinstance(budget_tokens, int) or budget_tokens < 1:
        raise HistoryInputError(f"budget_tokens must be an int >= 1, got {budget_tokens!r}")
    since = ctx.seq - (ctx.summary_seq or 0)
    if since == 0:
        return False
    return since >= every_steps or ctx.omitted > 0 or ctx.tokens >= budget_tokens


def pending_events(engine: Engine, ctx: RunContext, *, limit: int = 500) -> list[dict[str, Any]]:
    """The events a new summary must cover: those after ``ctx``'s summary up to ``ctx.seq``, oldest
    first, at most ``limit`` (the newest are kept when there are more)."""
    after = ctx.summary_seq or 0
    start = max(after, ctx.seq - limit)
    with engine.connect() as conn:
        rows = conn.execute(Q["events_between"], dict(run_id=ctx.run_id, after=start, through=ctx.seq, limit=limit))
        return [dict(r._mapping) for r in rows]


def condense(events: list[dict[str, Any]], previous_summary: str | None, *, max_tokens: int) -> str:
    """An extractive summary within ``max_tokens``: the previous summary (up to half the room), then
    one line per event, ``#seq type: key=value; ...`` from its payload, newest events first to get
    room. Artifact references become ``[artifact N bytes]``; nothing is fetched."""
    if not isinstance(max_tokens, int) or max_tokens < 16:
        raise HistoryInputError(f"max_tokens must be an int >= 16, got {max_tokens!r}")
    parts: list[str] = []
    room = max_tokens
    if previous_summary:
        head = clip_to_tokens(previous_summary.strip(), max_tokens // 2 if events else max_tokens)
        parts.append(head)
        room -= count_tokens(head) + 1
    lines: list[str] = []
    if events and room > 0:
        ordered = sorted(events, key=lambda e: e["seq"], reverse=True)
        fit = max(1, min(len(ordered), room // _MIN_LINE_TOKENS))
        per_line = room // fit
        for event in ordered[:fit]:
            line = clip_to_tokens(_line(event), per_line - 1)
            if line:
                lines.append(line)
        skipped = len(ordered) - len(lines)
        lines.reverse()
        if skipped:
            note = f"({skipped} earlier events not shown)"
            if count_tokens("\n".join([*parts, note, *lines])) <= max_tokens:
                lines.insert(0, note)
    text = "\n".join([*parts, *lines])
    return clip_to_tokens(text, max_tokens)


def summary_write(run_id: str, seq: int, text: str) -> Callable[[Connection], None]:
    """An extra write for ``checkpoint.steps.commit``: the summary row for ``run_id``/``seq`` (found by
    :func:`checkpoint.recall.search_memory`), committed with the ``summary`` event or not at all."""
    if not isinstance(text, str) or not text.strip():
        raise HistoryInputError("summary_write needs a non-empty text")

    def write(conn: Connection) -> None:
        conn.execute(Q["insert_summary"], dict(run_id=run_id, seq=seq, text=text))

    return write


def _line(event: dict[str, Any]) -> str:
    return f"#{event['seq']} {event['type']}: {_gist(event.get('payload'))}"


def _gist(value: Any, prefix: str = "") -> str:
    """A payload flattened to ``key=value`` pairs, strings first-class, structure dropped."""
    if is_pointer_json(value):
        size = value["$artifact"].get("size")
        return f"{prefix}[artifact {size} bytes]"
    if isinstance(value, dict):
        # Nested keys read as a path: result.title=...
        parts = (_gist(v, f"{prefix[:-1]}.{k}=" if prefix else f"{k}=") for k, v in value.items())
        return "; ".join(p for p in parts if p)
    if isinstance(value, list):
        return "; ".join(p for p in (_gist(v, prefix) for v in value) if p)
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return f"{prefix}{' '.join(value.split())}"
    return f"{prefix}{dumps(value)}"
