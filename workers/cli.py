"""`steplog`: the operator's command line. Flags and `--json` shapes are a contract; see the README.

Exit codes: 0 done, 1 the thing asked about does not exist or the operation failed, 2 bad input or
bad settings (nothing was written).
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from functools import cached_property
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError

from checkpoint import runs
from checkpoint.db import make_engine
from checkpoint.errors import RunNotFound
from tasks.workflow import WorkflowError
from workers.chaos_cmd import chaos
from workers.demo import demo
from workers.research_cmd import corpus_app, report, research
from workers.flower_cmd import flower
from workers.gc_cmd import gc
from workers.local.cli import services_app
from workers.settings import Settings, SettingsError, load_settings
from workers.watch_cmd import watch

app = typer.Typer(no_args_is_help=True, add_completion=False, help="steplog: durable agent runs on a worker fleet.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
app.add_typer(services_app, name="services", help="The project's own local Postgres and Redis (no Docker needed).")

out = Console()
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


class Context:
    """Settings, engine and Celery app, built only when a command needs them."""

    @cached_property
    def settings(self) -> Settings:
        from workers.local.errors import ServiceError

        try:
            given = load_settings()
            settings = given.resolved(start=True)
        except SettingsError as exc:
            fail(str(exc), 2)
        except ServiceError as exc:
            fail(f"could not start the local services: {exc}", 1)
        if given.database_url is None:
            # The embedded default needs no set-up: its schema follows the code. With an explicit
            # STEPLOG_DATABASE_URL, schema changes wait for the operator's `steplog db upgrade`.
            from workers.migrate import upgrade

            upgrade(settings.database_url)
        return settings

    @cached_property
    def engine(self):
        return make_engine(self.settings.database_url, pool_size=2)

    @cached_property
    def celery(self):
        from workers.app import create_app

        return create_app(self.settings)


ctx = Context()


def _db_errors(fn):
    """Turn a missing schema or an unreachable Postgres into one clear line."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProgrammingError as exc:
            if "does not exist" in str(exc.orig):
                fail("the database has no steplog schema yet: run `steplog db upgrade`", 1)
            raise
        except OperationalError as exc:
            fail(f"cannot reach Postgres (STEPLOG_DATABASE_URL): {exc.orig}", 1)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations up to the newest schema."""
    from workers.migrate import upgrade

    upgrade(ctx.settings.database_url)
    out.print("database schema is up to date")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Steps run at once.")] = 1,
    hostname: Annotated[str | None, typer.Option("--hostname", "-n", help="Node name, e.g. w1@%h.")] = None,
    queues: Annotated[str | None, typer.Option("--queues", "-Q", help="Comma-separated queues.")] = None,
    pool: Annotated[str | None, typer.Option(help="solo (default for -c 1), prefork or threads.")] = None,
    loglevel: Annotated[str | None, typer.Option(help="Log level; default STEPLOG_LOG_LEVEL.")] = None,
) -> None:
    """Run a Celery worker in the foreground (SIGTERM: finish the running step, then exit)."""
    from workers.logs import setup_logging

    settings = ctx.settings
    setup_logging(settings, loglevel)
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool or ('solo' if concurrency == 1 else 'prefork')}",
        f"--queues={queues or settings.queue}",
        f"--loglevel={loglevel or settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    ctx.celery.worker_main(argv)


@app.command()
@_db_errors
def submit(
    workflow: Annotated[str, typer.Argument(help="Workflow name, e.g. countdown.")],
    input: Annotated[str, typer.Option("--input", "-i", help="The workflow's input as JSON.")] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"run_id\": ...}.")] = False,
) -> None:
    """Start a run of WORKFLOW; prints its run id."""
    try:
        raw = json.loads(input)
    except json.JSONDecodeError as exc:
        fail(f"--input is not valid JSON: {exc}", 2)
    if not isinstance(raw, dict):
        fail(f"--input must be a JSON object, got {type(raw).__name__}", 2)
    try:
        run_id = ctx.celery.steplog.submit(workflow, raw, submitted_by=_operator())
    except WorkflowError as exc:
        fail(str(exc), 2)
    print_json({"run_id": run_id}) if as_json else out.print(run_id)


def _load_run(run_id: str) -> dict[str, Any]:
    from workers.render import run_json

    try:
        run = runs.get(ctx.engine, run_id)
    except RunNotFound as exc:
        fail(str(exc), 1)
    return run_json(run, runs.events(ctx.engine, run_id), runs.in_flight(ctx.engine, run_id))


@app.command()
@_db_errors
def show(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's status, input, result or error, the step in flight, and its events."""
    from workers.render import run_view

    doc = _load_run(run_id)
    print_json(doc) if as_json else out.print(run_view(doc))


@app.command("runs")
@_db_errors
def list_runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The most recent runs, newest first."""
    from checkpoint.tables import RUN_STATUSES
    from workers.render import run_summary_json, runs_table

    if status is not None and status not in RUN_STATUSES:
        fail(f"--status must be one of {', '.join(RUN_STATUSES)}; got {status!r}", 2)
    rows = [run_summary_json(r) for r in runs.recent(ctx.engine, status=status, limit=limit)]
    print_json(rows) if as_json else out.print(runs_table(rows))


@app.command()
@_db_errors
def cancel(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Cancel a run: no further step is dispatched; a step in flight finishes first."""
    try:
        outcome = runs.cancel(ctx.engine, run_id, by=_operator(), lease_seconds=ctx.settings.lease_seconds)
    except RunNotFound as exc:
        fail(str(exc), 1)
    if outcome.status == "cancelled":
        out.print(f"run {run_id} cancelled")
    elif outcome.status == "requested":
        step = f"step {outcome.in_flight_seq}" if outcome.in_flight_seq else "the step in flight"
        out.print(f"run {run_id}: cancel requested; {step} finishes, then the run ends cancelled")
    else:
        out.print(f"run {run_id} is already {outcome.status.removeprefix('already_')}; nothing to cancel")


app.command()(flower)
app.command()(watch)
app.command()(chaos)
app.command("gc")(gc)
app.command()(demo)
app.command()(research)
app.command()(report)
app.add_typer(corpus_app, name="corpus")


@app.command("tools")
@_db_errors
def tool_calls(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The tool ledger of a run: each call's tool, key, status, attempts, replays, duration, error."""
    from tools.audit import ledger_rows, render_table

    try:
        runs.get(ctx.engine, run_id)
    except RunNotFound as exc:
        fail(str(exc), 1)
    rows = ledger_rows(ctx.engine, run_id)
    print_json(rows) if as_json else out.print(render_table(rows))


def main() -> None:
    app()
