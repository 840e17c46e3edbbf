"""Messages no worker could read, kept where an operator can look (`steplog dead-letters`).

A message on the step queue that is not a kombu message (not JSON, no properties, a body its
encoding cannot decode) or that Celery cannot take (a body its content type cannot decode, a content
type we do not accept, no task name, an unknown task) is dropped from the queue, so it cannot kill
or wedge a worker; what it was is kept here: the newest :data:`CAP` entries in a Redis list per queue,
with a counter that is never trimmed. Each entry is JSON: ``at``, ``queue``, ``reason``, ``worker``
and ``raw`` (the first :data:`RAW_LIMIT` characters of the message as text).

The list lives on the broker's Redis (with RabbitMQ, on the hot tier's Redis; without one, the worker
log alone says it happened).
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from checkpoint import redis_keys

log = logging.getLogger("steplog.dead_letters")

#: Entries kept per queue (the counter goes on past it).
CAP = 1000
#: Characters of a dead message kept in its entry.
RAW_LIMIT = 4096


def as_text(raw: Any) -> str:
    """Any message (bytes, text, a decoded body) as text an operator can read, cut at RAW_LIMIT."""
    if isinstance(raw, bytes | bytearray | memoryview):
        text = bytes(raw[: RAW_LIMIT * 4]).decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = repr(raw)
    return text[:RAW_LIMIT]


def record(client: redis.Redis | None, queue: str, raw: Any, reason: str) -> int | None:
    """Log a dropped message and keep it under ``queue``'s dead letters; returns the count so far (None
    when it could not be stored: no Redis, or Redis failing, which is logged, never raised)."""
    count = None
    if client is not None:
        entry = dict(at=datetime.now(UTC).isoformat(), queue=queue, reason=reason, worker=socket.gethostname(),
                     raw=as_text(raw))
        try:
            pipe = client.pipeline(transaction=True)
            pipe.lpush(redis_keys.dead_letters(queue), json.dumps(entry))
            pipe.ltrim(redis_keys.dead_letters(queue), 0, CAP - 1)
            pipe.incr(redis_keys.dead_letter_count(queue))
            count = int(pipe.execute()[-1])
        except redis.RedisError as exc:
            log.warning("could not keep a dead letter of queue %s in Redis: %s", queue, exc)
    log.error(
        "dropped an unreadable message from queue %s (%s): %s; dead letters so far: %s (steplog dead-letters)",
        queue, reason, as_text(raw)[:200], "unknown" if count is None else count,
    )
    return count


@dataclass(frozen=True)
class DeadLetters:
    """A queue's dead letters as an operator sees them: how many ever, and the newest entries."""

    queue: str
    count: int
    entries: list[dict[str, Any]]


def read(client: redis.Redis, queue: str, limit: int = 20) -> DeadLetters:
    count = client.get(redis_keys.dead_letter_count(queue))
    raws = client.lrange(redis_keys.dead_letters(queue), 0, max(limit, 1) - 1) if limit > 0 else []
    entries = []
    for raw in raws:
        try:
            entries.append(json.loads(raw))
        except ValueError:
            entries.append({"raw": as_text(raw), "reason": "entry is not JSON"})
    return DeadLetters(queue, int(count or 0), entries)
