"""The reasoner's errors: no usable decision, from the model or from its endpoint."""

from __future__ import annotations

from checkpoint.errors import SteplogError


class ReasonerError(SteplogError):
    """The reasoner could not produce a decision (the model is unreachable or keeps answering badly)."""


class InvalidDecision(ReasonerError):
    """The model's answer does not parse, names an unknown tool, or has invalid arguments.

    The research workflow sends ``str(self)`` back to the model as a correction, a bounded number
    of times, then fails the run with it."""


class LLMEndpointError(ReasonerError):
    """The endpoint did not answer usefully: refused the request (4xx), or kept failing (429, 5xx,
    timeouts, connection errors) through every retry. ``status`` is the last HTTP status, if any;
    ``retryable`` says whether trying again later might work (False for e.g. a bad key)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
