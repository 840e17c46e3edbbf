"""steplog's error root, and the checkpoint layer's own errors under it.

Every steplog error descends from :class:`SteplogError`, so a boundary (the CLI, later the API)
catches one class and maps it to an exit code with :attr:`SteplogError.exit_code`. Each package keeps
its own errors module beneath this root (``checkpoint.artifacts.errors``, ``tools.errors``,
``tools.corpus.errors``, ``tasks.errors``, ``workers.errors``). Driver errors are wrapped where they
enter, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[BaseException], args: tuple, state: dict[str, Any]) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class SteplogError(Exception):
    """Any error steplog raises on purpose; its message says what is wrong and, where it can, what to do."""

    #: The CLI's exit code for this error: 1 the thing does not exist or the operation failed,
    #: 2 bad input or bad settings (nothing was written).
    exit_code: int = 1

    def __reduce__(self) -> tuple:
        # Subclasses take other __init__ arguments than their message; rebuild them from args and
        # attributes so they pickle across Celery's process boundary unchanged.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class BadInput(SteplogError, ValueError):
    """A caller's input that steplog cannot use; nothing was written. The message names the field."""

    exit_code = 2


class StorageError(SteplogError):
    """Postgres could not be reached, or refused a statement steplog relies on."""


class NotJSONError(SteplogError, TypeError):
    """A workflow produced a value that is not JSON (a checkpoint must survive any process)."""


class RunNotFound(SteplogError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


# -- a run's history tiers (context, hot cache, summaries, recall, archive) -------------------------


class HistoryError(SteplogError):
    """Any failure reading, condensing, searching or archiving a run's history."""


class HistoryInputError(HistoryError, BadInput):
    """A caller passed a value the history functions cannot use (the message names the parameter)."""


class NoHistory(HistoryError, LookupError):
    """A run has no events to build a context from: it does not exist, or its history is archived."""


class ArchiveError(HistoryError):
    """Archiving a run's events failed (the store refused, or the archive does not match the run)."""


class RunNotFinished(ArchiveError, ValueError):
    """Only a run in a terminal status (succeeded, failed, cancelled) may be archived."""


# -- flow control -------------------------------------------------------------------------------------


class Throttled(SteplogError):
    """A step found no budget (a rate limit, a provider's 429): it is handed back undone and dispatched
    again after ``retry_after`` seconds, holding no worker meanwhile. ``reason`` is what ``show`` says
    (``rate: llm tpm``). Raised by a limiter, caught by the step runner; never a failed attempt."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(f"throttled ({reason}); again in {retry_after:.2f} s")
        self.reason = reason
        self.retry_after = max(float(retry_after), 0.0)
