"""`steplog gc --older-than DAYS`: archive finished runs' events to the artifact store.

Each run's events become one gzip JSON-lines object (content-addressed, verified after upload) and
leave Postgres; the run row keeps a pointer, so `steplog show` still reads the run. Summaries stay
searchable. Safe to re-run and to run from several hosts at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.common import ctx, out, print_json
from workers.cli.errors import CommandFailed


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
    from workers.wiring import artifact_store

    store = artifact_store(ctx.settings)  # a bad STEPLOG_ARTIFACTS_URL: ArtifactConfigError, exit 2
    try:
        archived = collect(ctx.engine, store, older_than)
    except (HistoryError, ArtifactError) as exc:
        # Exit 1 whatever the error's own code: gc was under way (as this command always did).
        raise CommandFailed(f"gc stopped: {exc}", 1) from exc
    if json_:
        print_json({"archived": archived, "count": len(archived)})
    else:
        out.print(f"archived {len(archived)} run{'s' if len(archived) != 1 else ''}")
        for run_id in archived:
            out.print(f"  {run_id}", markup=False, highlight=False)
