"""Noticing, within a sweep, that the broker lost its queue (Redis wiped, or restarted without its data).

The broker's Redis holds a sentinel key beside the queue (:func:`checkpoint.redis_keys.broker_epoch`)
whose value is the Postgres time its epoch began. Whatever empties the queue (``FLUSHDB``,
``FLUSHALL``, a restart without persistence, a failover to an empty replica) empties the sentinel
with it. Every worker's sweeper reads it (one ``GET`` per sweep); the first to find it gone writes a
new epoch (``SET NX``: one writer wins, everyone reads the winner's value), and each sweeper that
sees the value change re-sends every dispatch published before the new epoch began and still
unclaimed (``resend_dispatched_before``): those messages went with the data. The query hands each
row to one sweeper, so a loss is re-sent once, not once per worker. A message published between the
loss and the new epoch survived and is re-sent too: a duplicate step message, which the fenced claim
turns into a no-op.

A sweeper that never saw an epoch (just started) only learns the current one; a loss while no worker
was running is left to ``STEPLOG_REDISPATCH_SECONDS``, the backstop for any lost message.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from sqlalchemy import Engine

from checkpoint import redis_keys
from checkpoint.queries import EVENT_LOG, load

Q = load(EVENT_LOG)
log = logging.getLogger("steplog.recovery")


class BrokerEpoch:
    """One sweeper's view of the broker's epoch on ``client`` (the broker's own Redis database)."""

    def __init__(self, client: redis.Redis, queue: str, engine: Engine) -> None:
        self.client, self.key, self.engine = client, redis_keys.broker_epoch(queue), engine
        self.seen: bytes | None = None

    def _begin(self) -> bytes | None:
        with self.engine.connect() as conn:
            now = conn.execute(Q["clock"]).scalar_one()
        self.client.set(self.key, now.isoformat(), nx=True)
        return self.client.get(self.key)

    def lost_since(self) -> datetime | None:
        """When the current epoch began, if the broker lost its data since the last call; else None."""
        value = self.client.get(self.key)
        if value is None:
            value = self._begin()
        seen, self.seen = self.seen, value
        if seen is None or value is None or value == seen:
            return None
        return datetime.fromisoformat(value.decode())
