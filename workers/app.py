"""The Celery app: one explicit object, configured from settings, carrying the process's runtime.

The step task itself is ``tasks.step.step`` (a ``shared_task``): importing it here registers it with
every app built below. `celery -A workers.app ...` and Flower use the module-level ``app``; tests and
benchmarks build their own with :func:`create_app`.
"""

from __future__ import annotations

from celery import Celery

import tasks.step  # noqa: F401  (registers the step task with each app built here)
from workers import signals
from workers.celeryconfig import celery_config
from workers.process import ProcessRuntime
from workers.settings import Settings, load_settings


def create_app(settings: Settings) -> Celery:
    app = Celery("steplog", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.steplog = runtime = ProcessRuntime(settings, app)
    signals.connect(runtime)
    return app


def __getattr__(name: str):
    # `app` is built on first use, so importing this module never needs a database.
    if name == "app":
        global app
        app = create_app(load_settings().resolved())
        return app
    raise AttributeError(name)
