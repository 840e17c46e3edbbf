"""save_note (write): keep a note for the run, keyed by the call's idempotency key."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tools.builtin.research_tables import notes
from tools.declaration import Effect, ToolContext, tool
from tools.errors import PermanentToolError, TransientToolError


class NoteInput(BaseModel):
    text: str = Field(min_length=1, max_length=100_000, description="The note.")
    citations: list[str] = Field(default_factory=list, max_length=100, description="Sources (URLs or doc ids).")


class NoteOutput(BaseModel):
    note_id: str


@tool("save_note", "1", Effect.WRITE)
def save_note(ctx: ToolContext, args: NoteInput) -> NoteOutput:
    """Save a note (with citations) for later steps and for full-text search."""
    # The key is the primary key: executing again after a lost answer writes nothing new.
    stmt = insert(notes).values(key=ctx.key, run_id=ctx.run_id, text=args.text, citations=args.citations)
    try:
        with ctx.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
    except IntegrityError as exc:
        raise PermanentToolError(f"cannot save the note: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise TransientToolError(f"cannot save the note: {exc}") from exc
    return NoteOutput(note_id=ctx.key)
