"""search_memory (read): what earlier runs learned and sessions said: summaries, notes, turns (full-text search)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools.declaration import Effect, ToolContext, tool
from tools.errors import TransientToolError


class MemoryInput(BaseModel):
    query: str = Field(min_length=1, max_length=1000, description="Words or quoted phrases to look for.")
    limit: int = Field(5, ge=1, le=50, description="Most results to return.")
    this_run_only: bool = Field(False, description="Search only this run's own summaries, notes and turns.")


class MemoryItem(BaseModel):
    kind: str = Field(description="summary, note, or turn (of a conversation)")
    run_id: str
    source: str
    text: str


class MemoryOutput(BaseModel):
    results: list[MemoryItem]


@tool("search_memory", "1", Effect.READ)
def search_memory(ctx: ToolContext, args: MemoryInput) -> MemoryOutput:
    """Search past runs' summaries and notes and sessions' turns, most relevant first, to reuse prior context."""
    from sqlalchemy.exc import SQLAlchemyError

    from checkpoint import recall

    try:
        hits = recall.search_memory(ctx.engine, args.query, limit=args.limit,
                                    run_id=ctx.run_id if args.this_run_only else None)
    except SQLAlchemyError as exc:
        raise TransientToolError(f"cannot search memory: {exc}") from exc
    return MemoryOutput(results=[MemoryItem(kind=h.kind, run_id=h.run_id, source=h.source, text=h.text) for h in hits])
