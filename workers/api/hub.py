"""One reader of the runs' progress streams per API process, for every open event stream.

Each committed step appends to its run's progress stream in Redis (``steplog:progress:{run}``). Rather
than one blocking read (and one Redis connection) per client, the hub reads the streams of every run
someone follows in one ``XREAD`` and wakes those runs' followers, who then read the new events from
Postgres. Redis is only a doorbell: without it, or when it is wiped, followers poll Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from typing import Any

import anyio
import redis.asyncio as aioredis

from checkpoint import redis_keys

log = logging.getLogger("steplog.api")

BLOCK_MS = 1000
POLL_SECONDS = 1.0  # how often a follower reads Postgres while the hub cannot read Redis
# While the hub reads Redis, a doorbell is never missed (a follower's event stays set until it waits,
# and a new follower's run is read from its stream's start), so followers only check Postgres this
# often, for safety: a thousand open streams must not cost a thousand reads a second.
SAFE_POLL_SECONDS = 10.0


class Follower:
    """One client following one run: :meth:`wait` returns when a step of the run lands."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.event = asyncio.Event()

    async def wait(self) -> None:
        timeout = SAFE_POLL_SECONDS if self.hub.reading else POLL_SECONDS
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


class Hub:
    def __init__(self, redis_url: str | None) -> None:
        self.url = redis_url
        self._followers: dict[str, set[Follower]] = {}
        self._cursors: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._reads: dict[tuple, asyncio.Future] = {}
        self.reading = False  # the last read of Redis worked: doorbells ring

    async def read(self, run_id: str, after: int, fetch: Any) -> Any:
        """``fetch(after)`` in a thread, shared by the run's followers that ask for the same events at the
        same point of its progress stream: ten followers of a run cost one Postgres read per step."""
        key = (run_id, after, self._cursors.get(run_id))
        shared = self._reads.get(key)
        if shared is None:
            shared = asyncio.ensure_future(anyio.to_thread.run_sync(fetch, after))
            self._reads[key] = shared
            shared.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(shared)

    @contextlib.asynccontextmanager
    async def follow(self, run_id: str):
        """A :class:`Follower` of ``run_id`` for the ``async with`` block."""
        follower = Follower(self)
        self._followers.setdefault(run_id, set()).add(follower)
        # From the stream's start: a first read may wake the follower once for old entries (harmless).
        self._cursors.setdefault(run_id, "0-0")
        self._changed.set()
        if self.url and self._task is None:
            self._task = asyncio.create_task(self._read())
        try:
            yield follower
        finally:
            followers = self._followers.get(run_id)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._followers[run_id]
                    self._cursors.pop(run_id, None)

    async def _read(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_timeout=BLOCK_MS / 1000 + 5)
        try:
            while True:
                if not self._followers:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                keys = {redis_keys.progress(r): self._cursors.get(r, "0-0") for r in list(self._followers)}
                try:
                    reply = await client.xread(keys, block=BLOCK_MS, count=100)
                except Exception as exc:  # Redis down: followers poll Postgres meanwhile
                    if self.reading:
                        log.warning("progress hub: Redis read failed (%s); followers poll Postgres", exc)
                    self.reading = False
                    for followers in self._followers.values():  # poll at once, then every POLL_SECONDS
                        for follower in followers:
                            follower.event.set()
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                self.reading = True
                for stream, entries in reply or []:
                    run_id = (stream.decode() if isinstance(stream, bytes) else stream).rsplit(":", 1)[-1]
                    if run_id not in self._followers:
                        continue
                    last = entries[-1][0]
                    self._cursors[run_id] = last.decode() if isinstance(last, bytes) else last
                    for follower in self._followers.get(run_id, ()):
                        follower.event.set()
        finally:
            await client.aclose()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
