"""Recall: search past runs' summaries and notes (Postgres full-text search) for prior context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from checkpoint.errors import HistoryInputError
from checkpoint.queries import load

Q = load(Path(__file__).with_name("history.sql"))  # the history tiers' named SQL

MAX_LIMIT = 100


@dataclass(frozen=True)
class MemoryHit:
    """One search result: a ``summary`` (with its ``seq``), a ``note``, or a session's ``turn`` (its reply's
    ``seq``) of run ``run_id``.

    ``source`` says where the text is (``summary@<seq>``, ``note:<key>`` or ``turn:<n>``); ``rank`` is Postgres's
    ``ts_rank_cd`` (higher is more relevant).
    """

    kind: str
    run_id: str
    seq: int | None
    source: str
    text: str
    rank: float


def search_memory(engine: Engine, query: str, *, limit: int = 5, run_id: str | None = None) -> list[MemoryHit]:
    """Summaries, notes and turns matching ``query`` (web-search syntax: words, "phrases", OR, -word;
    English stemming), most relevant first; ``run_id`` restricts the search to one run."""
    if not isinstance(query, str) or not query.strip():
        raise HistoryInputError("search_memory needs a non-empty query")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise HistoryInputError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    with engine.connect() as conn:
        rows = conn.execute(Q["search_memory"], dict(query=query, limit=limit, run_id=run_id)).all()
    return [MemoryHit(r.kind, r.run_id, r.seq, r.source, r.text, float(r.rank)) for r in rows]
