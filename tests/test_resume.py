"""Resume in seconds: leases, fencing, the sweeper, lost broker messages, cancel, shutdown, time limits.

Kill and cancel tests run on both brokers. Without RabbitMQ locally they skip, except under CI
(`CI` set), where RabbitMQ is up and a missing one must fail the suite.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import uuid

import pytest
import redis

from tests.support.harness import assert_contiguous, cli, wait_for
from tests.support.servers import AMQP_URL


def _rabbitmq_up() -> bool:
    host, port = "localhost", 5672
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(request, fast_env):
    """The test's environment on each broker, with an hour-long visibility timeout to prove that
    Postgres leases, not the broker's redelivery, resume the run."""
    env = {**fast_env, "STEPLOG_VISIBILITY_TIMEOUT": "3600"}
    if request.param == "rabbitmq":
        if not _rabbitmq_up():
            if os.environ.get("CI"):
                pytest.fail("RabbitMQ is not answering on localhost:5672 (required under CI)")
            pytest.skip("no RabbitMQ on localhost:5672")
        env.update(STEPLOG_BROKER_URL=AMQP_URL, STEPLOG_QUEUE=f"steplog-test-{uuid.uuid4().hex[:8]}")
    yield env
    if request.param == "rabbitmq":
        from kombu import Connection

        with Connection(AMQP_URL) as conn:
            conn.default_channel.queue_delete(env["STEPLOG_QUEUE"])


@pytest.fixture
def broker_fleet(broker_env, tmp_path):
    from tests.support.harness import Fleet

    rabbitmq = broker_env["STEPLOG_BROKER_URL"].startswith("amqp")
    f = Fleet(broker_env, tmp_path, host=f"test-{uuid.uuid4().hex[:8]}" if rabbitmq else "test")
    yield f
    f.close()


def test_sigkilled_step_resumes_on_a_running_worker(broker_fleet):
    fleet = broker_fleet
    fleet.start()
    fleet.start()
    run_id = fleet.submit("countdown", {"steps": 2, "sleep": 5})
    flight = wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    victim = fleet.by_node(flight["worker"])
    victim.kill()
    survivor = next(w for w in fleet.workers if w is not victim)

    def resumed():
        return [a for a in fleet.attempts(run_id) if a["seq"] == flight["seq"] and a["attempt"] == 2]

    # Far inside the hour-long visibility timeout: the lease and the sweeper resumed it.
    again = wait_for(resumed, timeout=30, what="the killed step to start again")[0]
    assert again["worker"] == survivor.node
    run = fleet.wait_finished(run_id)
    assert run["result"] == {"steps_run": 2}
    events = fleet.events(run_id)
    assert_contiguous(events)
    assert events[flight["seq"] - 1]["attempt"] == 2


def test_cancel_running_and_finished_runs(broker_fleet):
    fleet = broker_fleet
    env = fleet.env
    fleet.start()
    run_id = fleet.submit("countdown", {"steps": 50, "sleep": 0.3})
    wait_for(lambda: fleet.in_flight(run_id, min_seq=3), what="step 3 in flight")

    res = cli(env, "cancel", run_id)
    assert res.returncode == 0, res.stderr
    assert "cancel" in res.stdout
    run = fleet.wait_finished(run_id, timeout=30)
    assert run["status"] == "cancelled"
    events = fleet.events(run_id)
    assert_contiguous(events)
    assert events[-1]["type"] == "cancelled"
    assert "@" in events[-1]["payload"]["by"]  # who cancelled
    assert len(events) < 20
    assert fleet.in_flight(run_id) is None

    again = cli(env, "cancel", run_id)
    assert again.returncode == 0 and "already cancelled" in again.stdout

    done = fleet.submit("countdown", {"steps": 1})
    fleet.wait_finished(done)
    finished = cli(env, "cancel", done)
    assert finished.returncode == 0 and "already succeeded; nothing to cancel" in finished.stdout


def test_cancel_of_a_queued_run_ends_it_at_once(fleet):
    run_id = fleet.submit("countdown", {"steps": 3})  # no worker is running
    res = cli(fleet.env, "cancel", run_id)
    assert res.returncode == 0 and f"run {run_id} cancelled" in res.stdout
    assert fleet.run(run_id)["status"] == "cancelled"
    fleet.start()  # the queued step message arrives and finds nothing to do
    # Wait for the step task's end ("received" is logged before the step has even claimed).
    ended = re.compile(rf"\[{run_id}:\d+\] succeeded")
    wait_for(lambda: ended.search(fleet.workers[0].log()), timeout=30, what="the step to end")
    assert [e["type"] for e in fleet.events(run_id)] == ["submitted", "cancelled"]


