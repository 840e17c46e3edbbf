"""`steplog flower`: Flower on our Celery app, behind basic auth unless told otherwise.

Flower keeps its picture of the fleet in memory, rebuilt from the task events it sees while it runs
(a restarted Flower starts empty); a run's history lives in Postgres (`steplog show RUN`).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from workers.cli.common import ctx, fail

AUTH_VARS = "STEPLOG_FLOWER_USER and STEPLOG_FLOWER_PASSWORD"


def flower(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port of the web UI.")] = 5555,
    address: Annotated[str, typer.Option("--address", help="Address to listen on; 0.0.0.0 for all.")] = "127.0.0.1",
    unauthenticated: Annotated[
        bool, typer.Option("--unauthenticated", help=f"Start without basic auth when {AUTH_VARS} are unset.")
    ] = False,
) -> None:
    """Run Flower, the web UI of the fleet's workers and steps, in the foreground (basic auth from
    STEPLOG_FLOWER_USER / STEPLOG_FLOWER_PASSWORD; without them only with --unauthenticated)."""
    if "FLOWER_BASIC_AUTH" in os.environ:
        # Flower would read it after us and silently replace our credentials.
        fail(f"FLOWER_BASIC_AUTH is set; use {AUTH_VARS} instead", 2)
    settings = ctx.settings
    user, password = settings.flower_user, settings.flower_password
    if (user is None) != (password is None):
        fail(f"set both {AUTH_VARS}, or neither (with --unauthenticated)", 2)
    if user is None and not unauthenticated:
        fail(f"refusing to start Flower without basic auth: set {AUTH_VARS}, or pass --unauthenticated", 2)

    from flower.options import options  # tornado's option registry, with Flower's options defined

    from workers.logs import setup_logging

    setup_logging(settings)
    # Set directly rather than via --basic-auth: the password stays out of argv (`ps`) and may
    # contain commas, which Flower's comma-separated option would split.
    options.basic_auth = [f"{user}:{password.get_secret_value()}"] if user is not None else []
    code = ctx.celery.start(["flower", f"--port={port}", f"--address={address}"])
    raise typer.Exit(code or 0)
