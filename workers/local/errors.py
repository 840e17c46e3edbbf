"""The local services' errors."""

from __future__ import annotations

from checkpoint.errors import SteplogError


class ServiceError(SteplogError):
    """A local service could not be found, started, stopped or reached."""


class ServerNotFound(ServiceError):
    """No server binary for a local service: neither its pip package nor a binary on the machine."""


class ServiceStartError(ServiceError):
    """A local server did not start or did not answer in time; the message names its log file."""
