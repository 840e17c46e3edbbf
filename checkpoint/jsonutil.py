"""JSON as steplog stores it: compact, UTF-8, and a clear error for what JSON cannot hold."""

from __future__ import annotations

import json
from typing import Any

from checkpoint.errors import NotJSONError


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSONError(f"not JSON-serializable: {exc}") from exc
