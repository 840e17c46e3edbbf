"""Artifacts as files under one directory: ``<root>/ab/cd/<sha256>``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from checkpoint.artifacts.base import ArtifactStore
from checkpoint.artifacts.errors import ArtifactConfigError, ArtifactMissing, ArtifactStoreUnavailable


class LocalArtifactStore(ArtifactStore):
    """A directory on a local (or shared) file system; uris are ``file:///root/ab/cd/<sha256>``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_absolute():
            path = path.absolute()
        if path.exists() and not path.is_dir():
            raise ArtifactConfigError(f"artifact store root {path} exists and is not a directory")
        self.root = path
        self.url = path.as_uri()

    def path_for(self, sha256: str) -> Path:
        # Two fan-out levels keep any one directory small (65,536 leaves before files).
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def uri_for(self, sha256: str) -> str:
        return self.path_for(sha256).as_uri()

    def _exists(self, sha256: str, uri: str) -> bool:
        return self.path_for(sha256).is_file()

    def _write(self, sha256: str, uri: str, data: bytes, media_type: str) -> None:
        final = self.path_for(sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the final name, flush to disk, then rename: a crash leaves at most a
            # stray temp file, never a partial object under the content's name.
            fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256[:8]}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot write artifact {uri}: {exc}") from exc

    def _read(self, sha256: str, uri: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"artifact {uri} is missing: no file {self.path_for(sha256)}") from exc
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot read artifact {uri}: {exc}") from exc

    def _delete(self, sha256: str, uri: str) -> None:
        try:
            self.path_for(sha256).unlink(missing_ok=True)
        except OSError as exc:
            raise ArtifactStoreUnavailable(f"cannot delete artifact {uri}: {exc}") from exc
