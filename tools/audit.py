"""The audit view of a run's tool calls: rows for ``steplog tools RUN [--json]`` and a rich table."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
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


def render_table(
    rows: list[dict[str, Any]], *, title: str | None = None, width: int | None = None
) -> RenderableType:
    """The rows of :func:`ledger_rows` as a table for the terminal. Tool names and keys are shown whole,
    never cut, and nothing from the ledger is read as markup. When the table is wider than ``width``
    (the terminal's), each call's key goes on a line of its own under the call."""
    from rich import box
    from rich.console import Console, Group
    from rich.text import Text

    fields = (("tool", "left"), ("status", "left"), ("attempts", "right"), ("replays", "right"), ("ms", "right"),
              ("error", "left"))

    def table(*columns: tuple[str, str]) -> Table:
        t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
        for name, justify in columns:
            # Columns of short values do not wrap, so a narrow terminal folds the others first; the
            # values fold too (never cut) should even that not be enough.
            wraps = name in ("error", "call")
            t.add_column(name, justify=justify, no_wrap=not wraps, overflow="fold")  # type: ignore[arg-type]
        return t

    def whole(value: str, style: str = "") -> Text:
        return Text(value, style=style, no_wrap=False, overflow="fold")

    def cells(r: dict[str, Any]) -> list[Text]:
        error = r.get("error") or {}
        return [
            whole(r["tool"]),
            whole(r["status"], _STATUS_STYLE.get(r["status"], "")),
            Text(str(r["attempts"])),
            Text(str(r["replays"])),
            Text("" if r.get("duration_ms") is None else f"{r['duration_ms']:.1f}"),
            Text(f"{error.get('type', '')}: {error.get('message', '')}"[:120] if error else ""),
        ]

    lines = [cells(r) for r in rows]
    wide = table(("seq", "right"), fields[0], ("key", "left"), *fields[1:])
    for r, (tool, *rest) in zip(rows, lines, strict=True):
        wide.add_row(str(r["seq"]), tool, whole(r["key"]), *rest)
    if width is None or Console(width=10_000).measure(wide).maximum <= width:
        return wide
    # Too narrow for 64-character keys beside the rest: a call's fields on one line (a grid with the
    # same column widths in every row keeps them aligned), its key on the next.
    widths = [max(len(name), *(line[i].cell_len for line in lines)) for i, (name, _) in enumerate(fields)]

    def line(values: list[Text]) -> Table:
        grid = Table.grid(padding=(0, 2))
        for (name, justify), w in zip(fields, widths, strict=True):
            last = name == "error"
            grid.add_column(  # type: ignore[arg-type]
                justify=justify, width=None if last else w, no_wrap=not last, overflow="fold"
            )
        grid.add_row(*values)
        return grid

    stacked = table(("seq", "right"), ("call", "left"))
    stacked.columns[1].header = line([Text(name, style="bold") for name, _ in fields])
    for r, values in zip(rows, lines, strict=True):
        stacked.add_row(str(r["seq"]), Group(line(values), whole(f"key {r['key']}")))
    return stacked
