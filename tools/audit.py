"""The audit view of a run's tool calls: rows for ``steplog tools RUN [--json]`` and a rich table."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tools.errors import LedgerError
from tools.ledger import Q

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "unknown": "bold magenta", "started": "yellow"}


def ledger_rows(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Every tool call of run ``run_id`` in step order, JSON-ready (times as ISO 8601 strings)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(Q["ledger_rows"], dict(run_id=run_id)).mappings().all()
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot read the tool ledger of run {run_id}: {exc}") from exc
    out = []
    for r in rows:
        out.append(
            {
                "seq": r["seq"],
                "tool": r["tool"],
                "version": r["version"],
                "key": r["key"],
                "status": r["status"],
                "attempts": r["attempts"],
                "replays": r["replays"],
                "duration_ms": None if r["duration_ms"] is None else round(r["duration_ms"], 1),
                "error": r["error"],
                "worker": r["worker"],
                "owner": r["owner"],
                "started_at": r["started_at"].isoformat() if r["started_at"] else None,
                "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
            }
        )
    return out


def render_table(rows: list[dict[str, Any]], *, title: str | None = None) -> Table:
    """The rows of :func:`ledger_rows` as a table for the terminal."""
    table = Table(title=title, header_style="bold")
    for name, justify in (
        ("seq", "right"), ("tool", "left"), ("key", "left"), ("status", "left"), ("attempts", "right"),
        ("replays", "right"), ("ms", "right"), ("error", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        error = r.get("error") or {}
        status = r["status"]
        table.add_row(
            str(r["seq"]),
            r["tool"],
            r["key"][:12],
            f"[{_STATUS_STYLE.get(status, '')}]{status}[/]" if status in _STATUS_STYLE else status,
            str(r["attempts"]),
            str(r["replays"]),
            "" if r.get("duration_ms") is None else f"{r['duration_ms']:.1f}",
            f"{error.get('type', '')}: {error.get('message', '')}"[:120] if error else "",
        )
    return table
