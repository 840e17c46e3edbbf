"""`steplog gc --older-than DAYS`: archive finished runs' events to the artifact store.

Each run's events become one gzip JSON-lines object (content-addressed, verified after upload) and
leave Postgres; the run row keeps a pointer, so `steplog show` still reads the run. Summaries stay
searchable. Safe to re-run and to run from several hosts at once.

Mounted in `workers.cli` with ``app.command("gc")(gc)``; ``python -m workers.gc_cmd`` runs it alone.
"""

from __future__ import annotations

from typing import Annotated

import typer


def gc(
    older_than: Annotated[
        float,
        typer.Option("--older-than", min=0, help="Archive runs finished more than this many days ago (0: all finished)."),
    ],
    json_: Annotated[bool, typer.Option("--json", help='Print {"archived": [run ids], "count": N}.')] = False,
) -> None:
    """Archive finished runs' events to the artifact store, leaving a pointer in Postgres."""
    from checkpoint.archive import gc as collect
    from checkpoint.artifacts import ArtifactError
    from checkpoint.errors import HistoryError
    from workers.cli import _db_errors, ctx, fail, out, print_json  # lazily: workers.cli imports this module
    from workers.wiring import artifact_store

    def run() -> list[str]:
        try:
            store = artifact_store(ctx.settings)
        except ArtifactError as exc:
            fail(str(exc), 2)
        try:
            return collect(ctx.engine, store, older_than)
        except (HistoryError, ArtifactError) as exc:
            fail(f"gc stopped: {exc}", 1)

    archived = _db_errors(run)()
    if json_:
        print_json({"archived": archived, "count": len(archived)})
    else:
        out.print(f"archived {len(archived)} run{'s' if len(archived) != 1 else ''}")
        for run_id in archived:
            out.print(f"  {run_id}")


if __name__ == "__main__":
    app = typer.Typer(add_completion=False)
    app.command()(gc)
    app()
