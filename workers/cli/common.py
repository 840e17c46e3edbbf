"""What every command shares: the consoles, JSON output, failing with an exit code, the operator's
name, and the :class:`Context` (settings, database, Celery) built only as far as a command needs it.

Nothing heavy is imported here at module level: `steplog --help` imports this module too.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.text import Text

from workers.cli.errors import CommandFailed

if TYPE_CHECKING:
    import psycopg
    from celery import Celery
    from sqlalchemy import Engine

    from workers.settings import Settings

out = Console()
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command: ``error: message`` on stderr, exit ``code`` (printed by the app, see errors.py)."""
    raise CommandFailed(message, code)


def print_error(message: str) -> None:
    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def operator() -> str:
    """Who is at the keyboard, recorded on what the CLI writes (``user@host``)."""
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


class Context:
    """Settings, database connections and Celery app, built only when a command needs them."""

    @cached_property
    def settings(self) -> Settings:
        from workers.local.errors import ServiceError
        from workers.settings import load_settings

        given = load_settings()
        try:
            settings = given.resolved(start=True)
        except ServiceError as exc:
            raise CommandFailed(f"could not start the local services: {exc}", 1) from exc
        if given.database_url is None:
            # The embedded default needs no set-up: its schema follows the code. With an explicit
            # STEPLOG_DATABASE_URL, schema changes wait for the operator's `steplog db upgrade`.
            from workers.cli import pg

            if not pg.schema_is_current(settings.database_url):
                from workers.migrate import upgrade

                upgrade(settings.database_url)
        return settings

    @cached_property
    def db(self) -> psycopg.Connection:
        """A plain psycopg connection for the read-only commands (see pg.py)."""
        from workers.cli import pg

        return pg.connect(self.settings.database_url, prepared=self.settings.prepared_statements)

    @cached_property
    def engine(self) -> Engine:
        from checkpoint.db import make_engine

        return make_engine(self.settings.database_url, pool_size=2, prepared=self.settings.prepared_statements)

    @cached_property
    def celery(self) -> Celery:
        from workers.app import create_app

        return create_app(self.settings)


ctx = Context()
