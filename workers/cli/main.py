"""`steplog`: the operator's command line. Flags and `--json` shapes are a contract; see the README.

Exit codes: 0 done, 1 the thing asked about does not exist or the operation failed, 2 bad input or
bad settings (nothing was written). Every command runs inside :class:`SteplogGroup`, which turns an
error into ``error: <message>`` and its exit code (:func:`workers.cli.errors.explain`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from workers.cli import api, chaos, db, dead_letters, demo, flower, gc, limits, research, runs, sessions, waits, watch, worker
from workers.cli.common import print_error
from workers.cli.errors import explain

#: Command groups of other packages, imported only when used: name -> (module, Typer app, help).
LAZY_GROUPS = {
    "services": (
        "workers.local.cli", "services_app", "The project's own local Postgres and Redis (no Docker needed).",
    ),
}


class SteplogGroup(TyperGroup):
    """The `steplog` group: maps errors to exit codes around every command, and imports each of the
    :data:`LAZY_GROUPS` only when it is invoked (until then a stand-in lists it in `steplog --help`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (_, _, help) in LAZY_GROUPS.items():
            self.add_command(TyperCommand(name, help=help), name)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            found = explain(exc)
            if found is None:
                raise
            message, code = found
            print_error(message)
            raise typer.Exit(code) from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if name in LAZY_GROUPS:
            module, attr, help = LAZY_GROUPS[name]
            command = typer.main.get_command(getattr(import_module(module), attr))
            command.name, command.help = name, help
        return name, command, rest


app = typer.Typer(
    cls=SteplogGroup, no_args_is_help=True, add_completion=False, help="steplog: durable agent runs on a worker fleet."
)
app.add_typer(db.db_app, name="db")
app.command()(worker.worker)
app.command()(runs.submit)
app.command()(runs.show)
app.command()(limits.limits)
app.command("runs")(runs.list_runs)
app.command()(runs.cancel)
app.command("tools")(runs.tool_calls)
app.command()(flower.flower)
app.command()(watch.watch)
app.command()(chaos.chaos)
app.command("gc")(gc.gc)
app.command()(demo.demo)
app.command()(research.research)
app.command()(research.report)
app.add_typer(research.corpus_app, name="corpus")
app.command()(waits.signal)
app.command()(waits.approve)
app.command()(waits.reject)
app.add_typer(waits.schedule_app, name="schedule")
app.command()(sessions.say)
app.command()(sessions.chat)
app.command()(sessions.sessions)
app.command()(api.api)
app.add_typer(api.tokens_app, name="tokens")
app.command("dead-letters")(dead_letters.dead_letters)


def main() -> None:
    app()
