"""Celery signal handlers: start liveness and the sweeper with the worker, stop them with it.

Celery's signals are process-wide, and each app built connects its own handlers (a process may build
several: the tests, a benchmark, a CLI command beside a worker). So every handler acts only for its own
app's worker and tasks: a worker starting must not start the heartbeat and sweeper of another app's
runtime (on another database), nor its shutdown stop them.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from tasks import logcontext
from workers.process import ProcessRuntime


def connect(runtime: ProcessRuntime) -> None:
    def ours(sender: Any) -> bool:
        """The sender (a worker, its consumer or a task) belongs to this runtime's app."""
        return getattr(sender, "app", None) is runtime.app

    # The node name of this app's worker in this process (inherited by its prefork children); None
    # until its worker_init, and in processes that run no worker of this app.
    hosted: str | None = None

    @signals.worker_init.connect(weak=False)
    def _named(sender=None, **_):
        nonlocal hosted
        if ours(sender):
            # The node name (`--hostname`, e.g. w1@host) is what events show as `worker`.
            runtime.node_name = sender.hostname
            hosted = sender.hostname

    @signals.worker_ready.connect(weak=False)
    def _ready(sender=None, **_):
        if ours(sender):
            runtime.attach_consumer(sender)
            runtime.worker()  # alive before the first step arrives
            runtime.start_sweeper()

    @signals.worker_process_init.connect(weak=False)
    def _child(sender=None, **_):
        # No app here: the sender is the node name of the worker whose pool process this is (None
        # from pools that pass none), so it is ours if this app's worker is the one in this process.
        if hosted is not None and sender in (None, hosted):
            runtime.worker()  # a prefork child heart-beats for itself

    bindings = {}

    @signals.task_prerun.connect(weak=False)
    def _bind(sender=None, task_id=None, args=None, **_):
        # From before the step until after Celery's own "Task ... succeeded" line: every log line
        # of the step carries its run, seq and worker (the runner adds the attempt and step kind).
        if ours(sender) and args and len(args) == 2:
            bindings[task_id] = logcontext.push(run_id=args[0], seq=args[1], worker=runtime.node_name)

    @signals.task_postrun.connect(weak=False)
    def _unbind(sender=None, task_id=None, **_):
        token = bindings.pop(task_id, None) if ours(sender) else None
        if token is not None:
            logcontext.pop(token)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(sender=None, **_):
        if ours(sender):
            runtime.stop()
