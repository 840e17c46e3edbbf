"""Durable waits in this process (the session's step worker): signals, timeouts, sleeps, cancel, and
what a waiting run holds (nothing but its Postgres rows)."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis
from sqlalchemy import text

from checkpoint import runs as runs_mod
from checkpoint.errors import RunNotFound
from checkpoint.signals import RunFinished
from checkpoint.steps import Dispatch
from tests.support.harness import Runs, assert_contiguous, wait_for

pytestmark = pytest.mark.usefixtures("celery_session_worker")


@pytest.fixture
def steps(celery_session_app) -> Runs:
    return Runs(celery_session_app)


def _status(steps: Runs, run_id: str) -> str:
    return steps.run(run_id)["status"]


def _waiting(steps: Runs, run_id: str) -> dict:
    return wait_for(lambda: (r := steps.run(run_id))["status"] == "waiting" and r, timeout=30,
                    what=f"run {run_id} to wait")


def _types(steps: Runs, run_id: str) -> list[str]:
    return [e["type"] for e in steps.events(run_id)]


def test_a_signal_sent_before_the_wait_is_consumed_by_it(steps: Runs, celery_session_app) -> None:
    run_id = steps.submit("waiter", {"signal": "go", "before": 2}, publish=False)
    sent = celery_session_app.steplog.signal(run_id, "go", {"n": 1}, sender="tester")
    assert sent.status == "buffered" and sent.dispatch is None
    celery_session_app.steplog.publish(Dispatch(run_id, runs_mod.FIRST_STEP, "waiter"))
    run = steps.wait_finished(run_id, timeout=30)
    assert run["status"] == "succeeded"
    assert run["result"]["kind"] == "signal" and run["result"]["data"] == {"n": 1} and run["result"]["sender"] == "tester"
    events = steps.events(run_id)
    assert_contiguous(events)
    assert [e["type"] for e in events][-3:] == ["waiting", "signal", "succeeded"]


def test_the_same_key_twice_delivers_once(steps: Runs, celery_session_app) -> None:
    run_id = steps.submit("waiter", {"signal": "go"})
    _waiting(steps, run_id)
    first = celery_session_app.steplog.signal(run_id, "go", {"v": 1}, key="k1", sender="a")
    again = celery_session_app.steplog.signal(run_id, "go", {"v": 2}, key="k1", sender="b")
    assert first.status == "delivered" and again.status == "duplicate"
    assert again.delivered_seq == first.delivered_seq
    run = steps.wait_finished(run_id, timeout=30)
    assert run["result"]["data"] == {"v": 1} and run["result"]["key"] == "k1"
    assert _types(steps, run_id).count("signal") == 1
    with pytest.raises(RunFinished):
        celery_session_app.steplog.signal(run_id, "go", {}, sender="late")
    with pytest.raises(RunNotFound):
        celery_session_app.steplog.signal("no-such-run", "go", {}, sender="x")


def test_a_wait_times_out_and_a_sleep_wakes(steps: Runs) -> None:
    waiting = steps.submit("waiter", {"signal": "never", "timeout": 0.3})
    sleeping = steps.submit("sleeper", {"seconds": 0.3})
    for run_id, kind, event in ((waiting, "timeout", "timed_out"), (sleeping, "timer", "woke")):
        run = steps.wait_finished(run_id, timeout=30)
        assert run["status"] == "succeeded" and run["result"]["kind"] == kind
        assert run["result"]["late_seconds"] >= 0
        assert _types(steps, run_id)[-3:] == ["waiting", event, "succeeded"]
        assert_contiguous(steps.events(run_id))


def test_signal_racing_a_timeout_has_exactly_one_outcome(steps: Runs, celery_session_app) -> None:
    rng = random.Random(7)
    trials = [steps.submit("waiter", {"signal": "go", "timeout": 0.4}) for _ in range(24)]
    for run_id in trials:
        _waiting(steps, run_id)
    sent: dict[str, str] = {}

    def send(run_id: str) -> None:
        try:
            sent[run_id] = celery_session_app.steplog.signal(run_id, "go", {}, sender="racer").status
        except RunFinished:  # the timeout ended the run first, and its next step finished it
            sent[run_id] = "finished"

    threads = [threading.Timer(rng.uniform(0.2, 0.6), send, (run_id,)) for run_id in trials]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kinds = set()
    for run_id in trials:
        run = steps.wait_finished(run_id, timeout=30)
        types = _types(steps, run_id)
        assert types.count("signal") + types.count("timed_out") == 1, types
        assert_contiguous(steps.events(run_id))
        # The sender was told what happened: delivered exactly when the signal is what woke the run.
        assert (sent[run_id] == "delivered") == (run["result"]["kind"] == "signal"), (sent[run_id], run["result"])
        kinds.add(run["result"]["kind"])
    assert kinds <= {"signal", "timeout"}


def test_cancel_of_a_waiting_run_takes_effect_at_once(steps: Runs, celery_session_app, session_settings) -> None:
    run_id = steps.submit("waiter", {"signal": "go"})
    _waiting(steps, run_id)
    outcome = runs_mod.cancel(steps.engine, run_id, by="op", lease_seconds=session_settings.lease_seconds)
    assert outcome.status == "cancelled"
    assert _status(steps, run_id) == "cancelled" and _types(steps, run_id)[-1] == "cancelled"


def test_a_waiting_run_holds_no_lease_outbox_row_message_or_redis_key(steps: Runs, session_settings) -> None:
    run_id = steps.submit("waiter", {"signal": "go", "before": 1})
    run = _waiting(steps, run_id)
    time.sleep(0.3)  # let any best-effort Redis write after the commit land first
    assert run["lease_owner"] is None and run["wait_signal"] == "go"
    with steps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE run_id = :r"), dict(r=run_id)).scalar_one() == 0
    client = redis.Redis.from_url(session_settings.broker_url)
    holding = [k for k in client.scan_iter(count=1000) if run_id.encode() in k]
    queued = [m for key in client.scan_iter(count=1000) if client.type(key) == b"list"
              for m in client.lrange(key, 0, -1) if run_id.encode() in m]
    unacked = [v for v in (client.hvals("unacked") if client.exists("unacked") else []) if run_id.encode() in v]
    assert (holding, queued, unacked) == ([], [], [])


def test_bad_signals_are_refused_before_anything_is_written(steps: Runs, celery_session_app, session_settings) -> None:
    from checkpoint.errors import BadInput

    run_id = steps.submit("waiter", {"signal": "go"}, publish=False)
    too_big = {"blob": "x" * session_settings.inline_limit}
    for name, data, key in (("", {}, None), ("go", too_big, None), ("go", {}, "k" * 500)):
        with pytest.raises(BadInput):
            celery_session_app.steplog.signal(run_id, name, data, key=key, sender="x")
    with steps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signals WHERE run_id = :r"), dict(r=run_id)).scalar_one() == 0
