"""The step layer's errors: workflows that cannot be run, and runs a step ends on purpose."""

from __future__ import annotations

from checkpoint.errors import BadInput, SteplogError


class WorkflowError(BadInput):
    """A workflow name or input that steplog cannot run; nothing was written."""


class UnknownWorkflow(WorkflowError):
    """No workflow of this name is loaded; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown workflow {name!r}; known workflows: {', '.join(sorted(known))}")


class InvalidInput(WorkflowError):
    """The input does not fit the workflow's model; the message names each bad field."""


class FailRun(SteplogError):
    """Raised by a step to end its run `failed` now, with this message: retrying cannot help."""
