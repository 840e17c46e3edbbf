"""The worker layer's errors (the local services keep theirs in ``workers.local.errors``)."""

from __future__ import annotations

from checkpoint.errors import BadInput


class SettingsError(BadInput):
    """A ``STEPLOG_*`` variable holds a value steplog cannot use; the message names the variable."""
