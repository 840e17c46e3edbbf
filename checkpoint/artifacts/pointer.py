"""The pointer an event holds in place of a large payload, and its unambiguous JSON form."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from checkpoint.artifacts.errors import ArtifactConfigError

#: The key that marks a JSON object as an artifact reference: ``{"$artifact": {pointer fields}}``.
MARKER = "$artifact"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("uri", "sha256", "size", "media_type")


@dataclass(frozen=True, slots=True)
class ArtifactPointer:
    """Where an artifact lives and what it must hash to: ``uri``, ``sha256`` (hex), ``size`` (bytes)."""

    uri: str
    sha256: str
    size: int
    media_type: str

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or "://" not in self.uri:
            raise ArtifactConfigError(f"artifact pointer: uri must be a URL, got {self.uri!r}")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ArtifactConfigError(
                f"artifact pointer {self.uri}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        # bool is an int subclass; a pointer with size True is a bug, not a size.
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ArtifactConfigError(f"artifact pointer {self.uri}: size must be an int >= 0, got {self.size!r}")
        if not isinstance(self.media_type, str) or not self.media_type:
            raise ArtifactConfigError(f"artifact pointer {self.uri}: media_type must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        """The four fields as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ArtifactPointer:
        """A pointer from :meth:`to_dict`'s output; raise :class:`ArtifactConfigError` naming what is wrong."""
        if not isinstance(data, dict):
            raise ArtifactConfigError(f"artifact pointer must be a JSON object, got {type(data).__name__}")
        missing = [f for f in _FIELDS if f not in data]
        extra = sorted(set(data) - set(_FIELDS))
        if missing or extra:
            raise ArtifactConfigError(
                f"artifact pointer {data.get('uri', '?')}: missing fields {missing}, unknown fields {extra}"
            )
        return cls(**{f: data[f] for f in _FIELDS})

    def to_json(self) -> dict[str, Any]:
        """The marked form events carry: ``{"$artifact": {uri, sha256, size, media_type}}``."""
        return {MARKER: self.to_dict()}

    @classmethod
    def from_json(cls, value: Any) -> ArtifactPointer:
        """The pointer inside a marked dict (see :meth:`to_json`)."""
        if not is_pointer_json(value):
            raise ArtifactConfigError(f"not an artifact reference (a dict with the key {MARKER!r}): {value!r:.200}")
        return cls.from_dict(value[MARKER])


def is_pointer_json(value: Any) -> bool:
    """Whether a JSON value is a marked artifact reference (a dict holding the ``"$artifact"`` key)."""
    return isinstance(value, dict) and isinstance(value.get(MARKER), dict)
