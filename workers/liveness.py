"""Per-process liveness (a heartbeat thread) and the sweeper every worker runs (no singleton).

The heartbeat runs in each process that executes steps (the solo worker, or each prefork child): a
dead child with a live parent must not keep its leases alive. The sweeper runs in each worker's main
process and uses SKIP LOCKED, so any number of workers sweep without duplicating work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from checkpoint import liveness, steps
from checkpoint.liveness import Dispatch
from checkpoint.steps import Claim, Worker

log = logging.getLogger("steplog.liveness")

FORGET_EVERY = 300.0


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
                liveness.heartbeat(self.engine, self.worker.owner, self.worker.name, self.worker.pid)
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


class Sweeper(threading.Thread):
    """Re-dispatches steps of dead workers, and dispatches that were never sent or got lost."""

    def __init__(
        self,
        engine: Engine,
        owner: Callable[[], str],
        publish: Callable[[Dispatch, str | None], None],
        *,
        interval: float,
        lease_seconds: float,
        redispatch_seconds: float,
    ) -> None:
        super().__init__(name="steplog-sweeper", daemon=True)
        self.engine, self.owner, self.publish = engine, owner, publish
        self.interval, self.lease_seconds, self.redispatch_seconds = interval, lease_seconds, redispatch_seconds
        self.stopping = threading.Event()
        self._last_forget = time.monotonic()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:
                log.warning("sweep failed: %s", exc)

    def sweep(self) -> list[Dispatch]:
        owner = self.owner()
        found = liveness.sweep_lost_leases(self.engine, owner, lease_seconds=self.lease_seconds)
        for d in found:
            log.info("step %s of run %s lost its worker; dispatching it again", d.seq, d.run_id)
        due = liveness.sweep_outbox(
            self.engine, owner, lease_seconds=self.lease_seconds, redispatch_seconds=self.redispatch_seconds
        )
        for d in found + due:
            self.publish(d, None)
        if time.monotonic() - self._last_forget > FORGET_EVERY:
            self._last_forget = time.monotonic()
            liveness.forget_dead(self.engine)
        return found + due
