"""Open the artifact store a URL names (``STEPLOG_ARTIFACTS_URL``)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from checkpoint.artifacts.base import ArtifactStore
from checkpoint.artifacts.errors import ArtifactConfigError
from checkpoint.artifacts.local import LocalArtifactStore
from checkpoint.artifacts.s3 import S3ArtifactStore

_FORMS = "file:///absolute/path or s3://bucket/prefix"


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store for ``file:///path`` or ``s3://bucket[/prefix]``; ``s3_endpoint_url`` overrides the S3
    endpoint (else boto3's ``AWS_ENDPOINT_URL`` / AWS default). A bad URL raises
    :class:`ArtifactConfigError` naming ``STEPLOG_ARTIFACTS_URL``."""
    if not isinstance(url, str) or "://" not in url:
        raise ArtifactConfigError(f"STEPLOG_ARTIFACTS_URL must be {_FORMS}, got {url!r}")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ArtifactConfigError(f"STEPLOG_ARTIFACTS_URL must not have a query or fragment, got {url!r}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ArtifactConfigError(
                f"STEPLOG_ARTIFACTS_URL: a file URL needs an absolute local path (file:///path), got {url!r}"
            )
        return LocalArtifactStore(unquote(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArtifactConfigError(
                f"STEPLOG_ARTIFACTS_URL: an s3 URL needs a bucket (s3://bucket/prefix), got {url!r}"
            )
        try:
            return S3ArtifactStore(parts.netloc, unquote(parts.path), endpoint_url=s3_endpoint_url)
        except ArtifactConfigError as exc:
            raise ArtifactConfigError(f"STEPLOG_ARTIFACTS_URL {url!r}: {exc}") from None
    raise ArtifactConfigError(
        f"STEPLOG_ARTIFACTS_URL has unsupported scheme {parts.scheme!r}: use {_FORMS}, got {url!r}"
    )

