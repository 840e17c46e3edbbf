"""The CLI's own error, and the one place where any error becomes a message and an exit code.

Exit codes: 0 done, 1 the thing asked about does not exist or the operation failed, 2 bad input or
bad settings (nothing was written). A steplog error carries its code (:attr:`SteplogError.exit_code`);
Postgres being unreachable or unmigrated is told in one line whichever layer met it.
"""

from __future__ import annotations

import sys

from checkpoint.errors import SteplogError

NO_SCHEMA = "the database has no steplog schema yet: run `steplog db upgrade`"


class CommandFailed(SteplogError):
    """A command's own failure, with the exit code that command documents."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _causes(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def _database_problem(exc: BaseException) -> str | None:
    """The line for Postgres unreachable or without our schema, from SQLAlchemy's error classes or
    psycopg's (the read-only commands use psycopg alone). A module not imported raised nothing."""
    detail = None
    sa = sys.modules.get("sqlalchemy.exc")
    pg = sys.modules.get("psycopg")
    if sa is not None and isinstance(exc, (sa.OperationalError, sa.ProgrammingError)):
        operational, detail = isinstance(exc, sa.OperationalError), exc.orig
    elif pg is not None and isinstance(exc, (pg.OperationalError, pg.ProgrammingError)):
        operational, detail = isinstance(exc, pg.OperationalError), exc
    else:
        return None
    if operational:
        return f"cannot reach Postgres (STEPLOG_DATABASE_URL): {detail}"
    return NO_SCHEMA if "does not exist" in str(detail) else None


def explain(exc: BaseException) -> tuple[str, int] | None:
    """``(message, exit code)`` for an error the CLI reports in one line, None for anything else (a
    bug: its traceback is more use than a line)."""
    if isinstance(exc, CommandFailed):
        return str(exc), exc.exit_code
    for cause in _causes(exc):
        if (problem := _database_problem(cause)) is not None:
            return problem, 1
    if isinstance(exc, SteplogError):
        return str(exc), exc.exit_code
    return None
