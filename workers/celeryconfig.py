"""Celery configuration for durability. One line each on why."""

from __future__ import annotations

from typing import Any

from kombu import Queue

from workers import redis_transport
from workers.settings import Settings

# Steps taken over from a dead worker, or re-sent after a lost message, jump the queue: a run
# already delayed by a crash should not also wait behind every other run's next step. Then a run's
# own priority (`submit --priority`, 0-9), where a session's turn under way counts as priority 6 at
# least: someone waits for its reply, and finishing turns that have started before starting new ones
# keeps every turn short. Both brokers have ten levels (rank 9 served first): recoveries take the top
# one, run priorities 1-9 the nine below it, priority 0 sharing the lowest with 1. Redis serves its
# priority 0 first (kombu's priority lists, all ten steps); RabbitMQ the highest (x-max-priority 9).
LEVELS = ("urgent", "turn", "normal")
TURN_PRIORITY = 6


def step_rank(level: str, run_priority: int = 0) -> int:
    """0-9, 9 served first."""
    if level == "urgent":
        return 9
    if level == "turn":
        run_priority = max(run_priority, TURN_PRIORITY)
    return max(min(run_priority, 9) - 1, 0)


def step_priority(settings: Settings, level: str, run_priority: int = 0) -> int:
    rank = step_rank(level, run_priority)
    return 9 - rank if settings.broker_is_redis else rank

def celery_config(settings: Settings) -> dict[str, Any]:
    hard_limit = settings.step_time_limit + settings.lease_seconds + 5
    config: dict[str, Any] = dict(
        broker_url=settings.broker_url,
        task_default_queue=settings.queue,
        task_queues=[
            Queue(
                settings.queue, routing_key=settings.queue,
                queue_arguments=None if settings.broker_is_redis else {"x-max-priority": 9},
            )
        ],
        # JSON only: a message any worker (and any language) can read; no pickle from the broker.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Results and history live in Postgres; Celery's result backend is not used.
        task_ignore_result=True,
        # Ack after the step ran: a worker that dies mid-step leaves its message to be redelivered.
        task_acks_late=True,
        # A pool child killed mid-step (OOM, hard limit) requeues its message at once.
        task_reject_on_worker_lost=True,
        # Hold one message per process: a killed worker strands no prefetched steps.
        worker_prefetch_multiplier=1,
        # Events for Flower: received/started/succeeded per step, and sent at publish time.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # Hard kill (prefork) just above our own in-process limit and lease, below the visibility timeout.
        task_time_limit=hard_limit,
        # A worker cut off from the broker stops its steps: their messages will be redelivered anyway.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        # Logging is ours (structured, with run context); Celery must not replace the root handler.
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # A message the worker cannot take is dead-lettered and acked, and the worker goes on.
        worker_consumer="workers.consumer:Consumer",
    )
    if (settings.broker_url or "").startswith("redis://"):
        # kombu's Redis transport, reusing one client per channel (see workers/redis_transport.py).
        config["broker_transport"] = redis_transport.TRANSPORT
    if settings.broker_is_redis:
        config["broker_transport_options"] = {
            # Backstop only (Postgres leases decide in seconds); longer than any step, so a running
            # step's message is not redelivered while it runs.
            "visibility_timeout": max(settings.effective_visibility_timeout, hard_limit + 1),
            # kombu's scan for expired unacked messages: each minute is plenty for a backstop.
            "unacked_restore_interval": 60,
            "unacked_restore_throttle": 1,
            # Ten priority lists, not kombu's four: recoveries, then run priorities (see step_rank).
            "priority_steps": list(range(10)),
        }
    return config
