"""The step task: every step of every run is one call of this Celery task.

It is a ``shared_task``, so this module needs no Celery app: each app that imports it (``workers.app``
builds the one app a process uses) gets the task when it is finalized. The task is thin on purpose:
the claim, the step and the commit are :class:`tasks.runner.StepRunner`'s; the process's handles
(engine, identity, publisher, Flower events) hang on the app as ``app.steplog``
(:class:`tasks.step.StepHost`, implemented by ``workers.process.ProcessRuntime``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from celery import shared_task
from sqlalchemy.exc import OperationalError

from tasks.runner import StepRunner

log = logging.getLogger("steplog.step")

#: The task's registered name: every step message names it.
STEP_TASK = "steplog.step"


def step_task_id(run_id: str, seq: int) -> str:
    """A step message's task id (what Flower and the logs show): ``{run_id}:{seq}``."""
    return f"{run_id}:{seq}"


class StepHost(Protocol):
    """What the step task needs of the process it runs in (``app.steplog``)."""

    def runner(self) -> StepRunner: ...

    def send_event(self, type_: str, **fields: Any) -> None: ...


@shared_task(name=STEP_TASK, bind=True, max_retries=10)
def step(self, run_id: str, seq: int) -> str:
    """Claim step ``seq`` of run ``run_id``, run it once, commit it and dispatch the next step."""
    host: StepHost = self.app.steplog
    try:
        outcome = host.runner().run(run_id, seq)
    except OperationalError as exc:
        # Postgres unreachable before the claim (restart, failover): try again shortly. The outbox
        # row also still stands, so the sweeper resends the step if these retries run out.
        raise self.retry(exc=exc, countdown=1.0) from exc
    try:  # Flower shows it as state PROGRESS; a lost event must not fail a committed step
        name = self.request.shadow or self.name  # may reach Flower before task-received does
        host.send_event("task-progress", uuid=self.request.id, name=name, run_id=run_id, seq=seq, kind=outcome)
    except Exception as exc:
        log.warning("task-progress event of step %s of run %s not sent: %s", seq, run_id, exc)
    return outcome
