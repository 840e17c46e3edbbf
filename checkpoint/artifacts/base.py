"""The artifact store contract: content-addressed put, verified get, exists, delete."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

from checkpoint.artifacts.errors import ArtifactConfigError, ArtifactCorrupt
from checkpoint.artifacts.pointer import ArtifactPointer


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore(ABC):
    """Immutable objects named by their SHA-256.

    Objects are located by the pointer's ``sha256`` (the content address); the pointer's ``uri``
    is where the writing store put it and is what every error names.
    """

    #: ``file:///root`` or ``s3://bucket/prefix``: where this store keeps its objects.
    url: str

    @abstractmethod
    def uri_for(self, sha256: str) -> str:
        """The uri of the object with this hash in this store."""

    @abstractmethod
    def _exists(self, sha256: str, uri: str) -> bool: ...

    @abstractmethod
    def _write(self, sha256: str, uri: str, data: bytes, media_type: str) -> None:
        """Store the object whole or not at all."""

    @abstractmethod
    def _read(self, sha256: str, uri: str) -> bytes:
        """The stored bytes; raise ArtifactMissing naming ``uri`` when absent."""

    @abstractmethod
    def _delete(self, sha256: str, uri: str) -> None: ...

    def put(self, data: bytes, media_type: str = "application/octet-stream") -> ArtifactPointer:
        """Store ``data`` (once per content: an object already there is not written again)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArtifactConfigError(f"artifact data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        digest = sha256_hex(data)
        pointer = ArtifactPointer(uri=self.uri_for(digest), sha256=digest, size=len(data), media_type=media_type)
        if not self._exists(digest, pointer.uri):
            self._write(digest, pointer.uri, data, media_type)
        return pointer

    def get(self, pointer: ArtifactPointer) -> bytes:
        """The object's bytes, after checking its size and SHA-256 against the pointer."""
        data = self._read(pointer.sha256, pointer.uri)
        if len(data) != pointer.size:
            raise ArtifactCorrupt(
                f"artifact {pointer.uri} is corrupt: expected {pointer.size} bytes, found {len(data)} "
                f"(expected sha256 {pointer.sha256}, actual {sha256_hex(data)})"
            )
        actual = sha256_hex(data)
        if actual != pointer.sha256:
            raise ArtifactCorrupt(
                f"artifact {pointer.uri} is corrupt: expected sha256 {pointer.sha256}, actual {actual}"
            )
        return data

    def exists(self, pointer: ArtifactPointer) -> bool:
        """Whether the store holds an object for this pointer's hash (its content is not checked)."""
        return self._exists(pointer.sha256, pointer.uri)

    def delete(self, pointer: ArtifactPointer) -> None:
        """Remove the object (for garbage collection); deleting an absent object is not an error.

        Objects are shared by every pointer to the same content: only a collector that knows no
        event references this hash any more may call this.
        """
        self._delete(pointer.sha256, pointer.uri)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
