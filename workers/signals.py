"""Celery signal handlers: start liveness and the sweeper with the worker, stop them with it."""

from __future__ import annotations

from celery import signals

from workers.runtime import Runtime


def connect(runtime: Runtime) -> None:
    @signals.worker_init.connect(weak=False)
    def _named(sender=None, **_):
        # The node name (`--hostname`, e.g. w1@host) is what events show as `worker`.
        runtime.node_name = sender.hostname

    @signals.worker_ready.connect(weak=False)
    def _ready(sender=None, **_):
        runtime.worker()  # alive before the first step arrives
        runtime.start_sweeper()

    @signals.worker_process_init.connect(weak=False)
    def _child(**_):
        runtime.worker()  # a prefork child heart-beats for itself

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_):
        runtime.stop()