def test_zombie_worker_cannot_append_after_takeover(fleet):
    zombie = fleet.start()
    run_id = fleet.submit("countdown", {"steps": 2, "sleep": 3})
    flight = wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    assert flight["worker"] == zombie.node
    zombie.signal(signal.SIGSTOP)  # paused past its lease: its heartbeat stops too
    try:
        fleet.start()

        def taken_over():
            return any(e["seq"] == flight["seq"] and e["worker"] == "w2@test" for e in fleet.events(run_id))

        wait_for(taken_over, timeout=60, what="the other worker to finish the step")
    finally:
        zombie.signal(signal.SIGCONT)
    wait_for(lambda: "lost its lease" in zombie.log(), timeout=30, what="the zombie to find itself fenced")
    run = fleet.wait_finished(run_id)
    assert run["status"] == "succeeded" and run["result"] == {"steps_run": 2}
    events = fleet.events(run_id)
    assert_contiguous(events)
    first = [a for a in fleet.attempts(run_id) if a["seq"] == flight["seq"]]
    assert [(a["attempt"], a["outcome"]) for a in first] == [(1, "lost"), (2, "committed")]
    assert all(e["worker"] != zombie.node for e in events if e["seq"] == flight["seq"])


def test_flushdb_of_the_broker_loses_no_run(fleet):
    fleet.start()
    fleet.start()
    run_ids = [fleet.submit("countdown", {"steps": 12, "sleep": 0.1}) for _ in range(5)]
    wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) > 15, what="runs to progress")
    redis.Redis.from_url(fleet.env["STEPLOG_BROKER_URL"]).flushdb()  # this test's database only
    for run_id in run_ids:
        run = fleet.wait_finished(run_id, timeout=90)
        assert run["status"] == "succeeded" and run["result"] == {"steps_run": 12}
        assert_contiguous(fleet.events(run_id))
        assert len(fleet.events(run_id)) == 13


def test_step_that_kills_its_process_every_time_fails_after_the_attempt_limit(fleet):
    # prefork: the pool child dies, the worker lives on; a poisoned step must not loop forever.
    fleet.start("--concurrency=2", env={**fleet.env, "STEPLOG_MAX_ATTEMPTS": "3"})
    run_id = fleet.submit("kills_its_process", {})
    run = fleet.wait_finished(run_id, timeout=90)
    assert run["status"] == "failed"
    assert run["error"]["type"] == "AttemptsExhausted"
    attempts = fleet.attempts(run_id)
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [a["outcome"] for a in attempts[:3]] == ["lost"] * 3
    assert fleet.events(run_id)[-1]["type"] == "failed"


def test_sigterm_finishes_the_running_step_then_exits(fleet):
    leaving = fleet.start()
    run_id = fleet.submit("countdown", {"steps": 2, "sleep": 2})
    flight = wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    leaving.signal(signal.SIGTERM)
    assert leaving.proc.wait(timeout=30) == 0
    step = next(e for e in fleet.events(run_id) if e["seq"] == flight["seq"])
    assert step["worker"] == leaving.node and step["attempt"] == 1  # finished, not abandoned
    fleet.start()
    assert fleet.wait_finished(run_id)["result"] == {"steps_run": 2}
    assert_contiguous(fleet.events(run_id))


def test_step_overrunning_its_time_limit_is_a_failed_attempt(fleet):
    fleet.start()
    run_id = fleet.submit("slow_once", {"sleep": 10})
    run = fleet.wait_finished(run_id, timeout=30)
    assert run["status"] == "succeeded" and run["result"] == {"attempt": 2}
    first = fleet.attempts(run_id)[0]
    assert first["outcome"] == "timed_out"
    assert first["error"]["type"] == "StepTimeout"


def test_show_json_reports_the_step_in_flight(fleet):
    fleet.start()
    run_id = fleet.submit("countdown", {"steps": 2, "sleep": 3})
    wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    import json

    doc = json.loads(cli(fleet.env, "show", run_id, "--json").stdout)
    flight = doc["in_flight"]
    assert set(flight) == {"seq", "worker", "pid", "attempt", "started_at", "lease_expires_at"}
    assert flight["worker"] == "w1@test" and flight["attempt"] == 1 and flight["seq"] == 2
    assert flight["pid"] == fleet.workers[0].pid
