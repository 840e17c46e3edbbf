"""The cold tier: large payloads as content-addressed artifacts (local files or S3), referenced
from events by :class:`ArtifactPointer`."""

from checkpoint.artifacts.base import ArtifactStore, sha256_hex
from checkpoint.artifacts.errors import (
    ArtifactConfigError,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactStoreUnavailable,
)
from checkpoint.artifacts.local import LocalArtifactStore
from checkpoint.artifacts.offload import offload, resolve
from checkpoint.artifacts.opener import open_store
from checkpoint.artifacts.pointer import MARKER, ArtifactPointer, is_pointer_json
from checkpoint.artifacts.s3 import S3ArtifactStore

__all__ = [
    "MARKER",
    "ArtifactConfigError",
    "ArtifactCorrupt",
    "ArtifactError",
    "ArtifactMissing",
    "ArtifactPointer",
    "ArtifactStore",
    "ArtifactStoreUnavailable",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "is_pointer_json",
    "offload",
    "open_store",
    "resolve",
    "sha256_hex",
]
