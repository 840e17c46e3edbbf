"""The hot tier: active runs' reconstructed contexts and live progress in Redis.

Redis is only a cache here. A context is cached under its run id *and* the seq it was built at, and
a step reads only the entry for the latest seq Postgres holds, so a cached context is never stale.
Every Redis error (server down, FLUSHALL, restart, a corrupt entry) is a miss: logged, then the
context is rebuilt from Postgres. Key names come from :mod:`checkpoint.redis_keys`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine

from checkpoint import redis_keys, riders
from checkpoint.context import RunContext, reconstruct
from checkpoint.errors import HistoryError, HistoryInputError
from checkpoint.jsonutil import dumps

log = logging.getLogger(__name__)

PROGRESS_MAXLEN = 1000  # entries kept per run's progress stream (approximately: MAXLEN ~)
MAX_BLOCK_MS = 60_000  # longest wait of one blocking progress read
_BACKOFF_SECONDS = 1.0  # after a Redis error, skip Redis this long instead of paying a timeout per call


class HotCache:
    """Cache-or-rebuild of run contexts, and the per-run progress streams ``steplog watch`` reads."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
            raise HistoryInputError(f"hot cache ttl must be an int >= 1 (STEPLOG_HOT_TTL_SECONDS), got {ttl!r}")
        self.client = client
        self.ttl = ttl
        self._skip_until = 0.0
        self._blocking: redis.Redis | None = None

    @classmethod
    def from_url(cls, url: str, ttl: int, *, timeout: float = 0.5) -> HotCache:
        """A cache on the Redis at ``url`` with short timeouts and a single retry: a cache that
        is down must cost a step milliseconds, not redis-py's default retries with backoff."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, ttl)

    # -- contexts ---------------------------------------------------------------------------------

    def get(self, run_id: str, seq: int) -> RunContext | None:
        """The context of ``run_id`` built at ``seq``, or None (absent, expired, unreadable, Redis down)."""
        key = redis_keys.context(run_id, seq)
        raw = self._call("GET", key, lambda: self.client.get(key))
        if raw is None:
            return None
        try:
            ctx = RunContext.from_json(json.loads(raw))
        except (ValueError, HistoryError) as exc:
            log.warning("hot cache: dropping unreadable entry %s: %s", key, exc)
            self._call("DEL", key, lambda: self.client.delete(key))
            return None
        if ctx.run_id != run_id or ctx.seq != seq:
            log.warning("hot cache: entry %s holds run %s seq %s; ignored", key, ctx.run_id, ctx.seq)
            return None
        return ctx

    def put(self, ctx: RunContext) -> bool:
        """Cache ``ctx`` for ``ttl`` seconds; False when Redis did not take it."""
        key = redis_keys.context(ctx.run_id, ctx.seq)
        data = dumps(ctx.to_json())
        return self._call("SET", key, lambda: self.client.set(key, data, ex=self.ttl)) is not None

    def load(
        self, engine: Engine, run_id: str, *, latest_seq: int, budget_tokens: int, tail_limit: int
    ) -> RunContext:
        """The context as of ``latest_seq`` (the latest event in Postgres, e.g. a claimed step's seq - 1):
        the cached one when it was built at that seq with the same bounds, else rebuilt from Postgres
        and cached."""
        ctx = self.get(run_id, latest_seq)
        if ctx is not None and (ctx.budget_tokens, ctx.tail_limit) == (budget_tokens, tail_limit):
            return ctx
        ctx = reconstruct(engine, run_id, at_seq=latest_seq, budget_tokens=budget_tokens, tail_limit=tail_limit)
        self.put(ctx)
        return ctx

    def forget(self, run_id: str) -> int:
        """Drop every cached context of a run (e.g. when it ends); returns how many were dropped."""
        pattern = redis_keys.context_pattern(run_id)

        def drop() -> int:
            keys = list(self.client.scan_iter(match=pattern, count=500))
            return self.client.delete(*keys) if keys else 0

        return self._call("DEL", pattern, drop) or 0

    def park(self, run_id: str, seq: int) -> int:
        """Run ``run_id`` committed a wait at ``seq``: drop the keys it could hold (the contexts at
        ``seq - 1`` and ``seq``, its progress stream), so a waiting run keeps nothing in Redis."""
        keys = [redis_keys.context(run_id, seq - 1), redis_keys.context(run_id, seq), redis_keys.progress(run_id)]
        return self._call("DEL", keys[-1], lambda: self.client.delete(*keys)) or 0

    # -- live progress ----------------------------------------------------------------------------

    def publish_progress(self, run_id: str, event: dict[str, Any]) -> str | None:
        """Append ``event`` to the run's progress stream (capped near :data:`PROGRESS_MAXLEN` entries,
        expiring ``ttl`` after the last append); its stream id, or None when Redis did not take it."""
        key = redis_keys.progress(run_id)
        commands = self._progress_commands(run_id, event)

        def add() -> Any:
            pipe = self.client.pipeline(transaction=False)
            commands(pipe)
            return pipe.execute()[0]

        entry_id = self._call("XADD", key, add)
        return None if entry_id is None else _text(entry_id)

    def offer_progress(self, run_id: str, event: dict[str, Any]) -> riders.Offer | None:
        """Offer the append of ``event`` to ride with this thread's next broker publish
        (:mod:`checkpoint.riders`); None while Redis is being skipped after an error."""
        if time.monotonic() < self._skip_until:
            return None
        offer = riders.Offer(riders.where(self.client), self._progress_commands(run_id, event))
        riders.offer(offer)
        return offer

    def _progress_commands(self, run_id: str, event: dict[str, Any]) -> Any:
        key, fields = redis_keys.progress(run_id), {"event": dumps(event)}

        def add(pipe: Any) -> None:
            pipe.xadd(key, fields, maxlen=PROGRESS_MAXLEN, approximate=True)
            pipe.expire(key, self.ttl)

        return add

    def read_progress(
        self, run_id: str, after_id: str = "0-0", block_ms: int | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Progress entries after ``after_id`` as ``(id, event)`` pairs, oldest first; with ``block_ms``,
        wait that long for one to arrive. Empty when there are none or Redis is unavailable."""
        key = redis_keys.progress(run_id)
        if block_ms is not None and not 0 <= block_ms <= MAX_BLOCK_MS:
            raise HistoryInputError(f"block_ms must be between 0 and {MAX_BLOCK_MS} or None, got {block_ms!r}")
        client = self._blocking_client() if block_ms else self.client
        reply = self._call("XREAD", key, lambda: client.xread({key: after_id}, count=count, block=block_ms))
        out: list[tuple[str, dict[str, Any]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                raw = fields.get(b"event", fields.get("event"))
                try:
                    out.append((_text(entry_id), json.loads(raw)))
                except (TypeError, ValueError):
                    log.warning("progress stream %s: unreadable entry %s skipped", key, _text(entry_id))
        return out

    def _blocking_client(self) -> redis.Redis:
        # A blocking read must outlast the cache's short socket timeout: its own pool, same server.
        if self._blocking is None:
            pool = self.client.connection_pool
            kwargs = {**pool.connection_kwargs, "socket_timeout": MAX_BLOCK_MS / 1000 + 5}
            blocking_pool = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
            self._blocking = redis.Redis(connection_pool=blocking_pool)
        return self._blocking

    # -- errors are misses ------------------------------------------------------------------------

    def guarded(self, op: str, key: str, fn: Any) -> Any:
        """``fn()``, or None when Redis fails (logged, and Redis skipped for a moment): for other hot-tier
        users of this cache's client (:mod:`checkpoint.session_cache`)."""
        return self._call(op, key, fn)

    def blocking_client(self) -> redis.Redis:
        """A client for blocking reads (its socket timeout outlasts :data:`MAX_BLOCK_MS`)."""
        return self._blocking_client()

    def _call(self, op: str, key: str, fn: Any) -> Any:
        if time.monotonic() < self._skip_until:
            return None
        try:
            result = fn()
        except redis.RedisError as exc:
            self._skip_until = time.monotonic() + _BACKOFF_SECONDS
            log.warning("hot cache: Redis %s %s failed (treated as a miss; Redis skipped for %.0f s): %s",
                        op, key, _BACKOFF_SECONDS, exc)
            return None
        return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
