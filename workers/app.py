"""The Celery app: one explicit object, configured from settings, with the one step task.

`celery -A workers.app ...` and Flower use the module-level ``app``; tests build their own.
"""

from __future__ import annotations

from celery import Celery

from workers import signals
from workers.celeryconfig import celery_config
from workers.runtime import STEP_TASK, Runtime
from workers.settings import Settings, load_settings


def create_app(settings: Settings) -> Celery:
    app = Celery("steplog", set_as_current=False)
    app.conf.update(celery_config(settings))
    runtime = Runtime(settings, app)
    app.steplog = runtime

    @app.task(name=STEP_TASK, bind=True)
    def step(self, run_id: str, seq: int) -> str:
        return runtime.runner().run(run_id, seq)

    signals.connect(runtime)
    return app


def __getattr__(name: str):
    # `app` is built on first use, so importing this module never needs a database.
    if name == "app":
        global app
        app = create_app(load_settings().resolved())
        return app
    raise AttributeError(name)
