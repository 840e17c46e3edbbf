"""`steplog services up|down|status` (and `python -m workers.local ...`, the same commands).

Exit codes: 0 done (status: every service answers), 1 a service failed to start or stop, 3 status
found a service not answering.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from workers.local import DEFAULT_HOME
from workers.local.errors import ServiceError
from workers.local.servers import SERVICES, LocalServices

services_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The project's own Postgres and Redis, used when no STEPLOG_*_URL is set.",
)

_out = Console(highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)

HomeOption = Annotated[
    Path,
    typer.Option("--home", envvar="STEPLOG_HOME", help="Data directory of the services (STEPLOG_HOME)."),
]


def _fail(exc: ServiceError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(1)


@services_app.command()
def up(
    home: HomeOption = Path(DEFAULT_HOME),
    env: Annotated[bool, typer.Option("--env", help="Print the URLs as STEPLOG_*_URL=... lines.")] = False,
) -> None:
    """Start Postgres and Redis (those not running yet), wait until they answer, print their URLs."""
    try:
        urls = LocalServices(home).up()
    except ServiceError as exc:
        raise _fail(exc) from None
    if env:
        sys.stdout.write("".join(f"{k}={v}\n" for k, v in urls.as_env().items()))
        return
    _out.print(f"postgres  {urls.database_url}", markup=False)
    _out.print(f"redis     {urls.redis_url}", markup=False)


@services_app.command()
def down(home: HomeOption = Path(DEFAULT_HOME)) -> None:
    """Stop Postgres and Redis; their data stays under HOME/services."""
    services = LocalServices(home)
    try:
        services.down()
    except ServiceError as exc:
        raise _fail(exc) from None
    _out.print(f"stopped the services under {services.dir}", markup=False)


@services_app.command()
def status(
    home: HomeOption = Path(DEFAULT_HOME),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Each service, its URL, pid, and whether it answers; exit 3 when one does not."""
    try:
        report = LocalServices(home).status()
    except ServiceError as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        _out.print(f"services under {report['home']}", markup=False)
        for name in SERVICES:
            s = report[name]
            state = "[green]answers[/green]" if s["answers"] else "[red]not answering[/red]"
            pid = f"pid {s['pid']}" if s["pid"] else "not running"
            _out.print(f"{name:<9} {escape(s['url'])}  {state}  ({pid}, log {escape(str(s['log']))})", soft_wrap=True)
    if not all(report[name]["answers"] for name in SERVICES):
        raise typer.Exit(3)
