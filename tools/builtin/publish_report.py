"""publish_report (write): the run's report, one row per run; the same key again is a no-op."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tools.builtin.research_tables import reports
from tools.declaration import Effect, ToolContext, tool
from tools.errors import PermanentToolError, TransientToolError


class ReportInput(BaseModel):
    markdown: str = Field(min_length=1, max_length=1_000_000, description="The report, in Markdown.")
    citations: list[str] = Field(default_factory=list, max_length=500, description="Sources cited.")


class ReportOutput(BaseModel):
    run_id: str
    key: str = Field(description="The key of the call that published this version.")


@tool("publish_report", "1", Effect.WRITE)
def publish_report(ctx: ToolContext, args: ReportInput) -> ReportOutput:
    """Publish (or replace) the run's report."""
    stmt = insert(reports).values(run_id=ctx.run_id, markdown=args.markdown, citations=args.citations, key=ctx.key)
    # A later call (another key) replaces the report; the same key again changes nothing.
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id"],
        set_=dict(markdown=stmt.excluded.markdown, citations=stmt.excluded.citations, key=stmt.excluded.key,
                  published_at=stmt.excluded.published_at),
        where=reports.c.key != stmt.excluded.key,
    )
    try:
        with ctx.engine.begin() as conn:
            conn.execute(stmt)
    except IntegrityError as exc:
        raise PermanentToolError(f"cannot publish the report: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise TransientToolError(f"cannot publish the report: {exc}") from exc
    return ReportOutput(run_id=ctx.run_id, key=ctx.key)
