"""Idempotency keys: SHA-256 over RFC 8785 canonical JSON, the same on every process and machine.

RFC 8785 (JCS) fixes what ``json.dumps`` leaves open: keys sorted, no whitespace, UTF-8, and numbers
written the ECMAScript way, so ``1`` and ``1.0`` are both ``1``. NaN, infinities and integers beyond
2**53 have no canonical form and are refused with the path of the offending field.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import rfc8785

from tools.errors import ToolInputError

# Bump only with a migration plan: every stored key changes with it.
KEY_SCHEME = 1
_MAX_SAFE_INT = 2**53 - 1


def _bad_path(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first field JCS cannot represent, as (dotted path, reason)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"{value} is not a JSON number")
    if isinstance(value, int):
        return None if abs(value) <= _MAX_SAFE_INT else (path, "integer beyond 2**53 has no canonical JSON form")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return (path, f"object key {k!r} is not a string")
            found = _bad_path(v, f"{path}.{k}" if path else k)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _bad_path(v, f"{path}.{i}" if path else str(i))
            if found:
                return found
        return None
    return (path, f"{type(value).__name__} is not JSON")


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity inside ``value`` (which pydantic would quietly turn
    into null), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items: Any = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for k, v in items:
        found = non_finite_path(v, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None


def canonical_json(value: Any) -> bytes:
    """``value`` as RFC 8785 canonical JSON (UTF-8 bytes); :class:`ToolInputError` names a bad field."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        field, reason = _bad_path(value) or ("", str(exc))
        raise ToolInputError(field, reason) from exc


def input_hash(validated_input: Any) -> str:
    """SHA-256 hex of the canonical JSON of a tool's validated input."""
    return hashlib.sha256(canonical_json(validated_input)).hexdigest()


def idempotency_key(run_id: str, seq: int, tool: str, version: str, validated_input: Any) -> str:
    """The key of one logical tool call: the same run, step, tool version and input give the same key.

    The attempt number is deliberately absent, so a retried or redelivered step finds its own call.
    """
    envelope = {
        "scheme": KEY_SCHEME,
        "run_id": run_id,
        "seq": seq,
        "tool": tool,
        "version": version,
        "input": validated_input,
    }
    return hashlib.sha256(canonical_json(envelope)).hexdigest()
