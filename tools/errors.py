"""The tool layer's exceptions: one subtree under :class:`ToolError`.

A tool error is data for the agent, not a crash: the runtime turns every one of these into an error
result (see :meth:`ToolError.to_dict`). Only :class:`LedgerError` (Postgres failed under the ledger)
leaves ``ToolRuntime.call``: then the step cannot know what it did, and the step engine retries it.
"""

from __future__ import annotations

from typing import Any

from checkpoint.errors import SteplogError, StorageError


class ToolError(SteplogError):
    """Base of every error the tool layer raises or reports."""

    #: Whether retrying the same call could succeed.
    retryable = False

    def to_dict(self) -> dict[str, Any]:
        """The error as the agent and the ledger see it: JSON, with the class name as ``type``."""
        return {"type": type(self).__name__, "message": str(self), "retryable": self.retryable}


class ToolDeclarationError(ToolError):
    """A tool is declared wrongly (bad name, version, models or effect); raised at registration."""


class ToolConfigError(ToolError, ValueError):
    """A tool setting is unusable (e.g. a malformed ``STEPLOG_NET_ALLOW`` entry); names the value."""

    exit_code = 2


class UnknownToolError(ToolError):
    """The agent asked for a tool the registry does not have."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f"; known tools: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown tool {name!r}{hint}")


class ToolInputError(ToolError):
    """A tool's input is invalid; ``field`` names the offending field (dotted path, '' for the whole input)."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field}


class TransientToolError(ToolError):
    """A failure that may pass (timeout, connection error, HTTP 429/5xx); retried inside the step.

    ``maybe_applied`` says whether the effect may have happened anyway (the request went out and the
    answer was lost). An irreversible tool whose outside system cannot deduplicate is never re-fired
    after such an error: the call is marked ``unknown`` instead.
    """

    retryable = True

    def __init__(self, message: str, *, maybe_applied: bool = True, status: int | None = None) -> None:
        self.maybe_applied = maybe_applied
        self.status = status
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class PermanentToolError(ToolError):
    """A failure that retrying cannot fix (HTTP 4xx, bad content, a refused address); not retried."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "status": self.status}


class NetworkRefused(PermanentToolError):
    """The network guard refused a URL: a non-public address (after DNS resolution) not on the allow-list."""


class ToolOutputError(PermanentToolError):
    """A tool returned something its output model rejects, or that is not JSON."""


class UnexpectedToolError(PermanentToolError):
    """A tool raised an exception it did not classify; recorded as a tool error with its type."""

    def __init__(self, exc: BaseException) -> None:
        self.exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        super().__init__(f"{self.exc_type}: {exc}")


class OutcomeUnknown(ToolError):
    """An irreversible call whose outside system cannot deduplicate may have happened; it is not re-fired.

    An operator must check the outside system; the agent is told the effect is uncertain.
    """


class LedgerError(ToolError, StorageError):
    """Postgres failed while reading or writing the tool ledger (wraps the driver error)."""
