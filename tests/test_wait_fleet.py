"""Durable waits with real worker processes: waiting runs and timers outlive the whole fleet, approval
gates hold irreversible tool calls until a person answers (and the approved call takes effect once,
through a SIGKILL), and racing workers fire each tick of a schedule once."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, assert_contiguous, cli, cli_json, wait_for
from tests.support.notify_sink import HoldingSink
from tools.keys import idempotency_key

pytestmark = pytest.mark.slow


def _start(fleet: Fleet, n: int) -> list:
    """Start ``n`` workers side by side, then wait until each is consuming."""
    started = [fleet.start(wait=False) for _ in range(n)]
    for w in started:
        fleet.wait_ready(w)
    return started


def _waiting(fleet: Fleet, run_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (r := fleet.run(run_id))["status"] == "waiting" and r, timeout=timeout,
                    what=f"run {run_id} to wait")


def _types(fleet: Fleet, run_id: str) -> list[str]:
    return [e["type"] for e in fleet.events(run_id)]


# -- 1. signals to runs whose every worker died --------------------------------------------------------


def test_waiting_runs_signalled_while_every_worker_is_dead_all_complete(fleet: Fleet) -> None:
    _start(fleet, 2)
    run_ids = [fleet.submit("waiter", {"signal": "go", "before": 2}) for _ in range(6)]
    for run_id in run_ids:
        _waiting(fleet, run_id)
    for w in fleet.workers:
        w.kill()
    assert not any(w.alive() for w in fleet.workers)

    sent = {run_id: fleet.app.steplog.signal(run_id, "go", {"i": i}, key=f"go-{i}", sender="tester")
            for i, run_id in enumerate(run_ids)}
    assert {o.status for o in sent.values()} == {"delivered"}

    (survivor,) = _start(fleet, 1)
    for i, run_id in enumerate(run_ids):
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert run["result"]["kind"] == "signal" and run["result"]["name"] == "go"
        assert (run["result"]["data"], run["result"]["key"], run["result"]["sender"]) == ({"i": i}, f"go-{i}", "tester")
        events = fleet.events(run_id)
        assert_contiguous(events)
        # Two steps, the wait, the signal (once), the step it woke: nothing repeated, nothing lost.
        assert [e["type"] for e in events] == ["submitted", "step", "step", "waiting", "signal", "succeeded"]
        assert events[4]["seq"] == sent[run_id].delivered_seq and events[4]["payload"]["key"] == f"go-{i}"
        assert events[5]["worker"] == survivor.node


# -- 2. a timer due while the fleet is down -------------------------------------------------------------


def test_a_timer_due_while_every_worker_is_down_fires_once_and_records_how_late(fleet: Fleet) -> None:
    (only,) = _start(fleet, 1)
    run_id = fleet.submit("sleeper", {"seconds": 1.0})
    due = _waiting(fleet, run_id)["wait_until"]
    only.kill()

    # Stay down until the due time is well past; nobody fires the timer meanwhile.
    overdue = due + timedelta(seconds=2.5)
    wait_for(lambda: datetime.now(timezone.utc) > overdue, timeout=30, what="the timer to be overdue")
    assert fleet.run(run_id)["status"] == "waiting" and "woke" not in _types(fleet, run_id)

    back_at = datetime.now(timezone.utc)
    _start(fleet, 2)  # two sweepers race for the overdue timer
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    events = fleet.events(run_id)
    assert_contiguous(events)
    woke = [e for e in events if e["type"] == "woke"]
    assert len(woke) == 1, [e["type"] for e in events]
    assert [e["type"] for e in events] == ["submitted", "waiting", "woke", "succeeded"]
    late = woke[0]["payload"]["late_seconds"]
    # It fired only once a worker was back: at least that long after its due time (a small margin for
    # the two clocks: the test's and Postgres's).
    assert late >= (back_at - due).total_seconds() - 0.2, (late, back_at, due)
    assert datetime.fromisoformat(woke[0]["payload"]["due_at"]) == due
    assert run["result"]["kind"] == "timer" and run["result"]["late_seconds"] == late


# -- 3. approval gates on publish_report and notify ------------------------------------------------------


def _parked_on(fleet: Fleet, run_id: str, tool: str) -> dict[str, Any]:
    """The `waiting` event of a run parked for approval of a call to ``tool``."""

    def parked():
        run = fleet.run(run_id)
        if run["status"] == "failed":
            raise AssertionError(f"run {run_id} failed: {run['error']}")
        if run["status"] != "waiting" or run["wait_signal"] != "approval":
            return None
        last = fleet.events(run_id)[-1]
        return last if last["type"] == "waiting" and last["payload"]["approval"]["tool"] == tool else None

    return wait_for(parked, timeout=120, what=f"run {run_id} to ask approval for {tool}")


def _ledger(fleet: Fleet, run_id: str) -> list[tuple[str, str, str]]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT tool, key, status FROM tool_ledger WHERE run_id = :r AND tool IN "
                                 "('publish_report', 'notify') ORDER BY tool"), dict(r=run_id)).all()
    return [tuple(r) for r in rows]


def test_approval_gates_hold_publish_and_notify_and_the_approved_notify_lands_once(
    fast_env, corpus_database_url, tmp_path
) -> None:
    ask_approve, ask_reject = "how to run a subprocess with a timeout", "how to read a CSV file"
    with HoldingSink() as sink:
        env = {**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url, "STEPLOG_NET_ALLOW": sink.allow}
        fleet = Fleet(env, tmp_path)
        try:
            (first,) = _start(fleet, 1)
            approved = cli_json(env, "research", ask_approve, "--approve", "--notify-url", f"{sink.base}/approved",
                                "--json")["run_id"]
            rejected = fleet.submit("research", {"question": ask_reject, "approve": True,
                                                 "notify_url": f"{sink.base}/rejected"})

            # (a) Both park at publish_report, showing the exact call and the key it will use.
            publish_asks = {run_id: _parked_on(fleet, run_id, "publish_report") for run_id in (approved, rejected)}
            for run_id, ask in publish_asks.items():
                gate = ask["payload"]
                assert gate["kind"] == "approval" and gate["signal"] == "approval" and gate["timeout_at"]
                assert set(gate["approval"]) == {"tool", "args", "key"}
                assert set(gate["approval"]["args"]) == {"markdown", "citations"}
                assert gate["approval"]["key"] == idempotency_key(run_id, ask["seq"], "publish_report", "1",
                                                                  gate["approval"]["args"])
                assert _ledger(fleet, run_id) == []  # not called
                shown = cli_json(env, "show", run_id, "--json")["waiting"]
                assert shown["signal"] == "approval"
            publish_key = publish_asks[approved]["payload"]["approval"]["key"]
            assert sink.requests == []

            said = cli_json(env, "approve", approved, "--note", "fine", "--json")
            assert said["status"] == "delivered" and said["run_id"] == approved
            assert cli_json(env, "approve", rejected, "--json")["status"] == "delivered"

            # ... then at notify: still nothing sent to the sink.
            asks = {run_id: _parked_on(fleet, run_id, "notify") for run_id in (approved, rejected)}
            for run_id, url, question in ((approved, "approved", ask_approve), (rejected, "rejected", ask_reject)):
                gate = asks[run_id]["payload"]["approval"]
                assert gate["tool"] == "notify"
                assert gate["args"] == {"url": f"{sink.base}/{url}", "payload": {
                    "run_id": run_id, "question": question, "truncated": gate["args"]["payload"]["truncated"]}}
                assert gate["key"] == idempotency_key(run_id, asks[run_id]["seq"], "notify", "1", gate["args"])
            assert [t for t, _, _ in _ledger(fleet, approved)] == ["publish_report"]
            assert _ledger(fleet, approved)[0][1:] == (publish_key, "succeeded")  # run with the key it showed
            assert sink.requests == [] and sink.hits["/approved"] == 0

            # (b) Approve the notify call; SIGKILL the only worker once the call has reached the sink but
            # before the worker has its answer. Another worker takes the step over.
            sink.hold("/approved")
            outcome = fleet.app.steplog.decide(approved, approved=True, by="tester")
            assert outcome.status == "delivered"
            assert sink.arrived.wait(60), "the approved notify call never reached the sink"
            first.kill()
            sink.release.set()
            _start(fleet, 1)
            # (c) Reject the other run's notify call.
            no = cli_json(env, "reject", rejected, "--reason", "not during the freeze", "--json")
            assert no["status"] == "delivered"

            run = fleet.wait_finished(approved, timeout=120)
            assert run["status"] == "succeeded", run["error"]
            assert (run["result"]["published"], run["result"]["notified"]) == ("published", "succeeded")
            # What was shown for approval is exactly what was called: the report as published ...
            shown = publish_asks[approved]["payload"]["approval"]["args"]
            assert shown["markdown"] == run["result"]["report"]
            assert shown["citations"] == sorted({c["doc_id"] for c in run["result"]["citations"]})
            notify_key = asks[approved]["payload"]["approval"]["key"]
            notify_args = asks[approved]["payload"]["approval"]["args"]
            assert notify_args["payload"]["truncated"] is run["result"]["truncated"]
            # Exactly one delivery, with the key shown when approval was asked: the call re-fired after the
            # kill (its outcome was unknown) repeated that key, and the receiver deduplicated it.
            assert sink.applied == {notify_key: notify_args["payload"]}
            assert len(sink.requests) >= 2 and {key for key, _ in sink.requests} == {notify_key}
            assert _ledger(fleet, approved) == [("notify", notify_key, "succeeded"),
                                                ("publish_report", publish_key, "succeeded")]
            events = fleet.events(approved)
            assert_contiguous(events)
            answers = [e["payload"] for e in events if e["type"] == "signal"]
            assert [a["name"] for a in answers] == ["approval", "approval"]
            assert answers[0]["data"]["approved"] is True and answers[0]["data"]["note"] == "fine"
            assert answers[1]["data"]["approved"] is True and answers[1]["sender"] == "tester"
            assert events[-1]["payload"]["key"] == notify_key
            tries = [(a["worker"], a["outcome"]) for a in fleet.attempts(approved) if a["seq"] == events[-1]["seq"]]
            assert tries == [(first.node, "lost"), (fleet.workers[-1].node, "committed")]

            later = fleet.wait_finished(rejected, timeout=120)
            assert later["status"] == "succeeded", later["error"]
            assert later["result"]["notified"] == "rejected" and later["result"]["published"] == "published"
            report = later["result"]["report"]
            assert report.startswith(publish_asks[rejected]["payload"]["approval"]["args"]["markdown"])
            assert "No notification was sent" in report and "not during the freeze" in report
            assert sink.hits["/rejected"] == 0 and rejected not in {p.get("run_id") for _, p in sink.requests}
            assert [t for t, _, _ in _ledger(fleet, rejected)] == ["publish_report"]
            last = fleet.events(rejected)[-1]["payload"]
            refused_key = asks[rejected]["payload"]["approval"]["key"]
            assert (last["tool"], last["status"], last["key"]) == ("notify", "rejected", refused_key)
            assert_contiguous(fleet.events(rejected))

            # Approving again is harmless: told it was delivered already, nothing sent again.
            again = cli(env, "approve", approved, "--json")
            assert again.returncode == 0, again.stderr
            assert json.loads(again.stdout)["status"] == "duplicate"
            assert len(sink.applied) == 1
        finally:
            fleet.close()


# -- 4. a schedule fired by racing workers --------------------------------------------------------------

#: The runs a schedule started: their `submitted` event names the schedule and the tick.
SCHEDULED_RUNS = """
SELECT run_id, payload->>'tick' AS tick FROM events
 WHERE seq = 1 AND type = 'submitted' AND payload->>'schedule' = :n ORDER BY run_id
