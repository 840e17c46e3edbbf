"""`steplog worker`: a Celery worker of the fleet, in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.common import ctx


def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Steps run at once.")] = 1,
    hostname: Annotated[str | None, typer.Option("--hostname", "-n", help="Node name, e.g. w1@%h.")] = None,
    queues: Annotated[str | None, typer.Option("--queues", "-Q", help="Comma-separated queues.")] = None,
    pool: Annotated[str | None, typer.Option(help="solo (default for -c 1), prefork or threads.")] = None,
    loglevel: Annotated[str | None, typer.Option(help="Log level; default STEPLOG_LOG_LEVEL.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (/metrics).")] = None,
) -> None:
    """Run a Celery worker in the foreground (SIGTERM: finish the running step, then exit)."""
    from workers.logs import setup_logging

    settings = ctx.settings
    setup_logging(settings, loglevel)
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool or ('solo' if concurrency == 1 else 'prefork')}",
        f"--queues={queues or settings.queue}",
        f"--loglevel={loglevel or settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if metrics_port is not None:
        _serve_metrics(metrics_port)
    from workers import tracing

    runtime = ctx.celery.steplog
    runtime.tracing = tracing.setup(lambda: runtime.engine)  # None unless OTEL_* variables ask for traces
    ctx.celery.worker_main(argv)


def _serve_metrics(port: int) -> None:
    """Multiprocess mode before prometheus_client is imported, the endpoint in this (the main) process,
    and the step observer every pool process inherits."""
    from workers import metrics
    from workers.cli.errors import CommandFailed

    path = metrics.multiprocess_dir()
    runtime = ctx.celery.steplog
    try:
        metrics.serve(port, runtime.engine, path)
    except OSError as exc:
        raise CommandFailed(f"--metrics-port {port}: cannot listen: {exc.strerror or exc}", exit_code=2) from exc
    runtime.metrics = metrics.StepMetrics()
