"""Celery signal handlers: start liveness and the sweeper with the worker, stop them with it."""

from __future__ import annotations

from celery import signals

from tasks import logcontext
from workers.process import ProcessRuntime


def connect(runtime: ProcessRuntime) -> None:
    @signals.worker_init.connect(weak=False)
    def _named(sender=None, **_):
        # The node name (`--hostname`, e.g. w1@host) is what events show as `worker`.
        runtime.node_name = sender.hostname

    @signals.worker_ready.connect(weak=False)
    def _ready(sender=None, **_):
        if getattr(sender, "app", None) is runtime.app:
            runtime.attach_consumer(sender)
        runtime.worker()  # alive before the first step arrives
        runtime.start_sweeper()

    @signals.worker_process_init.connect(weak=False)
    def _child(**_):
        runtime.worker()  # a prefork child heart-beats for itself

    bindings = {}

    @signals.task_prerun.connect(weak=False)
    def _bind(task_id=None, args=None, **_):
        # From before the step until after Celery's own "Task ... succeeded" line: every log line
        # of the step carries its run, seq and worker (the runner adds the attempt and step kind).
        if args and len(args) == 2:
            bindings[task_id] = logcontext.push(run_id=args[0], seq=args[1], worker=runtime.node_name)

    @signals.task_postrun.connect(weak=False)
    def _unbind(task_id=None, **_):
        token = bindings.pop(task_id, None)
        if token is not None:
            logcontext.pop(token)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_):
        runtime.stop()
