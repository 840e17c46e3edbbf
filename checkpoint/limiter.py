"""Fleet-wide rate limits in Redis: requests and units (tokens) per sliding window, shared by every
worker, for model endpoints (``STEPLOG_LLM_RPM``/``STEPLOG_LLM_TPM``) and tools (``Rate(...)``).

Why Redis and not Postgres: a reservation is made before every model or tool call and settled after
it, so it must cost far less than the call; one Lua script call is one round trip that no other
client can interleave with. Losing the state (a Redis restart, a wipe) only forgets the last window's
reservations, which allows at most one window's burst; a provider that still answers 429 then blocks
the limit for its ``Retry-After`` (:meth:`RateLimiter.block`), for every worker.

No budget raises :class:`~checkpoint.errors.Throttled` with the time until the oldest reservations
leave the window: the step runner hands the step back undone with that due time, and the worker takes
other steps meanwhile. Nothing here sleeps. When Redis cannot be reached the call goes ahead (logged):
a limiter must not stop a fleet that its provider would still serve.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from checkpoint import redis_keys
from checkpoint.errors import Throttled

log = logging.getLogger("steplog.limiter")

LUA = Path(__file__).with_name("limiter.lua").read_text()


@dataclass(frozen=True)
class Limit:
    """One limit: at most ``requests`` calls and ``units`` (tokens) per ``window`` seconds (None: no
    limit of that kind). ``reasons``: what ``show`` says of a step deferred by each kind."""

    name: str
    window: float
    requests: int | None = None
    units: int | None = None
    reasons: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def reason(self, kind: str) -> str:
        return self.reasons.get(kind) or f"rate: {self.name} {kind}"

    def keys(self) -> list[str]:
        return [redis_keys.rate(self.name, part) for part in ("log", "cost", "blocked", "turns", "turn-kind")]


@dataclass(frozen=True)
class Reservation:
    limit: Limit
    id: str
    units: int


class RateLimiter:
    """Reservations against :class:`Limit` values, on one Redis (the hot tier's)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(LUA)
        self._announced: set[Limit] = set()

    @classmethod
    def from_url(cls, url: str) -> RateLimiter:
        return cls(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def reserve(self, limit: Limit, units: int = 0, *, caller: str | None = None) -> Reservation | None:
        """Take one request and ``units`` from ``limit``; :class:`Throttled` when there is no room (or a
        provider asked to wait). None when Redis is unreachable (the call goes ahead unlimited).

        ``caller`` names who asks, the same each time it comes back (a step: ``run_id:seq``): one
        turned away is given a turn, and on its return goes before newcomers."""
        rid = secrets.token_hex(8)
        try:
            self._announce(limit)
            ok, kind, wait = self._script(keys=limit.keys(), args=[
                "reserve", limit.window, limit.requests or 0, limit.units or 0, max(int(units), 0),
                caller or rid, rid])
        except redis.RedisError as exc:
            log.warning("rate limit %s not checked (Redis: %s); the call goes ahead", limit.name, exc)
            return None
        if ok == b"1":
            return Reservation(limit, rid, int(units))
        raise Throttled(limit.reason(kind.decode()), float(wait))

    def settle(self, reservation: Reservation | None, units: int) -> None:
        """The reservation's real cost (a model's reported usage), counted from now."""
        if reservation is None:
            return
        try:
            self._script(keys=reservation.limit.keys(), args=["settle", reservation.id, max(int(units), 0)])
        except redis.RedisError as exc:
            log.warning("rate limit %s not settled (Redis: %s)", reservation.limit.name, exc)

    def block(self, limit: Limit, seconds: float) -> None:
        """Nobody in the fleet reserves from ``limit`` for ``seconds`` (a provider's 429 Retry-After)."""
        try:
            self._script(keys=limit.keys(), args=["block", max(float(seconds), 0.001)])
        except redis.RedisError as exc:
            log.warning("rate limit %s not blocked (Redis: %s)", limit.name, exc)

    def usage(self, limit: Limit) -> dict[str, Any]:
        """``{"requests", "units", "blocked_seconds"}`` in the window now."""
        n, units, blocked, turns = self._script(keys=limit.keys(), args=["usage", limit.window])
        return {"requests": int(n), "units": int(float(units)), "blocked_seconds": round(float(blocked), 3),
                "waiting": int(turns)}

    def known(self) -> list[dict[str, Any]]:
        """Every limit used since Redis started, with its usage now: what ``steplog limits`` lists."""
        out = []
        for name, spec in sorted(self.client.hgetall(redis_keys.rates()).items()):
            d = json.loads(spec)
            limit = Limit(name.decode(), d["window"], d.get("requests"), d.get("units"))
            now = self.usage(limit)
            out.append({"name": limit.name, "window_seconds": limit.window,
                        "requests": now["requests"], "requests_limit": limit.requests,
                        "units": now["units"], "units_limit": limit.units,
                        "blocked_seconds": now["blocked_seconds"], "waiting": now["waiting"],
                        "reasons": d.get("reasons") or {}})
        return out

    def _announce(self, limit: Limit) -> None:
        if limit not in self._announced:
            self.client.hset(redis_keys.rates(), limit.name, json.dumps(
                {"window": limit.window, "requests": limit.requests, "units": limit.units,
                 "reasons": limit.reasons}))
            self._announced.add(limit)


# The process's limiter, installed by the worker's wiring (``workers.wiring.step_services``) so that
# model clients and tool runtimes built anywhere in the process (an agent module's own reasoner
# included) share it. None: no Redis, no limits.
_current: RateLimiter | None = None


def install(limiter: RateLimiter | None) -> None:
    global _current
    _current = limiter


def current() -> RateLimiter | None:
    return _current
