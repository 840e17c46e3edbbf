"""Which step a log line belongs to: run id, seq, step kind, worker and attempt, bound for the
duration of a step and added to every record logged meanwhile (see workers/logs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

FIELDS = ("run_id", "seq", "step", "worker", "attempt")
_current: ContextVar[dict[str, Any]] = ContextVar("steplog_step", default={})


def current() -> dict[str, Any]:
    return _current.get()


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = _current.set({**_current.get(), **fields})
    try:
        yield
    finally:
        _current.reset(token)


def push(**fields: Any) -> Token:
    """Bind fields until :func:`pop` (for hooks that open and close in separate calls)."""
    return _current.set({**_current.get(), **fields})


def pop(token: Token) -> None:
    _current.reset(token)


def update(**fields: Any) -> None:
    """Add fields learned mid-step (the attempt, once claimed) to the current binding."""
    _current.set({**_current.get(), **fields})
