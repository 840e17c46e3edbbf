"""The durable step engine with real Postgres, real Redis and real `steplog worker` processes (one
worker's view of the step task, in-process: test_step_task.py)."""

from __future__ import annotations

import signal
from collections import Counter

from tests.support.harness import assert_contiguous, wait_for


def committed_attempts_per_seq(fleet, run_id):
    return Counter(a["seq"] for a in fleet.attempts(run_id) if a["outcome"] == "committed")


def test_same_step_delivered_twice_at_once_writes_one_event(fleet):
    fleet.start()
    fleet.start()
    run_id = fleet.submit("countdown", {"steps": 5, "sleep": 0.2}, publish=False)
    fleet.publish(run_id, 2)
    fleet.publish(run_id, 2)  # the same message twice: both workers race for step 2
    run = fleet.wait_finished(run_id)
    assert run["result"] == {"steps_run": 5}
    events = fleet.events(run_id)
    assert_contiguous(events)
    # One event and one next step: every step ran (committed) exactly once, with no second attempt.
    attempts = fleet.attempts(run_id)
    assert committed_attempts_per_seq(fleet, run_id) == {seq: 1 for seq in range(2, 7)}
    assert len(attempts) == 5
    # The extra copy was dropped once (as busy or duplicate); it did not re-send later steps,
    # which would start a chain of duplicates following the run to its end.
    logs = "".join(w.log() for w in fleet.workers)
    assert logs.count("'busy'") + logs.count("'duplicate'") == 1


def test_a_run_migrates_across_workers(fleet):
    fleet.start()
    fleet.start()
    run_id = fleet.submit("countdown", {"steps": 20, "sleep": 0.05})
    fleet.wait_finished(run_id)
    events = fleet.events(run_id)
    assert_contiguous(events)
    writers = {e["worker"] for e in events if e["type"] != "submitted"}
    assert writers == {"w1@test", "w2@test"}, f"expected both workers in the event log, got {writers}"


def test_sigkill_mid_step_resumes_on_another_worker_as_attempt_2(fleet):
    first = fleet.start()
    run_id = fleet.submit("countdown", {"steps": 3, "sleep": 3})
    flight = wait_for(lambda: fleet.in_flight(run_id), what="a step in flight")
    assert flight["worker"] == first.node
    first.kill()
    fleet.start()
    run = fleet.wait_finished(run_id)
    assert run["status"] == "succeeded" and run["result"] == {"steps_run": 3}
    events = fleet.events(run_id)
    assert_contiguous(events)
    killed = next(e for e in events if e["seq"] == flight["seq"])
    assert killed["attempt"] == 2
    assert killed["worker"] == "w2@test"
    lost = [a for a in fleet.attempts(run_id) if a["seq"] == flight["seq"] and a["attempt"] == 1]
    assert lost and lost[0]["outcome"] == "lost" and lost[0]["worker"] == first.node


def test_worker_dying_between_commit_and_publish_leaves_a_run_that_completes(fleet):
    faulty = fleet.start(env={**fleet.env, "STEPLOG_FAULT_AFTER_COMMIT": "1"})
    run_id = fleet.submit("countdown", {"steps": 4, "sleep": 0})
    faulty.proc.wait(timeout=30)  # it commits step 2, then SIGKILLs itself before publishing step 3
    assert faulty.proc.returncode == -signal.SIGKILL
    assert [e["seq"] for e in fleet.events(run_id)] == [1, 2]
    fleet.start()  # the sweeper finds the unsent dispatch of a dead owner and publishes it
    run = fleet.wait_finished(run_id)
    assert run["result"] == {"steps_run": 4}
    assert_contiguous(fleet.events(run_id))
    assert committed_attempts_per_seq(fleet, run_id) == {seq: 1 for seq in range(2, 6)}


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_worker_frozen_holding_a_step_it_never_claimed_has_the_step_re_sent_within_seconds(fleet):
    # The backstop is ten minutes away and kombu's redelivery an hour; the step was published by the
    # test (a submitter, whose promise no heartbeat vouches for): only the death of the worker that
    # holds the message can bring the step back in time.
    env = {**fleet.env, "STEPLOG_REDISPATCH_SECONDS": "600", "STEPLOG_VISIBILITY_TIMEOUT": "3600"}
    frozen = fleet.start(env={**env, "STEPLOG_FAULT_BEFORE_CLAIM": "1"})
    run_id = fleet.submit("countdown", {"steps": 3})
    wait_for(lambda: "test fault: stopping before claiming step 2" in frozen.log() and _stopped(frozen.pid),
             what="the worker to stop holding step 2")
    assert fleet.attempts(run_id) == [] and len(fleet.events(run_id)) == 1  # received, never claimed
    rescuer = fleet.start(env=env)
    run = fleet.wait_finished(run_id, timeout=90)
    assert run["result"] == {"steps_run": 3}
    events = fleet.events(run_id)
    assert_contiguous(events)
    assert {e["worker"] for e in events[1:]} == {rescuer.node}
    assert committed_attempts_per_seq(fleet, run_id) == {2: 1, 3: 1, 4: 1}
    assert len(fleet.attempts(run_id)) == 3
    # Woken, the frozen worker goes on with the message it held: its claim finds the run over.
    frozen.signal(signal.SIGCONT)
    wait_for(lambda: "succeeded in" in frozen.log() and "'finished'" in frozen.log(),
             what="the late message to be dropped")
    assert len(fleet.events(run_id)) == len(events) and len(fleet.attempts(run_id)) == 3


def test_log_lines_of_a_step_carry_its_run_seq_step_worker_and_attempt(fleet):
    import json

    w = fleet.start(env={**fleet.env, "STEPLOG_LOG_FORMAT": "json"})
    run_id = fleet.submit("always_fails", {})
    fleet.wait_finished(run_id)
    lines = [json.loads(line) for line in w.log().splitlines() if line.startswith("{")]
    retry_lines = [d for d in lines if d.get("run_id") == run_id and "retrying" in d["message"]]
    assert retry_lines, lines[-5:]
    first = retry_lines[0]
    assert first["seq"] == 2 and first["attempt"] == 1 and first["worker"] == w.node and first["step"] == "always_fails"
    # Celery's own line for the task is bound too.
    assert any(d.get("run_id") == run_id and d["logger"] == "celery.app.trace" for d in lines)
