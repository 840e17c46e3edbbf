"""The seam between JSON payloads and the artifact store: large values out, pointers back in.

``offload`` keeps a value inline when its JSON form fits ``inline_limit`` bytes and otherwise stores
it and returns ``{"$artifact": {uri, sha256, size, media_type}, "as": kind}``; ``resolve`` turns
such a reference back into the original value and passes anything else through.
"""

from __future__ import annotations

import json
from typing import Any

from checkpoint.artifacts.base import ArtifactStore
from checkpoint.artifacts.errors import ArtifactConfigError, ArtifactCorrupt
from checkpoint.artifacts.pointer import ArtifactPointer, is_pointer_json
from checkpoint.jsonutil import dumps

#: How a stored artifact turns back into a value: raw bytes, UTF-8 text, or a JSON document.
AS_KEY = "as"
_DEFAULT_MEDIA = {
    "bytes": "application/octet-stream",
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
}


def offload(
    value: bytes | str | dict | list,
    *,
    store: ArtifactStore,
    inline_limit: int,
    media_type: str | None = None,
) -> Any:
    """``value`` itself when its JSON form is at most ``inline_limit`` bytes, else a stored reference.

    The result is always JSON: ``bytes`` have no JSON form, so they are always stored. ``str`` is
    stored as UTF-8 text, ``dict``/``list`` as a JSON document; ``media_type`` defaults to
    ``text/plain; charset=utf-8``, ``application/json`` or ``application/octet-stream``.
    """
    if not isinstance(inline_limit, int) or isinstance(inline_limit, bool) or inline_limit < 0:
        raise ArtifactConfigError(f"inline_limit must be an int >= 0 (STEPLOG_INLINE_LIMIT), got {inline_limit!r}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        kind, data = "bytes", bytes(value)
    elif isinstance(value, str):
        if len(dumps(value).encode()) <= inline_limit:
            return value
        kind, data = "text", value.encode("utf-8")
    elif isinstance(value, (dict, list)):
        encoded = dumps(value).encode()
        if len(encoded) <= inline_limit:
            return value
        kind, data = "json", encoded
    else:
        raise ArtifactConfigError(f"offload takes bytes, str, dict or list, got {type(value).__name__}")
    pointer = store.put(data, media_type or _DEFAULT_MEDIA[kind])
    return {**pointer.to_json(), AS_KEY: kind}


def resolve(value: Any, *, store: ArtifactStore) -> Any:
    """The original value behind an :func:`offload` reference; any other value unchanged."""
    if not is_pointer_json(value):
        return value
    pointer = ArtifactPointer.from_json(value)
    kind = value.get(AS_KEY, "bytes")
    if kind not in _DEFAULT_MEDIA:
        raise ArtifactConfigError(f"artifact reference {pointer.uri}: unknown {AS_KEY!r} {kind!r}")
    data = store.get(pointer)
    if kind == "bytes":
        return data
    try:
        text = data.decode("utf-8")
        return text if kind == "text" else json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both are
        # The hash matched, so these are the bytes that were written; the reference's kind is wrong.
        raise ArtifactCorrupt(f"artifact {pointer.uri} does not decode as {kind}: {exc}") from exc
