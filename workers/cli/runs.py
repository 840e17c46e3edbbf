"""`steplog submit | show | runs | cancel | tools`: start runs and look at them.

`show` and `runs` read through :mod:`workers.cli.pg` (psycopg alone), so they answer without loading
SQLAlchemy or Celery; `submit`, `cancel` and `tools` use the same layers as the workers.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from workers.cli.common import ctx, fail, operator, out, print_json


def submit(
    workflow: Annotated[str, typer.Argument(help="Workflow name, e.g. countdown.")],
    input: Annotated[str, typer.Option("--input", "-i", help="The workflow's input as JSON.")] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"run_id\": ...}.")] = False,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the run belongs to.")] = "default",
    traceparent: Annotated[str | None, typer.Option(
        "--traceparent", help="W3C trace context (00-TRACE-SPAN-FLAGS) every step's span continues.")] = None,
    priority: Annotated[int, typer.Option("--priority", help="0-9: steps of higher priority runs are taken first.")] = 0,
) -> None:
    """Start a run of WORKFLOW; prints its run id."""
    if not 0 <= priority <= 9:
        fail(f"--priority must be an integer from 0 to 9, got {priority}", 2)
    try:
        raw = json.loads(input)
    except json.JSONDecodeError as exc:
        fail(f"--input is not valid JSON: {exc}", 2)
    if not isinstance(raw, dict):
        fail(f"--input must be a JSON object, got {type(raw).__name__}", 2)
    run_id = ctx.celery.steplog.submit(workflow, raw, submitted_by=operator(), tenant=tenant, traceparent=traceparent,
                                       priority=priority)
    print_json({"run_id": run_id}) if as_json else out.print(run_id, markup=False, highlight=False)


def show(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    children: Annotated[bool, typer.Option("--children", help="List the run's child runs (fan-out) instead.")] = False,
) -> None:
    """A run's status, input, result or error, the step in flight, its children and parent, and its events."""
    from workers.cli import pg
    from workers.cli.render import (
        child_json,
        children_json,
        children_table,
        parent_json,
        run_json,
        run_view,
    )

    run = pg.get_run(ctx.db, run_id)
    if children:
        rows = pg.children(ctx.db, run_id)
        print_json([child_json(r) for r in rows]) if as_json else out.print(children_table(rows))
        return
    throttle = pg.throttle(ctx.db, run_id) if run["status"] in ("queued", "running") else None
    doc = run_json(run, pg.events(ctx.db, run_id), pg.in_flight(ctx.db, run_id), throttle)
    doc["children"] = children_json(pg.children_counts(ctx.db, run_id))
    doc["parent"] = parent_json(pg.family(ctx.db, run_id))
    print_json(doc) if as_json else out.print(run_view(doc))


def list_runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most recent runs, newest first."""
    from workers.cli import pg
    from workers.cli.render import run_summary_json, runs_table

    if status is not None:
        from checkpoint.statuses import RUN_STATUSES

        if status not in RUN_STATUSES:
            fail(f"--status must be one of {', '.join(RUN_STATUSES)}; got {status!r}", 2)
    rows = [run_summary_json(r) for r in pg.recent(ctx.db, status=status, limit=limit)]
    print_json(rows) if as_json else out.print(runs_table(rows))


def cancel(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Cancel a run: no further step is dispatched; a step in flight finishes first."""
    from checkpoint import runs

    outcome = runs.cancel(ctx.engine, run_id, by=operator(), lease_seconds=ctx.settings.lease_seconds)
    if outcome.status == "cancelled":
        out.print(f"run {run_id} cancelled", markup=False)
    elif outcome.status == "requested":
        step = f"step {outcome.in_flight_seq}" if outcome.in_flight_seq else "the step in flight"
        out.print(f"run {run_id}: cancel requested; {step} finishes, then the run ends cancelled", markup=False)
    else:
        out.print(f"run {run_id} is already {outcome.status.removeprefix('already_')}; nothing to cancel", markup=False)


def tool_calls(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The tool ledger of a run: each call's tool, key, status, attempts, replays, duration, error."""
    from checkpoint import runs
    from tools.audit import ledger_rows, render_table

    runs.get(ctx.engine, run_id)  # RunNotFound: exit 1
    rows = ledger_rows(ctx.engine, run_id)
    print_json(rows) if as_json else out.print(render_table(rows, width=out.width))
