"""The ceiling: a bare Celery hop chain, same broker and durability settings, no Postgres.

Run as `celery -A scripts.bench_bare worker`; BENCH_BROKER_URL names the broker. With
BENCH_STEPLOG_TRANSPORT=1 it uses steplog's Redis transport (workers/redis_transport.py) instead of
kombu's stock one, and sends the next hop's `task-sent` event with the worker's own buffered task
events, as a steplog worker does (workers/process.py): the ceiling at equal transport cost.

Each hop adds its worker's node name to `bench:seen` (so the benchmark can wait until every worker
consumes) and the last hop of chain C adds C to `bench:done`.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, signals

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/15")
STEPLOG_TRANSPORT = os.environ.get("BENCH_STEPLOG_TRANSPORT") == "1"


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


app = make_app(BROKER, steplog_transport=STEPLOG_TRANSPORT)
_done = redis.Redis.from_url(BROKER)
_consumer: Any = None


@signals.worker_ready.connect(weak=False)
def _ready(sender=None, **_):
    global _consumer
    _consumer = sender


class _Buffered:
    """Celery's ``EventDispatcher.publish`` onto the consumer's buffering dispatcher (as steplog's)."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher

    def publish(self, type_: str, fields: dict[str, Any], producer: Any = None, **_: Any) -> None:
        self.dispatcher.send(type_, **fields)


def _sent_events() -> _Buffered | None:
    if not STEPLOG_TRANSPORT or _consumer is None or _consumer.event_dispatcher is None:
        return None
    return _Buffered(_consumer.event_dispatcher)


@app.task(name="bench.hop", bind=True)
def hop(self, chain: int, left: int) -> None:
    if chain < 0:  # a warm-up hop: say who took it
        _done.sadd("bench:seen", self.request.hostname)
    elif left > 1:
        hop.apply_async((chain, left - 1), task_id=f"{chain}:{left - 1}", event_dispatcher=_sent_events())
    else:
        _done.sadd("bench:done", chain)
