"""`steplog services up|down|status`: the project's own Postgres and Redis (see workers/services.py).

Exit codes: 0 done (status: every service answers), 1 a service failed to start or stop, 2 bad
settings, 3 status found a service not answering.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workers.services import SERVICES, LocalServices, ServiceError
from workers.settings import SettingsError, load_settings

services_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The project's own Postgres and Redis, used when no STEPLOG_*_URL is set.",
)

_out = Console()
_err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory of the services (default: STEPLOG_HOME, else .steplog)."),
]


def _services(home: Path | None) -> LocalServices:
    if home is None:
        try:
            home = Path(load_settings().home)
        except SettingsError as exc:
            _err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
    return LocalServices(home)


def _fail(exc: ServiceError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(1)


@services_app.command()
def up(home: HomeOption = None) -> None:
    """Start Postgres and Redis (those not running yet), wait until they answer, print their URLs."""
    services = _services(home)
    try:
        urls = services.up()
    except ServiceError as exc:
        raise _fail(exc) from None
    _out.print(f"postgres  {urls.database_url}", highlight=False)
    _out.print(f"redis     {urls.redis_url}", highlight=False)


@services_app.command()
def down(home: HomeOption = None) -> None:
    """Stop Postgres and Redis; their data stays under HOME/services."""
    services = _services(home)
    try:
        services.down()
    except ServiceError as exc:
        raise _fail(exc) from None
    _out.print(f"stopped the services under {services.dir}", highlight=False)


@services_app.command()
def status(
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Each service, its URL, pid, and whether it answers; exit 3 when one does not."""
    try:
        report = _services(home).status()
    except ServiceError as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        _out.print(f"services under {report['home']}", highlight=False)
        for name in SERVICES:
            s = report[name]
            state = "[green]answers[/green]" if s["answers"] else "[red]not answering[/red]"
            pid = f"pid {s['pid']}" if s["pid"] else "not running"
            _out.print(f"{name:<9} {s['url']}  {state}  ({pid}, log {s['log']})", highlight=False, soft_wrap=True)
    if not all(report[name]["answers"] for name in SERVICES):
        raise typer.Exit(3)
