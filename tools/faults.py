"""Fault injection (``STEPLOG_TOOL_FAULT_RATE``): tool executions that fail transiently on purpose.

Half of the injected faults strike *after* the tool's effect happened, as when the answer is lost on
the way back: exactly the case idempotency keys exist for. The runtime's retries then absorb them
with the same key.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal, TypeVar

from tools.errors import TransientToolError

T = TypeVar("T")
Fault = Literal["before", "after"] | None


class InjectedFault(TransientToolError):
    """A transient failure injected by ``STEPLOG_TOOL_FAULT_RATE``."""


class FaultInjector:
    """Decides per execution whether to fail it; with a seed, the same key and execution decide alike."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self.seed = seed
        self.injected = 0

    def decide(self, key: str, execution: int) -> Fault:
        if self.rate <= 0:
            return None
        rng = random.Random(f"{self.seed}:{key}:{execution}") if self.seed is not None else random
        if rng.random() >= self.rate:
            return None
        return "before" if rng.random() < 0.5 else "after"

    def run(self, key: str, execution: int, fn: Callable[[], T]) -> T:
        """Run ``fn``, maybe failing before it runs or after it ran (its result then lost)."""
        fault = self.decide(key, execution)
        if fault == "before":
            self.injected += 1
            raise InjectedFault("injected fault before the call", maybe_applied=False)
        result = fn()
        if fault == "after":
            self.injected += 1
            raise InjectedFault("injected fault after the call: its answer was lost", maybe_applied=True)
        return result
