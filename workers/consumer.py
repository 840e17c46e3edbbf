"""Celery's consumer, with every message it cannot take dead-lettered instead of just logged.

Celery already acks (drops) a message whose body does not decode or whose content type is not
accepted, and rejects one with no task name or an unknown task, but only logs it; and a few shapes
(an unknown task without an id, a known task with headers Celery cannot read) raise out of its
handler and end the worker. Here each such message goes to the queue's dead letters
(:mod:`workers.dead_letters`: logged, counted, kept) and is acked, and the worker goes on, on both
brokers. Installed through Celery's ``worker_consumer`` setting (workers/celeryconfig.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from workers import dead_letters

log = logging.getLogger("steplog.consumer")


def _raw(message: Any) -> Any:
    body = getattr(message, "body", None)
    return body if body is not None else getattr(message, "_raw", None)


class Consumer(CeleryConsumer):
    def _dead_letter(self, message: Any, reason: str) -> None:
        runtime = getattr(self.app, "steplog", None)
        client = runtime.dead_letter_client() if runtime is not None else None
        queue = (getattr(message, "delivery_info", None) or {}).get("routing_key") or "?"
        dead_letters.record(client, queue, _raw(message), reason)

    def _drop(self, message: Any) -> None:
        if not message.acknowledged:
            message.ack_log_error(log, self.connection_errors)

    def on_decode_error(self, message, exc):
        self._dead_letter(message, f"body does not decode (content type {message.content_type!r}): {exc}")
        self._drop(message)

    def on_unknown_message(self, body, message):
        self._dead_letter(message, "no task name in its headers or body")
        self._drop(message)

    def on_unknown_task(self, body, message, exc):
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        self._dead_letter(message, f"unknown task {name!r}")
        self._drop(message)

    def on_invalid_task(self, body, message, exc):
        self._dead_letter(message, f"invalid task message: {exc}")
        self._drop(message)

    def create_task_handler(self, *args: Any, **kwargs: Any):
        handler = super().create_task_handler(*args, **kwargs)
        errors = tuple(self.connection_errors) + tuple(self.channel_errors)

        def on_task_received(message):
            try:
                return handler(message)
            except errors:
                raise  # the consumer reconnects
            except Exception as exc:  # a shape of message Celery's own handler does not expect
                self._dead_letter(message, f"{type(exc).__name__}: {exc}")
                self._drop(message)

        return on_task_received

