"""Artifacts in an S3 bucket (AWS, MinIO, SeaweedFS, any S3-compatible server): ``s3://bucket/prefix/<sha256>``.

Credentials, region and endpoint come from boto3's standard chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, profiles, instance roles);
an explicit ``endpoint_url`` (``STEPLOG_S3_ENDPOINT_URL``) overrides the endpoint. botocore uses
path-style addressing for non-AWS endpoints, which MinIO and SeaweedFS need.
"""

from __future__ import annotations

import os
import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from checkpoint.artifacts.base import ArtifactStore
from checkpoint.artifacts.errors import ArtifactConfigError, ArtifactMissing, ArtifactStoreUnavailable

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3ArtifactStore(ArtifactStore):
    """A bucket (and key prefix) of an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: Config | None = None,
    ) -> None:
        if not _BUCKET.match(bucket or ""):
            raise ArtifactConfigError(
                f"S3 bucket name {bucket!r} is invalid: 3-63 characters of a-z, 0-9, '.', '-'"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or None
        self._client_kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": region_name,
            "config": client_config or Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard"}),
        }
        self._client: Any = None
        self._client_pid: int | None = None

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use in each process (a client must not cross a fork)."""
        if self._client is None or self._client_pid != os.getpid():
            try:
                self._client = boto3.session.Session().client("s3", **self._client_kwargs)
            except (BotoCoreError, ValueError) as exc:
                raise ArtifactStoreUnavailable(f"cannot create an S3 client for {self.url}: {exc}") from exc
            self._client_pid = os.getpid()
        return self._client

    def key_for(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256}" if self.prefix else sha256

    def uri_for(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self.key_for(sha256)}"

    def _fail(self, action: str, uri: str, exc: Exception) -> ArtifactStoreUnavailable:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            if error.get("Code") == "NoSuchBucket":
                return ArtifactStoreUnavailable(
                    f"cannot {action} artifact {uri}: bucket {self.bucket!r} does not exist"
                )
            detail = f"{error.get('Code', '?')}: {error.get('Message', exc)}"
        else:
            detail = str(exc)
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return ArtifactStoreUnavailable(f"cannot {action} artifact {uri}{where}: {detail}")

    def _exists(self, sha256: str, uri: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return False
            raise self._fail("look up", uri, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("look up", uri, exc) from exc
        return True

    def _write(self, sha256: str, uri: str, data: bytes, media_type: str) -> None:
        # One PUT is atomic on S3: readers see the whole object or none.
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key_for(sha256),
                Body=data,
                ContentType=media_type,
                Metadata={"sha256": sha256},
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("write", uri, exc) from exc

    def _read(self, sha256: str, uri: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))
            with response["Body"] as body:
                return body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                raise ArtifactMissing(f"artifact {uri} is missing: no object {self.key_for(sha256)!r}") from exc
            raise self._fail("read", uri, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("read", uri, exc) from exc

    def _delete(self, sha256: str, uri: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("delete", uri, exc) from exc
