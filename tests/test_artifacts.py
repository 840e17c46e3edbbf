"""The artifact store contract, run against both backends: local files and a real S3 server."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.config import Config

from checkpoint.artifacts import (
    ArtifactConfigError,
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactPointer,
    ArtifactStore,
    ArtifactStoreUnavailable,
    LocalArtifactStore,
    S3ArtifactStore,
    is_pointer_json,
    offload,
    open_store,
    resolve,
)
from tests.support.s3server import S3Server
from workers.settings import SettingsError, load_settings
from workers.wiring import artifact_store


@dataclass
class Backend:
    """A store plus a way around it, to look at and tamper with what it really stored."""

    store: ArtifactStore
    overwrite: Callable[[str, bytes], None]  # replace the object at a uri
    count: Callable[[], int]  # objects the store holds


def _local_backend(root: Path) -> Backend:
    def path(uri: str) -> Path:
        return Path(urlsplit(uri).path)

    return Backend(
        store=open_store(root.as_uri()),
        overwrite=lambda uri, data: path(uri).write_bytes(data),
        count=lambda: sum(1 for p in root.rglob("*") if p.is_file()),
    )


def _s3_backend(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Backend:
    # Credentials reach the store the standard way: the AWS_* environment.
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    prefix = server.new_prefix()
    client = server.client()

    def key(uri: str) -> str:
        parts = urlsplit(uri)
        assert parts.netloc == server.bucket
        return parts.path.lstrip("/")

    return Backend(
        store=open_store(f"s3://{server.bucket}/{prefix}", s3_endpoint_url=server.endpoint_url),
        overwrite=lambda uri, data: client.put_object(Bucket=server.bucket, Key=key(uri), Body=data),
        count=lambda: client.list_objects_v2(Bucket=server.bucket, Prefix=prefix + "/").get("KeyCount", 0),
    )


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "local":
        yield _local_backend(tmp_path / "artifacts")
    else:
        yield _s3_backend(request.getfixturevalue("s3_server"), monkeypatch)


# --- the contract -------------------------------------------------------------------------------


def test_put_get_round_trip(backend: Backend) -> None:
    data = b"the tool's output \x00\xff" * 100
    pointer = backend.store.put(data, "application/x-demo")

    assert pointer.sha256 == hashlib.sha256(data).hexdigest()
    assert pointer.size == len(data)
    assert pointer.media_type == "application/x-demo"
    assert pointer.uri.startswith(backend.store.url + "/") and pointer.uri.endswith(pointer.sha256)
    assert backend.store.exists(pointer)
    assert backend.store.get(pointer) == data
    # What an event stores survives JSON and reads back the same object.
    again = ArtifactPointer.from_json(json.loads(json.dumps(pointer.to_json())))
    assert again == pointer and backend.store.get(again) == data


def test_empty_object(backend: Backend) -> None:
    pointer = backend.store.put(b"")
    assert pointer.size == 0 and backend.store.get(pointer) == b""


def test_same_content_is_one_object_and_not_written_again(backend: Backend) -> None:
    first = backend.store.put(b"same bytes", "text/plain")
    second = backend.store.put(b"same bytes", "text/plain")
    assert first == second
    assert backend.count() == 1

    other = backend.store.put(b"other bytes", "text/plain")
    assert other.uri != first.uri
    assert backend.count() == 2

    # The second put of existing content does not upload: damage behind the store's back stays.
    backend.overwrite(first.uri, b"SAME bytes")
    backend.store.put(b"same bytes", "text/plain")
    with pytest.raises(ArtifactCorrupt):
        backend.store.get(first)


def test_corrupt_object_same_size(backend: Backend) -> None:
    pointer = backend.store.put(b"0123456789" * 50)
    tampered = b"X" + b"0123456789"[1:] + b"0123456789" * 49
    backend.overwrite(pointer.uri, tampered)

    with pytest.raises(ArtifactCorrupt) as caught:
        backend.store.get(pointer)
    message = str(caught.value)
    assert pointer.uri in message
    assert pointer.sha256 in message
    assert hashlib.sha256(tampered).hexdigest() in message
    assert isinstance(caught.value, ArtifactError)


def test_truncated_object(backend: Backend) -> None:
    pointer = backend.store.put(b"a whole report" * 10)
    backend.overwrite(pointer.uri, b"a whole")
    with pytest.raises(ArtifactCorrupt, match=f"{pointer.uri}.*expected {pointer.size} bytes, found 7"):
        backend.store.get(pointer)


def test_missing_object_names_the_pointer(backend: Backend) -> None:
    never_written = hashlib.sha256(b"never written").hexdigest()
    pointer = ArtifactPointer(
        uri=backend.store.uri_for(never_written), sha256=never_written, size=13, media_type="text/plain"
    )
    assert not backend.store.exists(pointer)
    with pytest.raises(ArtifactMissing) as caught:
        backend.store.get(pointer)
    assert pointer.uri in str(caught.value)
    assert isinstance(caught.value, ArtifactError)


def test_exists_and_delete(backend: Backend) -> None:
    pointer = backend.store.put(b"for the collector")
    keep = backend.store.put(b"still referenced")

    backend.store.delete(pointer)
    assert not backend.store.exists(pointer)
    assert backend.store.exists(keep)
    with pytest.raises(ArtifactMissing, match=pointer.uri):
        backend.store.get(pointer)
    backend.store.delete(pointer)  # deleting twice is not an error: gc may run again

    assert backend.store.put(b"for the collector") == pointer
    assert backend.store.get(pointer) == b"for the collector"
    assert backend.count() == 2


def test_large_object(backend: Backend) -> None:
    data = os.urandom(6 * 1024 * 1024 + 17)
    pointer = backend.store.put(data, "application/octet-stream")
    assert pointer.size == len(data)
    assert backend.store.get(pointer) == data


def test_offload_and_resolve(backend: Backend) -> None:
    store = backend.store
    small = {"answer": 42, "text": "short"}
    assert offload(small, store=store, inline_limit=100) is small
    assert offload("short", store=store, inline_limit=100) == "short"
    assert resolve(small, store=store) is small

    big_text = "résumé " * 100
    big_doc = {"rows": [{"i": i, "name": "n" * 10} for i in range(50)]}
    for value in (big_text, big_doc, big_doc["rows"], b"\x00\x01"):
        ref = offload(value, store=store, inline_limit=100)
        assert is_pointer_json(ref)
        json.dumps(ref)  # an event can hold it
        assert resolve(json.loads(json.dumps(ref)), store=store) == value

    text_ref = offload(big_text, store=store, inline_limit=100, media_type="text/markdown")
    pointer = ArtifactPointer.from_json(text_ref)
    assert pointer.media_type == "text/markdown"
    assert store.get(pointer) == big_text.encode()  # stored as readable text, not JSON-quoted

    # The limit is on the JSON form: exactly at the limit stays inline, one byte over is stored.
    limit = len(json.dumps(big_doc, separators=(",", ":")))
    assert offload(big_doc, store=store, inline_limit=limit) is big_doc
    assert is_pointer_json(offload(big_doc, store=store, inline_limit=limit - 1))


# --- backend-specific failures ------------------------------------------------------------------


def test_s3_bad_credentials_is_an_artifact_error(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = S3ArtifactStore(s3_server.bucket, "denied", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(ArtifactStoreUnavailable) as caught:
        store.put(b"anything")
    assert store.uri_for(hashlib.sha256(b"anything").hexdigest()) in str(caught.value)


def test_s3_missing_bucket_is_named(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    store = S3ArtifactStore("steplog-no-such-bucket", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(ArtifactStoreUnavailable, match="bucket 'steplog-no-such-bucket' does not exist"):
        store.put(b"anything")


def test_s3_endpoint_from_standard_aws_variable(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    store = open_store(f"s3://{s3_server.bucket}/{s3_server.new_prefix()}")
    pointer = store.put(b"via AWS_ENDPOINT_URL")
    assert store.get(pointer) == b"via AWS_ENDPOINT_URL"


def test_s3_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    store = S3ArtifactStore(
        "steplog-test", endpoint_url="http://127.0.0.1:9", client_config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(ArtifactStoreUnavailable, match="http://127.0.0.1:9"):
        store.put(b"anything")


def test_local_failed_write_leaves_no_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalArtifactStore(tmp_path)

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # A write that dies before the rename must not leave a (partial) object under the final name.
    monkeypatch.setattr("checkpoint.artifacts.local.os.fsync", crash)
    with pytest.raises(ArtifactStoreUnavailable, match="No space left"):
        store.put(b"x" * 10_000)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    pointer = store.put(b"x" * 10_000)
    assert store.get(pointer) == b"x" * 10_000


def test_local_layout_fans_out(tmp_path: Path) -> None:
    pointer = LocalArtifactStore(tmp_path).put(b"fan out")
    sha = pointer.sha256
    assert pointer.uri == (tmp_path / sha[:2] / sha[2:4] / sha).as_uri()


# --- configuration and input checks -------------------------------------------------------------


def test_open_store_by_url(tmp_path: Path) -> None:
    local = open_store(tmp_path.as_uri())
    assert isinstance(local, LocalArtifactStore) and local.root == tmp_path
    s3 = open_store("s3://my-bucket/runs/artifacts/", s3_endpoint_url="http://minio:9000")
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("my-bucket", "runs/artifacts", "http://minio:9000")
    assert s3.uri_for("ab" * 32) == f"s3://my-bucket/runs/artifacts/{'ab' * 32}"


@pytest.mark.parametrize(
    "url", ["ftp://host/x", "relative/path", "file://otherhost/x", "s3:///no-bucket", "s3://Bad_Bucket/x", ""]
)
def test_open_store_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ArtifactConfigError, match="STEPLOG_ARTIFACTS_URL"):
        open_store(url)


def test_artifact_artifact_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPLOG_ARTIFACTS_URL", raising=False)
    monkeypatch.setenv("STEPLOG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STEPLOG_INLINE_LIMIT", "1000")
    monkeypatch.setenv("STEPLOG_S3_ENDPOINT_URL", "http://minio:9000")
    settings = load_settings()
    assert settings.inline_limit == 1000 and settings.s3_endpoint_url == "http://minio:9000"
    store = artifact_store(settings)
    assert isinstance(store, LocalArtifactStore) and store.root == tmp_path / "home" / "artifacts"

    monkeypatch.setenv("STEPLOG_ARTIFACTS_URL", "s3://steplog/prod")
    store = artifact_store(load_settings())
    assert isinstance(store, S3ArtifactStore) and store.endpoint_url == "http://minio:9000"


@pytest.mark.parametrize(
    ("name", "value"), [("STEPLOG_INLINE_LIMIT", "-1"), ("STEPLOG_S3_ENDPOINT_URL", "minio:9000")]
)
def test_bad_settings_name_the_variable(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"uri": "s3://b/k", "sha256": "ab" * 32, "size": 1}, "missing fields \\['media_type'\\]"),
        ({"uri": "s3://b/k", "sha256": "xyz", "size": 1, "media_type": "t"}, "sha256 must be 64"),
        ({"uri": "s3://b/k", "sha256": "ab" * 32, "size": -1, "media_type": "t"}, "size must be"),
        ({"uri": "s3://b/k", "sha256": "ab" * 32, "size": 1, "media_type": "t", "x": 1}, "unknown fields \\['x'\\]"),
        ("not a dict", "must be a JSON object"),
    ],
)
def test_bad_pointer_dicts(data: Any, problem: str) -> None:
    with pytest.raises(ArtifactConfigError, match=problem):
        ArtifactPointer.from_dict(data)


def test_pointer_marker() -> None:
    pointer = ArtifactPointer(uri="s3://b/k", sha256="ab" * 32, size=3, media_type="text/plain")
    assert pointer.to_json() == {"$artifact": pointer.to_dict()}
    assert is_pointer_json(pointer.to_json())
    assert not is_pointer_json({"uri": "s3://b/k"}) and not is_pointer_json("$artifact")
    assert ArtifactPointer.from_dict(pointer.to_dict()) == pointer


def test_offload_rejects_bad_input(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactConfigError, match="offload takes bytes, str, dict or list, got int"):
        offload(5, store=store, inline_limit=10)  # type: ignore[arg-type]
    with pytest.raises(ArtifactConfigError, match="inline_limit"):
        offload("x", store=store, inline_limit=-1)
    with pytest.raises(ArtifactConfigError, match="must be bytes"):
        store.put("text")  # type: ignore[arg-type]
