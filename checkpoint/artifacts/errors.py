"""The artifact store's exceptions: one subtree under :class:`ArtifactError`."""

from __future__ import annotations

from checkpoint.errors import BadInput, SteplogError


class ArtifactError(SteplogError):
    """Any failure of the artifact store; the message names the artifact's uri where there is one."""


class ArtifactMissing(ArtifactError, LookupError):
    """The object a pointer names is not in the store (deleted, or never written there)."""


class ArtifactCorrupt(ArtifactError):
    """The stored object's size or SHA-256 differs from its pointer's: it must not be trusted."""


class ArtifactStoreUnavailable(ArtifactError):
    """The backend failed (I/O error, S3 server unreachable, access denied, no such bucket)."""


class ArtifactConfigError(ArtifactError, BadInput):
    """The artifact store is configured wrongly (bad ``STEPLOG_ARTIFACTS_URL``) or called with bad input."""
