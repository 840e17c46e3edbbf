"""How a lost step comes back: the sweeper every worker runs, and what it sweeps for.

A step is lost in one of two ways, and Postgres, not the broker, notices both:
- **its worker died mid-step** (or overran its deadline): the lease's owner stopped heart-beating
  (:mod:`checkpoint.heartbeat`), so :func:`sweep_lost_leases` releases the lease, records the attempt as
  lost (or timed out) and queues the step again, ahead of ordinary steps;
- **a concurrency slot was freed with nobody woken** (the woken step's run was cancelled, a cancel
  freed a slot): :func:`checkpoint.flow.repair` wakes the key's oldest waiters;
- **its dispatch never reached a worker**: an outbox row that is due and not known to be in flight
  (never published, promised by a process that died before publishing, or published so long ago that
  the broker must have lost it, or received by a worker process found dead since, which may have held
  it unclaimed) is taken by :func:`sweep_outbox` and published again; when the broker
  is seen to have lost its data (:mod:`checkpoint.broker_epoch`), every dispatch published before the
  loss is taken by :func:`resend_dispatched_before` at once.

Recovery re-dispatches, it never executes: the step runs wherever the broker delivers it, through the
same fenced claim as any other step, so a step re-sent by mistake is harmless (its claim finds the
step taken or done). Every worker sweeps; ``FOR UPDATE SKIP LOCKED`` hands each lost step to one
sweeper, so there is no leader to elect and nothing to fail over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import redis
from sqlalchemy import Engine

from checkpoint import flow
from checkpoint.broker_epoch import BrokerEpoch
from checkpoint.db import soft
from checkpoint.queries import EVENT_LOG, load
from checkpoint.steps import Dispatch, Worker

Q = load(EVENT_LOG)
log = logging.getLogger("steplog.recovery")

#: How often a sweeper deletes liveness rows of processes silent for an hour (seconds).
FORGET_EVERY = 300.0


def sweep_lost_leases(engine: Engine, owner: str, *, lease_seconds: float) -> list[Dispatch]:
    """Release the leases of dead or overrunning attempts and queue their steps for ``owner`` to publish."""
    with soft(engine).begin() as conn:
        rows = conn.execute(Q["sweep_lost_leases"], dict(owner=owner, lease_seconds=lease_seconds)).all()
    return [Dispatch(r.run_id, r.seq, r.workflow, r.priority) for r in rows]


def sweep_outbox(
    engine: Engine, owner: str, *, lease_seconds: float, redispatch_seconds: float, run_id: str | None = None
) -> list[Dispatch]:
    """Take the due dispatches that look lost (all runs, or one) for ``owner`` to publish."""
    with soft(engine).begin() as conn:
        rows = conn.execute(
            Q["sweep_outbox"],
            dict(owner=owner, lease_seconds=lease_seconds, redispatch_seconds=redispatch_seconds, run_id=run_id),
        ).all()
    return [Dispatch(r.run_id, r.seq, r.workflow, r.priority) for r in rows]


def resend_dispatched_before(engine: Engine, owner: str, since: datetime) -> list[Dispatch]:
    """Take every unclaimed dispatch published before ``since`` (the broker lost it) for ``owner`` to publish."""
    with soft(engine).begin() as conn:
        rows = conn.execute(Q["resend_dispatched_before"], dict(owner=owner, since=since)).all()
    return [Dispatch(r.run_id, r.seq, r.workflow, r.priority) for r in rows]


def wake_due(engine: Engine, owner: str, *, worker: str, pid: int, batch: int = 500) -> list[Dispatch]:
    """End the waits whose time has come (a sleep's end, a wait's timeout) and queue their next steps
    for ``owner`` to publish. A timer due while every worker was down fires once, when one is back."""
    with soft(engine).begin() as conn:
        rows = conn.execute(Q["wake_due"], dict(owner=owner, worker=worker, pid=pid, batch=batch)).all()
    return [Dispatch(r.run_id, r.seq, r.workflow, r.priority) for r in rows]


def forget_dead(engine: Engine) -> None:
    """Delete liveness rows of processes silent for an hour; their leases were taken over long ago."""
    with soft(engine).begin() as conn:
        conn.execute(Q["forget_procs"])


class Sweeper(threading.Thread):
    """Every ``interval`` seconds: re-dispatch the steps of dead workers, end waits whose time has come,
    then publish lost or due dispatches, and all at once those a broker lost with its data (``epoch``);
    and run any extra ``chores`` (firing schedules).

    Runs in each worker's main process (not per pool child); any number of them sweep at once.
    """

    def __init__(
        self,
        engine: Engine,
        worker: Callable[[], Worker],
        publish: Callable[[Dispatch, str | None], None],
        *,
        interval: float,
        lease_seconds: float,
        redispatch_seconds: float,
        chores: Sequence[Callable[[], list[Dispatch]]] = (),
        epoch: BrokerEpoch | None = None,
        on_swept: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__(name="steplog-sweeper", daemon=True)
        self.on_swept = on_swept  # (lease takeovers, redispatches) of each sweep, for metrics
        self.engine, self.worker, self.publish, self.chores, self.epoch = engine, worker, publish, chores, epoch
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
        """One sweep. What each part takes is published before the next part runs: a taken dispatch
        is promised by this live process, so one left unpublished (a later part failing, say on a
        connection that died with a Postgres restart) would wait for the backstop."""
        me = self.worker()
        sent: list[Dispatch] = []
        # (kind, part): takeovers and redispatches are counted for metrics; timers and chores are neither.
        parts: list[tuple[str, Callable[[], list[Dispatch]]]] = [
            ("takeover", lambda: self._lost_leases(me.owner)),
            ("woken", lambda: wake_due(self.engine, me.owner, worker=me.name, pid=me.pid)),
            ("woken", lambda: flow.repair(self.engine, me.owner)),
            *(("woken", chore) for chore in self.chores),
            ("redispatch", lambda: self._lost_with_the_broker(me.owner)),
            ("redispatch", lambda: sweep_outbox(self.engine, me.owner, lease_seconds=self.lease_seconds,
                                                redispatch_seconds=self.redispatch_seconds)),
        ]
        counts = {"takeover": 0, "woken": 0, "redispatch": 0}
        failed: Exception | None = None
        for kind, part in parts:
            try:
                taken = part()
            except Exception as exc:  # the other parts still run; the sweep is reported failed
                failed = failed or exc
                continue
            for d in taken:
                self.publish(d, None)
            sent += taken
            counts[kind] += len(taken)
        if self.on_swept is not None:
            self.on_swept(counts["takeover"], counts["redispatch"])
        if time.monotonic() - self._last_forget > FORGET_EVERY:
            self._last_forget = time.monotonic()
            forget_dead(self.engine)
        if failed is not None:
            raise failed
        return sent

    def _lost_leases(self, owner: str) -> list[Dispatch]:
        found = sweep_lost_leases(self.engine, owner, lease_seconds=self.lease_seconds)
        for d in found:
            log.info("step %s of run %s lost its worker; dispatching it again", d.seq, d.run_id)
        return found

    def _lost_with_the_broker(self, owner: str) -> list[Dispatch]:
        if self.epoch is None:
            return []
        try:
            since = self.epoch.lost_since()
        except redis.RedisError as exc:  # the broker is down: publishing fails too; the next sweep looks again
            log.debug("broker epoch unreadable: %s", exc)
            return []
        if since is None:
            return []
        lost = resend_dispatched_before(self.engine, owner, since)
        log.warning("the broker lost its queue (epoch now %s); dispatching %d unclaimed steps again", since, len(lost))
        return lost
