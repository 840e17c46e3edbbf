"""`steplog worker --metrics-port P`: Prometheus metrics of real workers, counted exactly after a scripted
scenario: a takeover after a SIGKILL, runs that finish, a run that waits, a dispatch the sweeper sends
again. The worker runs the prefork pool, so the steps are counted in its children (multiprocess mode).
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import wait_for
from workers.local.procs import free_port


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}, text


@pytest.mark.slow
def test_worker_metrics_count_a_scripted_scenario_exactly(fleet):
    fleet.env["STEPLOG_VISIBILITY_TIMEOUT"] = "3600"  # the killed worker's message stays with it
    victim = fleet.start()
    killed = fleet.submit("countdown", {"steps": 2, "sleep": 5})
    wait_for(lambda: fleet.in_flight(killed), what="the first step in flight")
    victim.kill()

    port = free_port()
    fleet.start("--concurrency=2", f"--metrics-port={port}")  # prefork: the steps run in its children
    assert fleet.wait_finished(killed)["status"] == "succeeded"  # taken over, then its last step
    done = fleet.submit("countdown", {"steps": 3})
    assert fleet.wait_finished(done)["status"] == "succeeded"
    waiting = fleet.submit("waiter", {"signal": "go"})
    wait_for(lambda: fleet.run(waiting)["status"] == "waiting", what="the run to wait")
    unsent = fleet.submit("countdown", {"steps": 1}, publish=False)  # the sweeper sends it after 3 s
    assert fleet.wait_finished(unsent, timeout=60)["status"] == "succeeded"

    samples, text = _scrape(port)

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    steps = {dict(labels)["workflow"] + "/" + dict(labels)["outcome"]: v
             for (name, labels), v in samples.items() if name == "steps_total"}
    assert steps == {"countdown/running": 3, "countdown/succeeded": 3, "waiter/waiting": 1}
    assert value("step_seconds_count") == 7
    assert value("step_queue_wait_seconds_count") == 7  # every claim consumed a dispatch
    assert value("lease_takeovers_total") == 1
    assert value("redispatches_total") == 1
    assert value("runs", status="succeeded") == 3 and value("runs", status="waiting") == 1
    assert value("runs", status="running") == 0
    assert value("runs_waiting", signal="go") == 1
    for run_id in (killed, done, waiting, unsent):
        assert run_id not in text  # no label carries a run id


def test_model_tokens_are_counted_by_model_from_committed_reasoning_steps():
    # The payload a reasoning step commits (tasks/agents/loop.py): its usage and the model's record.
    from prometheus_client import CollectorRegistry

    from checkpoint.steps import Claim
    from workers.metrics import Families, StepMetrics

    registry = CollectorRegistry()
    metrics = StepMetrics(Families(registry))
    for usage in ({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
                  {"prompt_tokens": 7, "completion_tokens": 3}):
        step = metrics.begin("r1", 2)
        step.claimed(Claim("r1", 2, 1, "research", {}, {}), "reason")
        step.committed({"kind": "reason", "usage": usage, "record": {"model": "fake-model"}})
        step.ended("running")
    step = metrics.begin("r1", 3)
    step.claimed(Claim("r1", 3, 1, "research", {}, {}), "search_corpus")
    step.committed({"kind": "tool", "tool": "search_corpus"})  # no model call: no tokens
    step.ended("running")
    assert registry.get_sample_value("llm_tokens_total", {"model": "fake-model"}) == 160
    assert registry.get_sample_value("steps_total", {"workflow": "research", "outcome": "running"}) == 3
