"""Worker liveness: one heartbeat row per worker *process*, not per step.

A lease points at its owner's row (``worker_procs``); an owner whose heartbeat is older than the lease
time is dead, and :mod:`checkpoint.recovery` takes its steps over. The heartbeat runs in each process
that executes steps (the solo worker, or each prefork child): a dead child with a live parent must not
keep its leases alive.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from checkpoint import steps
from checkpoint.db import soft
from checkpoint.queries import EVENT_LOG, load
from checkpoint.steps import Claim, Worker

Q = load(EVENT_LOG)
log = logging.getLogger("steplog.heartbeat")


def register(engine: Engine, worker: Worker) -> None:
    """Add (or refresh) this process's liveness row."""
    with soft(engine).begin() as conn:
        conn.execute(Q["register_proc"], dict(id=worker.owner, worker=worker.name, pid=worker.pid))


def beat(engine: Engine, worker: Worker) -> None:
    """Refresh this process's liveness row."""
    with soft(engine).begin() as conn:
        if conn.execute(Q["heartbeat"], dict(id=worker.owner)).one_or_none() is None:
            # Forgotten after a long pause: come back as the same owner; leases taken meanwhile stay taken.
            conn.execute(Q["register_proc"], dict(id=worker.owner, worker=worker.name, pid=worker.pid))


class Heartbeat(threading.Thread):
    """Keeps this process's liveness row fresh; retries lease hand-backs that failed at commit."""

    def __init__(self, engine: Engine, worker: Worker, interval: float) -> None:
        super().__init__(name="steplog-heartbeat", daemon=True)
        self.engine, self.worker, self.interval = engine, worker, interval
        self.stopping = threading.Event()
        self._releases: list[Claim] = []
        self._lock = threading.Lock()

    def release_later(self, claim: Claim) -> None:
        with self._lock:
            self._releases.append(claim)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                beat(self.engine, self.worker)
                self._retry_releases()
            except Exception as exc:  # Postgres away: keep trying; our leases lapse meanwhile, as they should
                log.warning("heartbeat failed: %s", exc)

    def _retry_releases(self) -> None:
        with self._lock:
            pending, self._releases = self._releases, []
        for claim in pending:
            try:
                steps.release(self.engine, claim, self.worker)
            except Exception:
                self.release_later(claim)
