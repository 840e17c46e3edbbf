"""A model endpoint's fleet-wide budget: ``STEPLOG_LLM_RPM`` requests and ``STEPLOG_LLM_TPM`` tokens per
window (a minute), per endpoint (base URL and model), shared by every worker through
:mod:`checkpoint.limiter`.

Before a call the client reserves one request and the tokens it may spend: the prompt's size (its
JSON at three characters a token, which overestimates English and code a little) plus ``max_tokens``
(or ``STEPLOG_LLM_COMPLETION_TOKENS`` when the request sets none). After the answer it settles the
reservation with the answer's ``usage``. No budget, or a provider's 429 (which blocks the endpoint for
its ``Retry-After``, for every worker), raises :class:`~checkpoint.errors.Throttled`: the step is
deferred, never slept on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from checkpoint import limiter
from checkpoint.errors import Throttled
from checkpoint.limiter import Limit, Reservation
from tasks import logcontext

CHARS_PER_TOKEN = 3
#: How long the endpoint is blocked after a 429 that names no Retry-After (seconds).
DEFAULT_RETRY_AFTER = 1.0
REASONS = {"requests": "rate: llm rpm", "units": "rate: llm tpm", "blocked": "rate: llm 429"}


@dataclass(frozen=True)
class LLMLimits:
    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    completion_tokens: int = 1024


_limits = LLMLimits()


def configure(limits: LLMLimits) -> None:
    """This process's limits (``workers.wiring`` sets them from the settings)."""
    global _limits
    _limits = limits


@dataclass(frozen=True)
class Budget:
    limit: Limit
    rates: limiter.RateLimiter
    completion_tokens: int

    def estimate(self, body: Mapping[str, Any]) -> int:
        prompt = len(json.dumps(body.get("messages") or [])) + len(json.dumps(body.get("tools") or []))
        answer = body.get("max_tokens") or body.get("max_completion_tokens") or self.completion_tokens
        return prompt // CHARS_PER_TOKEN + int(answer)

    def reserve(self, body: Mapping[str, Any]) -> Reservation | None:
        step = logcontext.current()
        caller = f"{step['run_id']}:{step['seq']}" if step.get("run_id") else None  # the step, for its turn
        return self.rates.reserve(self.limit, self.estimate(body) if self.limit.units else 0, caller=caller)

    def settle(self, reservation: Reservation | None, answer: Mapping[str, Any]) -> None:
        usage = answer.get("usage") if isinstance(answer, Mapping) else None
        if reservation is None or not self.limit.units or not isinstance(usage, Mapping):
            return
        total = usage.get("total_tokens")
        if not isinstance(total, int):
            total = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
        if isinstance(total, int) and total > 0:
            self.rates.settle(reservation, total)

    def rate_limited(self, retry_after: float | None) -> Throttled:
        """A 429 from the provider: every worker backs off for ``retry_after``; this step too."""
        wait = retry_after if retry_after else DEFAULT_RETRY_AFTER
        self.rates.block(self.limit, wait)
        return Throttled(REASONS["blocked"], wait)


def for_endpoint(base_url: str, model: Any) -> Budget | None:
    """The budget of ``model`` at ``base_url``, or None when no limit is set (or no limiter runs)."""
    rates = limiter.current()
    if rates is None or not (_limits.rpm or _limits.tpm):
        return None
    limit = Limit(f"llm {model} at {base_url}", _limits.window, _limits.rpm, _limits.tpm, REASONS)
    return Budget(limit, rates, _limits.completion_tokens)
