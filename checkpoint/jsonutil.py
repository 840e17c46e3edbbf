"""JSON as steplog stores it: compact, UTF-8, and a clear error for what JSON cannot hold."""

from __future__ import annotations

import json
from typing import Any


class NotJSONError(TypeError):
    """A workflow produced a value that is not JSON (a checkpoint must survive any process)."""


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSONError(f"not JSON-serializable: {exc}") from exc
