"""The fleet's Prometheus metrics (prometheus-client): what `steplog worker --metrics-port P` serves,
and the same families on the API's ``/metrics``.

Step counters are written by whichever process runs the step: with the prefork pool that is a child,
so a worker serving metrics runs prometheus-client's multiprocess mode (every process writes its
values to files under ``PROMETHEUS_MULTIPROC_DIR``; the endpoint adds them up). Run counts come from
Postgres at each scrape. No label carries a run id: the series stay bounded however many runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from checkpoint import runs
from checkpoint.statuses import RUN_STATUSES
from checkpoint.steps import Claim
from tasks.observe import Observation, Observer

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_dir() -> str:
    """``PROMETHEUS_MULTIPROC_DIR``, or a new empty directory set as it. Call before prometheus_client is
    imported: it chooses where values live at import."""
    path = os.environ.get(MULTIPROC_DIR) or tempfile.mkdtemp(prefix="steplog-metrics-")
    os.makedirs(path, exist_ok=True)
    os.environ[MULTIPROC_DIR] = path
    return path


class Families:
    """The step families. ``registry`` None: values only in the multiprocess files."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter, Histogram

        self.steps = Counter("steps", "Step messages handled, by workflow and outcome (running, succeeded, "
                             "waiting, retrying, failed, fenced, duplicate, busy, ...).", ["workflow", "outcome"],
                             registry=registry)
        self.step_seconds = Histogram("step_seconds", "A claimed step, from its claim to its commit.",
                                      buckets=STEP_BUCKETS, registry=registry)
        self.queue_wait = Histogram("step_queue_wait_seconds", "From a step's dispatch to its claim.",
                                    buckets=WAIT_BUCKETS, registry=registry)
        self.takeovers = Counter("lease_takeovers", "Steps taken over from a dead or overrunning worker.",
                                 registry=registry)
        self.redispatches = Counter("redispatches", "Steps the sweeper dispatched again: lost, or due after a "
                                    "retry's backoff.", registry=registry)
        self.tokens = Counter("llm_tokens", "Model tokens (prompt and completion) of committed steps.", ["model"],
                              registry=registry)


class RunsCollector:
    """``runs{status}`` and ``runs_waiting{signal}``, read from Postgres at each scrape."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        counts = runs.count_by_status(self.engine)
        by_status = GaugeMetricFamily("runs", "Runs by status.", labels=["status"])
        for status in RUN_STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        waiting = GaugeMetricFamily("runs_waiting", "Runs parked by a wait, by the signal they wait for "
                                    "(empty: a sleep).", labels=["signal"])
        for signal, n in sorted(runs.count_waiting(self.engine).items()):
            waiting.add_metric([signal], n)
        yield waiting


class StepMetrics(Observer):
    """Counts and times each step message (the runner's observer) and the sweeper's findings."""

    def __init__(self, families: Families | None = None) -> None:
        self.families = families or Families()

    def begin(self, run_id: str, seq: int) -> Observation:
        return _Step(self.families)

    def swept(self, takeovers: int, redispatches: int) -> None:
        if takeovers:
            self.families.takeovers.inc(takeovers)
        if redispatches:
            self.families.redispatches.inc(redispatches)


class _Step(Observation):
    def __init__(self, families: Families) -> None:
        self.f, self.workflow, self.started = families, "", None

    def claimed(self, claim: Claim, kind: str) -> None:
        self.workflow, self.started = claim.workflow, time.perf_counter()
        if claim.queue_wait is not None:
            self.f.queue_wait.observe(max(claim.queue_wait, 0.0))

    def committed(self, payload: dict[str, Any]) -> None:
        model, total = model_tokens(payload)
        if model and total:
            self.f.tokens.labels(model).inc(total)

    def ended(self, outcome: str) -> None:
        self.f.steps.labels(self.workflow, outcome).inc()
        if self.started is not None:
            self.f.step_seconds.observe(time.perf_counter() - self.started)


def model_tokens(payload: dict[str, Any]) -> tuple[str | None, int]:
    """The model a step asked and the tokens it used (prompt + completion), from a reasoning step's payload."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    record = payload.get("record") if isinstance(payload, dict) else None
    if not isinstance(usage, dict) or not isinstance(record, dict):
        return None, 0
    total = usage.get("total_tokens") or (usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
    return record.get("model"), int(total or 0)


def serve(port: int, engine: Any, path: str) -> None:
    """Serve ``/metrics`` on ``port`` from a thread of this (the worker's main) process: the values every
    process of this worker wrote under ``path``, and the run counts."""
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    if values.ValueClass is values.MutexValue:  # imported before PROMETHEUS_MULTIPROC_DIR was set
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    registry.register(RunsCollector(engine))
    start_http_server(port, registry=registry)
