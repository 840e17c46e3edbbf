"""The Celery app: one explicit object, configured from settings, with the one step task.

`celery -A workers.app ...` and Flower use the module-level ``app``; tests build their own.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.exc import OperationalError

from workers import signals
from workers.celeryconfig import celery_config
from workers.runtime import STEP_TASK, Runtime
from workers.settings import Settings, load_settings

log = logging.getLogger("steplog.app")


def create_app(settings: Settings) -> Celery:
    app = Celery("steplog", set_as_current=False)
    app.conf.update(celery_config(settings))
    runtime = Runtime(settings, app)
    app.steplog = runtime

    @app.task(name=STEP_TASK, bind=True, max_retries=10)
    def step(self, run_id: str, seq: int) -> str:
        try:
            outcome = runtime.runner().run(run_id, seq)
        except OperationalError as exc:
            # Postgres unreachable before the claim (restart, failover): try again shortly. The
            # outbox row also still stands, so the sweeper resends the step if these retries run out.
            raise self.retry(exc=exc, countdown=1.0) from exc
        try:  # Flower shows it as state PROGRESS; a lost event must not fail a committed step
            name = self.request.shadow or self.name  # may reach Flower before task-received does
            runtime.send_event("task-progress", uuid=self.request.id, name=name, run_id=run_id, seq=seq, kind=outcome)
        except Exception as exc:
            log.warning("task-progress event of step %s of run %s not sent: %s", seq, run_id, exc)
        return outcome

    signals.connect(runtime)
    return app


def __getattr__(name: str):
    # `app` is built on first use, so importing this module never needs a database.
    if name == "app":
        global app
        app = create_app(load_settings().resolved())
        return app
    raise AttributeError(name)