"""


def test_racing_workers_fire_each_tick_of_a_schedule_exactly_once(fleet: Fleet) -> None:
    name = "every-second"
    _start(fleet, 3)
    first_tick = fleet.app.steplog.add_schedule(name, "* * * * * *", "countdown", {"steps": 1}, overlap="allow",
                                                catch_up="all", created_by="test")

    def fired() -> int:
        with fleet.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM schedule_fires WHERE schedule = :n"),
                                dict(n=name)).scalar_one()

    wait_for(lambda: fired() >= 10, timeout=60, what="ten ticks fired")

    # The fires and the runs they started, as of one moment: holding the schedule's row keeps every
    # sweeper from firing it meanwhile (they take it FOR UPDATE SKIP LOCKED).
    with fleet.engine.begin() as conn:
        conn.execute(text("SELECT 1 FROM schedules WHERE name = :n FOR UPDATE"), dict(n=name))
        fires = conn.execute(text("SELECT tick, run_id, outcome FROM schedule_fires WHERE schedule = :n ORDER BY tick"),
                             dict(n=name)).all()
        started = conn.execute(text(SCHEDULED_RUNS), dict(n=name)).all()
    removed = cli(fleet.env, "schedule", "remove", name)
    assert removed.returncode == 0, removed.stderr

    ticks = [f.tick for f in fires]
    assert ticks[0] == first_tick
    assert [(b - a).total_seconds() for a, b in pairwise(ticks)] == [1.0] * (len(ticks) - 1)  # no gap, no duplicate
    assert {f.outcome for f in fires} == {"started"}
    # One run per tick: its submitted event names the schedule and the tick.
    assert len(started) == len(fires) == len({f.run_id for f in fires})
    assert {(f.run_id, f.tick) for f in fires} == {(s.run_id, datetime.fromisoformat(s.tick)) for s in started}

    # Removed: no tick fires any more (four sweeps later), and the runs it started all finish.
    def scheduled_runs() -> list[Any]:
        with fleet.engine.connect() as conn:
            return conn.execute(text(SCHEDULED_RUNS), dict(n=name)).all()

    at_removal = scheduled_runs()
    time.sleep(1.0)
    assert scheduled_runs() == at_removal
    all_ticks = sorted(datetime.fromisoformat(s.tick) for s in at_removal)
    assert all_ticks[: len(ticks)] == ticks  # the ticks fired between our look and the removal came after
    assert [(b - a).total_seconds() for a, b in pairwise(all_ticks)] == [1.0] * (len(all_ticks) - 1)
    assert cli_json(fleet.env, "schedule", "list", "--json") == []
    for s in at_removal:
        assert fleet.wait_finished(s.run_id, timeout=60)["status"] == "succeeded"
        assert_contiguous(fleet.events(s.run_id))
