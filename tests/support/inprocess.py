"""The step task in the pytest process: Celery's embedded test worker as `steplog worker` runs it, and
what each step message came to."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from celery import signals
from celery.contrib.testing.worker import TestWorkController

from tasks.step import step_task_id
from tests.support.harness import wait_for

SESSION_WORKER = "step@test"  # the node name of the in-process session worker (tests/conftest.py)


class StepWorker(TestWorkController):
    """Celery's embedded test worker, which also sends ``worker_ready`` once its consumer is ready, as
    the `celery worker` program does (``celery.apps.worker.Worker``): that is when steplog's runtime
    registers the worker's liveness and starts its sweeper (retries are dispatched by the sweeper)."""

    def on_consumer_ready(self, consumer: Any) -> None:
        signals.worker_ready.send(sender=consumer)
        super().on_consumer_ready(consumer)


class StepOutcomes:
    """What each step message delivered to ``app``'s worker came to: the step task's return value
    (running, succeeded, duplicate, unknown_run, ...), by task id, from the task_postrun signal."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)

    def _record(self, sender: Any = None, task_id: str | None = None, state: str | None = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            self.by_task[task_id].append((state, retval))

    def __enter__(self) -> StepOutcomes:
        signals.task_postrun.connect(self._record, weak=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        signals.task_postrun.disconnect(self._record)

    def of(self, run_id: str, seq: int) -> list[Any]:
        """The return values of step ``seq`` of ``run_id``, one per message delivered, in order."""
        return [retval for _, retval in self.by_task.get(step_task_id(run_id, seq), [])]

    def wait(self, run_id: str, seq: int, count: int = 1, timeout: float = 30) -> list[Any]:
        """The return values of step ``seq`` once ``count`` messages of it have been handled."""
        return wait_for(lambda: len(self.of(run_id, seq)) >= count and self.of(run_id, seq), timeout=timeout,
                        interval=0.02, what=f"{count} deliveries of step {seq} of run {run_id}")
