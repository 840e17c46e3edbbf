"""Concurrency keys: at most ``limit`` steps of runs with the same key value in flight, fleet-wide.

::

    Workflow("ingest", Input, start, step, concurrency=Concurrency(key="input.tenant", limit=3))
    Agent("support", ..., concurrency=Concurrency(key="input.customer.id", limit=1))

``key`` is a path into the run's input (``input.FIELD`` or ``input.A.B``) or a function of the input
(a dict) returning a value; a run whose key value is missing (None) is not limited. The key is taken
once, when the run is submitted, and stored on the run as ``FIELD=value`` (``tenant=acme``): every
workflow keyed on the same field shares that key's slots, each run held to its own ``limit``.
Operators can set or override a workflow's key with ``STEPLOG_CONCURRENCY`` (:func:`from_settings`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_PATH = re.compile(r"^input(\.[A-Za-z_][A-Za-z0-9_]*)+$")
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class Concurrency:
    key: str | Callable[[dict[str, Any]], Any]
    limit: int

    def __post_init__(self) -> None:
        if isinstance(self.key, str):
            if not _PATH.match(self.key):
                raise ValueError(f"Concurrency key must be a path into the input such as 'input.tenant', not {self.key!r}")
        elif not callable(self.key):
            raise TypeError(f"Concurrency key must be 'input.FIELD' or a function of the input, not {self.key!r}")
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ValueError(f"Concurrency limit must be a positive integer, not {self.limit!r}")

    @property
    def label(self) -> str:
        """The name the key's values go by: the path's last field (``tenant``), or ``key``."""
        return self.key.rsplit(".", 1)[-1] if isinstance(self.key, str) else "key"

    def key_of(self, data: Mapping[str, Any]) -> str | None:
        """``label=value`` for a run with input ``data``; None when the value is missing (not limited)."""
        if isinstance(self.key, str):
            value: Any = data
            for part in self.key.split(".")[1:]:
                value = value.get(part) if isinstance(value, Mapping) else None
        else:
            value = self.key(dict(data))
        if value is None:
            return None
        return f"{self.label}={value}"[:MAX_KEY_CHARS]


def from_settings(raw: Mapping[str, Any]) -> dict[str, Concurrency]:
    """``STEPLOG_CONCURRENCY``'s object, ``{"WORKFLOW": {"key": "input.FIELD", "limit": N}}``, as
    declarations; ValueError naming the workflow and what is wrong."""
    out: dict[str, Concurrency] = {}
    for workflow, spec in raw.items():
        if not isinstance(spec, Mapping) or set(spec) != {"key", "limit"}:
            raise ValueError(f"workflow {workflow!r}: give exactly {{\"key\": \"input.FIELD\", \"limit\": N}}, not {spec!r}")
        try:
            out[workflow] = Concurrency(spec["key"], spec["limit"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"workflow {workflow!r}: {exc}") from None
    return out
