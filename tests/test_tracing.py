"""OpenTelemetry traces through real workers: the caller's trace context, given at submit, continues
through every step of the run, across workers and the step re-run after a SIGKILL; the step after a
wait links to the step before it. The caller's own span is recorded by the SDK's in-memory exporter;
the workers export theirs over OTLP/HTTP (the standard OTEL_* variables) to a receiver in the test.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.harness import cli, cli_json, count_runs, wait_for
from tests.support.otlp import OtlpReceiver
from workers.tracing import configured, traceparent_of


@pytest.fixture
def otlp():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def caller():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("the-caller"), exporter
    provider.shutdown()


def _spans_of_every_event(otlp: OtlpReceiver, fleet, run_id: str):
    """The run's step spans, once there is one for every step event (seq, attempt) written."""
    want = {(e["seq"], e["attempt"]) for e in fleet.events(run_id) if e["seq"] > 1 and e["type"] != "signal"}

    def complete():
        spans = otlp.steps(run_id)
        return spans if want <= {(s.attributes["steplog.seq"], s.attributes["steplog.attempt"]) for s in spans} else None

    return wait_for(complete, timeout=30, what=f"the spans of run {run_id}")


@pytest.mark.slow
def test_every_step_span_continues_the_callers_trace_across_a_kill_and_a_wait(fleet, otlp, caller):
    fleet.env.update(otlp.env(), STEPLOG_VISIBILITY_TIMEOUT="3600")
    victim = fleet.start()
    tracer, exporter = caller
    with tracer.start_as_current_span("caller") as span:
        tp = traceparent_of(span)
        run_id = cli_json(fleet.env, "submit", "countdown", "--input", '{"steps": 3, "sleep": 3}',
                          "--traceparent", tp, "--json")["run_id"]
    (recorded,) = exporter.get_finished_spans()
    trace_id, caller_id = f"{recorded.context.trace_id:032x}", f"{recorded.context.span_id:016x}"

    flight = wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    victim.kill()
    fleet.start("--concurrency=2")  # prefork: its children export their own spans
    fleet.start()
    assert fleet.wait_finished(run_id)["status"] == "succeeded"
    spans = _spans_of_every_event(otlp, fleet, run_id)
    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.parent_span_id for s in spans} == {caller_id}
    rerun = [s for s in spans if s.attributes["steplog.seq"] == flight["seq"]]
    assert [s.attributes["steplog.attempt"] for s in rerun] == [2]  # the killed attempt's span never ended
    first = spans[0]
    assert first.name == "countdown countdown" and first.service == "steplog-test-worker"
    assert first.attributes["steplog.workflow"] == "countdown" and first.attributes["steplog.step.kind"] == "countdown"
    assert [s.attributes["steplog.outcome"] for s in spans][-1] == "succeeded"

    waiter = cli_json(fleet.env, "submit", "waiter", "--input", '{"signal": "go"}', "--traceparent", tp,
                      "--json")["run_id"]
    wait_for(lambda: fleet.run(waiter)["status"] == "waiting", what="the run to wait")
    assert cli(fleet.env, "signal", waiter, "go").returncode == 0
    assert fleet.wait_finished(waiter)["status"] == "succeeded"
    parked, after = _spans_of_every_event(otlp, fleet, waiter)
    assert parked.attributes["steplog.outcome"] == "waiting" and after.attributes["steplog.seq"] == 4
    assert {parked.trace_id, after.trace_id} == {trace_id} and after.parent_span_id == caller_id
    assert after.links == [(trace_id, parked.span_id)]  # linked, not a span as long as the wait
    assert after.start_ns > parked.end_ns


def test_a_malformed_traceparent_is_refused_and_nothing_is_written(steplog_env):
    res = cli(steplog_env, "submit", "countdown", "--input", '{"steps": 1}', "--traceparent", "00-abc-def-01")
    assert res.returncode == 2 and "traceparent must be W3C trace context" in res.stderr, res.stderr
    assert count_runs(steplog_env) == 0


def test_traces_are_off_unless_otel_variables_configure_them():
    assert not configured({})
    assert not configured({"OTEL_SERVICE_NAME": "x"})
    assert configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert configured({"OTEL_TRACES_EXPORTER": "console"})
    assert not configured({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not configured({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
