"""`steplog db upgrade`: the database schema."""

from __future__ import annotations

import typer

from workers.cli.common import ctx, out

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations up to the newest schema."""
    from workers.migrate import upgrade

    upgrade(ctx.settings.database_url)
    out.print("database schema is up to date")
