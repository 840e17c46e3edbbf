"""The API's Prometheus metrics (prometheus-client): requests and latency by route, open streams, and
the fleet's runs by status and runs waiting for a person, read from Postgres at each scrape; and the
families `steplog worker --metrics-port` serves (:mod:`workers.metrics`): ``runs{status}`` and
``runs_waiting`` from Postgres, the step families empty here (steps run in the workers).

Labels are route templates (``/runs/{run_id}``), never ids: the series stay bounded however many runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkpoint import runs
from checkpoint.statuses import RUN_STATUSES
from tasks.approvals import SIGNAL as APPROVAL
from workers.metrics import Families, RunsCollector


class _RunsCollector:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = runs.count_by_status(self.engine)
        by_status = GaugeMetricFamily("steplog_runs", "Runs by status.", labels=["status"])
        for status in RUN_STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        waiting = runs.waiting_for(self.engine, APPROVAL, limit=100_000)
        yield GaugeMetricFamily("steplog_runs_waiting_for_approval", "Runs waiting for a person.", value=len(waiting))


class Metrics:
    def __init__(self, engine: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("steplog_api_requests", "API requests.", ["route", "method", "status"],
                                registry=self.registry)
        self.seconds = Histogram("steplog_api_request_seconds", "API request latency (to the response's start).",
                                 ["route", "method"], registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.streams = Gauge("steplog_api_open_streams", "Server-sent event streams open.", registry=self.registry)
        self.registry.register(_RunsCollector(engine))
        Families(self.registry)
        self.registry.register(RunsCollector(engine))

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class Measured:
    """ASGI middleware: each request counted and timed under its route's template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route(scope)
                self.metrics.seconds.labels(route, scope["method"]).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.requests.labels(_route(scope), scope["method"], str(status)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
