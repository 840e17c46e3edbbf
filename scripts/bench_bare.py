"""The ceiling: a bare Celery hop chain, same broker and durability settings, no Postgres.

Run as `celery -A scripts.bench_bare worker`; BENCH_BROKER_URL names the broker. With
BENCH_STEPLOG_TRANSPORT=1 it uses steplog's Redis transport (workers/redis_transport.py) instead of
kombu's stock one: the ceiling at equal transport cost.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/15")


def make_app(broker: str, *, steplog_transport: bool) -> Celery:
    """The chain's app; the workers' and the publishing side's must match."""
    app = Celery("bench_bare", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
        task_reject_on_worker_lost=True, worker_prefetch_multiplier=1, task_default_queue="bare",
        worker_send_task_events=True, task_send_sent_event=True,
    )
    if steplog_transport:
        from workers.redis_transport import TRANSPORT

        app.conf.broker_transport = TRANSPORT
    return app


app = make_app(BROKER, steplog_transport=os.environ.get("BENCH_STEPLOG_TRANSPORT") == "1")
_done = redis.Redis.from_url(BROKER)


@app.task(name="bench.hop")
def hop(chain: int, left: int) -> None:
    if left > 1:
        hop.apply_async((chain, left - 1), task_id=f"{chain}:{left - 1}")
    else:
        _done.incr("bench:done")
