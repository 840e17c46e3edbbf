"""`steplog signal | approve | reject` and `steplog schedule add | list | remove`: runs that wait.

Exit codes: 0 done (a repeated signal or approval with the same key included: it says it was already
delivered), 1 the run does not exist, has ended, or waits for no approval; 2 bad input (malformed
`--data`, cron expression, time zone...). Nothing is written on an error.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from workers.cli.common import ctx, fail, operator, out, print_json

schedule_app = typer.Typer(no_args_is_help=True, help="Runs started on a cron schedule, fired by the workers.")


def _json_option(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        fail(f"{flag} is not valid JSON: {exc}", 2)


def _said(outcome: Any, run_id: str, what: str) -> dict[str, Any]:
    """The outcome as `--json` prints it, and as a line for people."""
    doc = {"run_id": run_id, "key": outcome.key, "status": outcome.status, "seq": outcome.delivered_seq}
    if outcome.status == "delivered":
        line = f"{what} delivered: run {run_id} resumes (event {outcome.delivered_seq})"
    elif outcome.status == "buffered":
        line = f"{what} stored: run {run_id} does not wait for it yet; its next wait for it takes it"
    elif outcome.delivered_seq is not None:
        line = f"{what} was already delivered (key {outcome.key}, event {outcome.delivered_seq}); nothing sent again"
    else:
        line = f"{what} was already stored (key {outcome.key}); nothing sent again"
    doc["message"] = line
    return doc


def signal(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    name: Annotated[str, typer.Argument(help="Signal name, e.g. approve.")],
    data: Annotated[str | None, typer.Option("--data", help="The signal's data as JSON.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Deduplication key: the same key twice delivers once.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"run_id", "key", "status", "seq", "message"}.')] = False,
) -> None:
    """Send signal NAME to a run: stored first, delivered once; a run waiting for it resumes at once."""
    value = _json_option(data, "--data")
    outcome = ctx.celery.steplog.signal(run_id, name, value, key=key, sender=operator())
    doc = _said(outcome, run_id, f"signal {name!r}")
    print_json(doc) if as_json else out.print(Text(doc["message"]))


def approve(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    note: Annotated[str | None, typer.Option("--note", help="A note recorded with the approval.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve the tool call a run waits on: it runs exactly once, with the key it was shown with."""
    outcome = ctx.celery.steplog.decide(run_id, approved=True, by=operator(), text=note)
    doc = _said(outcome, run_id, "approval")
    print_json(doc) if as_json else out.print(Text(doc["message"]))


def reject(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: the agent is told, and goes on without the call.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject the tool call a run waits on: it is not made; the agent gets the reason as an observation."""
    if not reason.strip():
        fail("--reason must not be empty", 2)
    outcome = ctx.celery.steplog.decide(run_id, approved=False, by=operator(), text=reason)
    doc = _said(outcome, run_id, "rejection")
    print_json(doc) if as_json else out.print(Text(doc["message"]))


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name (unique).")],
    workflow: Annotated[str, typer.Argument(help="Workflow each tick starts, e.g. research.")],
    cron: Annotated[str, typer.Option("--cron", help="Cron expression: 5 fields, or 6 with seconds last.")],
    input: Annotated[str, typer.Option("--input", "-i", help="The workflow's input as JSON.")] = "{}",
    timezone: Annotated[str, typer.Option("--timezone", help="Time zone the cron expression is read in.")] = "UTC",
    overlap: Annotated[str, typer.Option("--overlap", help="skip: no tick while the last run goes on; allow.")] = "skip",
    catch_up: Annotated[str, typer.Option("--catch-up", help="After an outage: none, one (the latest) or all missed ticks.")] = "one",
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name", "next_fire_at"}.')] = False,
) -> None:
    """Start a run of WORKFLOW at each tick of --cron, fired by any worker (no beat process)."""
    raw = _json_option(input, "--input")
    if not isinstance(raw, dict):
        fail(f"--input must be a JSON object, got {type(raw).__name__}", 2)
    first = ctx.celery.steplog.add_schedule(name, cron, workflow, raw, timezone=timezone, overlap=overlap,
                                            catch_up=catch_up, created_by=operator())
    if as_json:
        print_json({"name": name, "next_fire_at": first.isoformat()})
    else:
        out.print(Text(f"schedule {name!r} added: {workflow} at '{cron}' ({timezone}), first tick {first.isoformat()}"))


@schedule_app.command("list")
def schedule_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every schedule: its cron, workflow, next tick and the runs it started."""
    from checkpoint import schedules
    from workers.cli.render import iso, table, whole

    rows = [
        {**{k: v for k, v in r.items() if k not in ("next_fire_at", "created_at", "last_tick")},
         "next_fire_at": iso(r["next_fire_at"]), "created_at": iso(r["created_at"]), "last_tick": iso(r["last_tick"])}
        for r in schedules.listing(ctx.engine)
    ]
    if as_json:
        print_json(rows)
        return
    t = table()
    for column in ("name", "cron", "timezone", "workflow", "overlap", "catch-up", "next tick", "runs"):
        t.add_column(column, overflow="fold")
    for r in rows:
        t.add_row(whole(r["name"]), Text(r["cron"]), Text(r["timezone"]), Text(r["workflow"]), r["overlap"],
                  r["catch_up"], Text(r["next_fire_at"] or ""), str(r["runs"]))
    out.print(t)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Remove a schedule; the runs it started go on."""
    from checkpoint import schedules

    schedules.remove(ctx.engine, name)
    out.print(Text(f"schedule {name!r} removed"))
