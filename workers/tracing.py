"""OpenTelemetry traces (the SDK and opentelemetry-instrumentation-celery), off unless the standard
``OTEL_*`` variables name an exporter or an OTLP endpoint.

One span per step, whatever worker runs it. Its parent is the trace context given at submit
(``steplog submit --traceparent``, the API's ``traceparent`` header), stored with the run in its
`submitted` event, so every step of the run, on any worker, after retries and takeovers, is in the
caller's trace. A run submitted without one still gets one trace: its id is derived from the run id.
A step that follows a wait does not hang under a span as long as the wait: it links to the span of
the step that parked the run (whose context its `waiting` event keeps).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from checkpoint import runs
from checkpoint.errors import BadInput
from checkpoint.steps import Claim
from tasks.observe import Observation, Observer
from workers.metrics import model_tokens

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
FAILED = ("failed", "retrying", "commit_failed", "error")


def check_traceparent(value: str | None) -> str | None:
    """A W3C ``traceparent`` (version 00), or BadInput naming what it must look like."""
    if value is None:
        return None
    if not _TRACEPARENT.match(value.strip()):
        raise BadInput("traceparent must be W3C trace context: 00-<32 hex trace id>-<16 hex parent id>-<2 hex "
                       f"flags>, not all zeros, lower case; got {value[:100]!r}")
    return value.strip()


def configured(env: os._Environ | dict[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(exporters or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporters() -> list[Any]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (default ``otlp``: OTLP over HTTP, the one shipped)."""
    from importlib.metadata import entry_points

    made = []
    for name in [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]:
        if name == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise BadInput(f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed")
        made.append(next(iter(found)).load()())
    return made


def setup(engine: Callable[[], Engine], service_name: str = "steplog-worker") -> StepTracing | None:
    """Configure the SDK (tracer provider, batch export, Celery instrumentation) for this process and
    the pool processes it forks, if the ``OTEL_*`` variables ask for traces; else None."""
    if not configured():
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": service_name}))
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))  # re-started in forked children
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    return StepTracing(provider.get_tracer("steplog"), engine)


class StepTracing(Observer):
    """The runner's observer that makes each step's span."""

    def __init__(self, tracer: Any, engine: Callable[[], Engine], cache_size: int = 10_000) -> None:
        self.tracer, self.engine = tracer, engine
        self._parents: OrderedDict[str, str | None] = OrderedDict()  # run id -> its stored traceparent
        self._lock = threading.Lock()
        self.cache_size = cache_size

    def begin(self, run_id: str, seq: int) -> Observation:
        return _StepSpan(self)

    def parent(self, run_id: str) -> Any:
        """The context a run's steps hang under: its stored traceparent, or one derived from its id."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        with self._lock:
            known = run_id in self._parents
            stored = self._parents.get(run_id)
        if not known:
            stored = runs.traceparent(self.engine(), run_id)  # never changes: one read per run and process
            with self._lock:
                self._parents[run_id] = stored
                while len(self._parents) > self.cache_size:
                    self._parents.popitem(last=False)
        if stored:
            return _extract(stored)
        digest = hashlib.sha256(run_id.encode()).digest()
        derived = SpanContext(int.from_bytes(digest[:16], "big"), int.from_bytes(digest[16:24], "big"),
                              is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(derived))

    def publishing(self, run_id: str) -> Any:
        """Before a publish made outside any step (the sweeper's re-dispatch after a takeover, a signal's
        wake-up), so that Celery's publish span joins the run's trace too: a token for :meth:`published`,
        or None (inside a step's span already)."""
        from opentelemetry import context, trace

        if trace.get_current_span().get_span_context().is_valid:
            return None
        try:
            return context.attach(self.parent(run_id))
        except Exception:  # a trace is never a reason not to publish
            return None

    def published(self, token: Any) -> None:
        from opentelemetry import context

        if token is not None:
            context.detach(token)

    def before_wait(self, claim: Claim) -> list[Any]:
        """A link to the span of the step that parked the run (its `waiting` event, two events back:
        the wake event sits between)."""
        from opentelemetry import trace
        from opentelemetry.trace import Link

        if claim.wake is None:
            return []
        stored = runs.event_traceparent(self.engine(), claim.run_id, claim.seq - 2)
        if not stored:
            return []
        return [Link(trace.get_current_span(_extract(stored)).get_span_context(), {"steplog.link": "before_wait"})]


def _extract(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def traceparent_of(span: Any) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class _StepSpan(Observation):
    def __init__(self, tracing: StepTracing) -> None:
        self.tracing, self.started = tracing, time.time_ns()
        self.span: Any = None
        self.token: Any = None

    def claimed(self, claim: Claim, kind: str) -> None:
        from opentelemetry import context, trace

        try:
            parent, links = self.tracing.parent(claim.run_id), self.tracing.before_wait(claim)
        except Exception:  # a trace is never a reason to fail a step
            parent, links = None, []
        self.span = self.tracing.tracer.start_span(
            f"{claim.workflow} {kind}", context=parent, links=links, start_time=self.started,
            attributes={"steplog.run_id": claim.run_id, "steplog.seq": claim.seq, "steplog.attempt": claim.attempt,
                        "steplog.workflow": claim.workflow, "steplog.step.kind": kind},
        )
        # Current for the rest of the step: the next step's publish (Celery's span) hangs under it.
        self.token = context.attach(trace.set_span_in_context(self.span))

    def parked(self) -> dict[str, Any]:
        return {"traceparent": traceparent_of(self.span)} if self.span is not None else {}

    def committed(self, payload: dict[str, Any]) -> None:
        model, total = model_tokens(payload)
        if self.span is None or not model:
            return
        usage = payload["usage"]
        self.span.set_attribute("gen_ai.request.model", model)
        self.span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
        self.span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))
        self.span.set_attribute("steplog.llm.total_tokens", total)

    def ended(self, outcome: str) -> None:
        if self.span is None:
            return  # nothing was claimed: no step ran
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("steplog.outcome", outcome)
        if outcome in FAILED:
            self.span.set_status(Status(StatusCode.ERROR, outcome))
        self.span.end()
        context.detach(self.token)
