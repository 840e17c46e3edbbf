"""`GET /runs/{id}` without re-reading an unchanged run: each replica keeps the JSON it last rendered
for a run, under the digest of the run's row (``runs.version``). A request costs one indexed lookup
when nothing changed, and the answer is still what Postgres holds at that moment. The digest doubles
as the ETag, so a client that sends ``If-None-Match`` gets 304 with no body."""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_BYTES = 32 * 1024 * 1024  # per replica: past it the least recently read runs are forgotten


class ShownRuns:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, run_id: str, version: str) -> bytes | None:
        with self._lock:
            hit = self._bodies.get(run_id)
            if hit is None or hit[0] != version:
                return None
            self._bodies.move_to_end(run_id)
            return hit[1]

    def put(self, run_id: str, version: str, body: bytes) -> None:
        """``body`` was read after ``version``: it is never older than the digest it is kept under."""
        if len(body) > self.max_bytes // 8:
            return
        with self._lock:
            old = self._bodies.pop(run_id, None)
            if old is not None:
                self._size -= len(old[1])
            self._bodies[run_id] = (version, body)
            self._size += len(body)
            while self._size > self.max_bytes:
                _, (_, dropped) = self._bodies.popitem(last=False)
                self._size -= len(dropped)
