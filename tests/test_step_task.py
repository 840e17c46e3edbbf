"""The step task in this process: steplog's own Celery app and one solo worker thread for the session
(pytest-celery's classic ``celery_session_app`` / ``celery_session_worker``, set up in conftest), on the
real Redis and Postgres. What one worker subprocess would show no differently is tested here, fast;
kills, several workers and the worker program itself stay with real processes (test_engine, test_resume).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from checkpoint.hotcache import HotCache
from tests.support.harness import Runs, assert_contiguous
from tests.support.inprocess import SESSION_WORKER, StepOutcomes

pytestmark = pytest.mark.usefixtures("celery_session_worker")


@pytest.fixture
def steps(celery_session_app) -> Runs:
    """Runs submitted to the session worker, read back from the session database."""
    return Runs(celery_session_app)


@pytest.fixture
def outcomes(celery_session_app) -> Iterator[StepOutcomes]:
    with StepOutcomes(celery_session_app) as seen:
        yield seen


def test_countdown_run_completes_with_contiguous_events(steps, outcomes, session_settings):
    run_id = steps.submit("countdown", {"steps": 30, "sleep": 0})
    run = steps.wait_finished(run_id)
    assert run["status"] == "succeeded"
    assert run["result"] == {"steps_run": 30}
    events = steps.events(run_id)
    assert_contiguous(events)
    assert len(events) == 31  # `submitted` + 30 steps
    assert [e["type"] for e in events] == ["submitted"] + ["step"] * 29 + ["succeeded"]
    assert [e["state"]["remaining"] for e in events] == list(range(30, -1, -1))
    assert {e["worker"] for e in events[1:]} == {SESSION_WORKER}
    # Each step also rang the run's progress stream in Redis (what `steplog watch` waits on).
    assert outcomes.wait(run_id, 31) == ["succeeded"]  # the last step is done with Redis too
    progress = HotCache.from_url(session_settings.redis_url, 60).read_progress(run_id)
    assert [p["seq"] for _, p in progress] == list(range(2, 32))


def test_a_duplicate_step_message_writes_no_second_event(steps, outcomes):
    run_id = steps.submit("countdown", {"steps": 3, "sleep": 0}, publish=False)
    steps.publish(run_id, 2)
    steps.publish(run_id, 2)  # the same step again, as a redelivery would bring it
    run = steps.wait_finished(run_id)
    assert run["status"] == "succeeded" and run["result"] == {"steps_run": 3}
    # The second copy found the step written and was dropped as a duplicate ...
    assert outcomes.wait(run_id, 2, count=2) == ["running", "duplicate"]
    events = steps.events(run_id)
    assert_contiguous(events)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    # ... each step ran once, and nothing later was sent twice.
    assert [(a["seq"], a["attempt"], a["outcome"]) for a in steps.attempts(run_id)] == [
        (2, 1, "committed"), (3, 1, "committed"), (4, 1, "committed"),
    ]
    assert [outcomes.of(run_id, seq) for seq in (3, 4)] == [["running"], ["succeeded"]]

    steps.publish(run_id, 4)  # a step of the finished run
    assert outcomes.wait(run_id, 4, count=2) == ["succeeded", "finished"]
    assert steps.events(run_id) == events


def test_a_step_of_an_unknown_run_is_dropped_without_error(steps, outcomes):
    unknown = f"no-such-run-{uuid.uuid4().hex[:8]}"
    steps.publish(unknown, 2)
    assert outcomes.wait(unknown, 2) == ["unknown_run"]
    assert [state for state, _ in outcomes.by_task[f"{unknown}:2"]] == ["SUCCESS"]  # no error, no retry
    with steps.engine.connect() as conn:
        for table in ("runs", "events", "step_attempts", "outbox"):
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), dict(r=unknown)).scalar_one() == 0
    # The worker goes on with the next message.
    run_id = steps.submit("countdown", {"steps": 1, "sleep": 0})
    assert steps.wait_finished(run_id)["status"] == "succeeded"


def test_step_that_always_raises_fails_the_run_after_bounded_attempts(steps, session_settings):
    run_id = steps.submit("always_fails", {})
    run = steps.wait_finished(run_id)
    assert run["status"] == "failed"
    assert run["error"]["type"] == "ValueError"
    assert "always fails" in run["error"]["message"]
    assert "Traceback" in run["error"]["traceback"]
    events = steps.events(run_id)
    assert_contiguous(events)
    failed = events[-1]
    assert failed["type"] == "failed"
    recorded = failed["payload"]["attempts"]
    assert session_settings.max_attempts == 5
    assert [a["attempt"] for a in recorded] == [1, 2, 3, 4, 5]  # STEPLOG_MAX_ATTEMPTS default
    assert all(a["outcome"] == "failed" and a["error"]["type"] == "ValueError" for a in recorded)
    assert [a["outcome"] for a in steps.attempts(run_id)] == ["failed"] * 5
