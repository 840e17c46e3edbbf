"""Fan-out with real workers: child runs, joins that fire once, the max_parallel window, cancels."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, assert_contiguous, wait_for

pytestmark = pytest.mark.slow


def _start(fleet: Fleet, n: int, *extra: str, env: dict | None = None) -> list:
    started = [fleet.start(*extra, env=env, wait=False) for _ in range(n)]
    for w in started:
        fleet.wait_ready(w)
    return started


def _children(fleet: Fleet, run_id: str) -> list[dict]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT run_id, status, child_index, parent_seq, cancel_requested_by FROM runs "
                                 "WHERE parent_run_id = :p ORDER BY child_index"), dict(p=run_id)).all()
    return [dict(r._mapping) for r in rows]


def _joined_events(fleet: Fleet, run_id: str) -> list[dict]:
    return [e for e in fleet.events(run_id) if e["type"] == "joined"]


def test_settled_with_a_failing_child_sees_the_failure_and_its_error(fleet: Fleet) -> None:
    _start(fleet, 2)
    run_id = fleet.submit("fanout", {"children": 6, "max_parallel": 3, "fail": [4], "on_error": "settled"})
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    result = run["result"]
    assert (result["succeeded"], result["failed"], result["cancelled"]) == (5, 1, 0)
    assert [r["index"] for r in result["results"]] == list(range(6))
    assert [r["status"] for r in result["results"]] == ["succeeded"] * 4 + ["failed", "succeeded"]
    assert "fails on purpose" in result["results"][4]["error"]
    assert result["results"][0]["result"] == {"index": 0}
    events = fleet.events(run_id)
    assert_contiguous(events)
    assert [e["type"] for e in events] == ["submitted", "waiting", "joined", "succeeded"]
    assert len(_children(fleet, run_id)) == 6


def test_quorum_goes_on_after_the_third_success_and_the_rest_end_cancelled(fleet: Fleet) -> None:
    _start(fleet, 2)
    run_id = fleet.submit("fanout", {"children": 10, "sleep": 0.3, "on_error": "quorum:3"})
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "succeeded", run["error"]
    (joined,) = _joined_events(fleet, run_id)
    assert joined["payload"]["succeeded"] == 3  # the third success fired the join
    result = run["result"]
    assert (result["succeeded"], result["failed"], result["cancelled"]) == (3, 0, 7)
    wait_for(lambda: all(c["status"] in ("succeeded", "cancelled") for c in _children(fleet, run_id)), timeout=30,
             what="every child to end")
    statuses = [c["status"] for c in _children(fleet, run_id)]
    assert statuses.count("succeeded") == 3 and statuses.count("cancelled") == 7
    assert [r["status"] for r in result["results"]] == statuses


def test_all_fails_the_join_at_the_first_failure_and_cancels_the_rest(fleet: Fleet) -> None:
    _start(fleet, 2)
    run_id = fleet.submit("fanout", {"children": 8, "max_parallel": 2, "sleep": 0.2, "fail": [1]})
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "failed"
    assert "child 1" in run["error"]["message"] and "fails on purpose" in run["error"]["message"]
    wait_for(lambda: all(c["status"] in ("succeeded", "failed", "cancelled") for c in _children(fleet, run_id)),
             timeout=30, what="every child to end")
    statuses = [c["status"] for c in _children(fleet, run_id)]
    assert statuses[1] == "failed" and statuses[4:] == ["cancelled"] * 4  # never started
    assert len(_joined_events(fleet, run_id)) == 1


def test_over_max_children_spawns_nothing_and_names_the_setting(fleet: Fleet) -> None:
    _start(fleet, 1, env={**fleet.env, "STEPLOG_MAX_CHILDREN": "5"})
    run_id = fleet.submit("fanout", {"children": 6})
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "failed"
    assert "STEPLOG_MAX_CHILDREN" in run["error"]["message"] and "6 children" in run["error"]["message"]
    assert _children(fleet, run_id) == []
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM fanouts WHERE run_id = :r"), dict(r=run_id)).scalar() == 0
    assert [e["type"] for e in fleet.events(run_id)] == ["submitted", "failed"]


def test_cancelling_a_parent_cancels_all_its_children_and_none_keeps_running(fleet: Fleet) -> None:
    from checkpoint import runs

    _start(fleet, 2)
    run_id = fleet.submit("fanout", {"children": 20, "max_parallel": 4, "sleep": 1.0})
    wait_for(lambda: sum(c["status"] == "running" for c in _children(fleet, run_id)) >= 2, timeout=60,
             what="children in flight")
    with fleet.engine.connect() as conn:
        cancelled_at = conn.execute(text("SELECT clock_timestamp()")).scalar()
    outcome = runs.cancel(fleet.engine, run_id, by="tester", lease_seconds=1.2)
    assert outcome.status == "cancelled"  # the parent was waiting: it ends at once
    wait_for(lambda: all(c["status"] == "cancelled" for c in _children(fleet, run_id)), timeout=30,
             what="every child cancelled")
    kids = _children(fleet, run_id)
    assert len(kids) == 20 and all(c["cancel_requested_by"] for c in kids)
    with fleet.engine.connect() as conn:
        later = conn.execute(text(
            "SELECT count(*) FROM step_attempts a JOIN runs r ON r.run_id = a.run_id "
            "WHERE r.parent_run_id = :p AND a.started_at > :t"), dict(p=run_id, t=cancelled_at)).scalar()
        leased = conn.execute(text("SELECT count(*) FROM runs WHERE parent_run_id = :p AND lease_owner IS NOT NULL"),
                              dict(p=run_id)).scalar()
    assert later == 0 and leased == 0  # no child started a step after the cancel, none holds a lease
    assert fleet.run(run_id)["status"] == "cancelled"


def test_two_children_ending_at_once_on_two_workers_join_once(fleet: Fleet) -> None:
    _start(fleet, 2)
    run_ids = [fleet.submit("fanout", {"children": 2, "sleep": 0.5}) for _ in range(4)]
    for run_id in run_ids:
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert run["result"]["succeeded"] == 2
        assert len(_joined_events(fleet, run_id)) == 1
        events = fleet.events(run_id)
        assert_contiguous(events)
        assert [e["type"] for e in events] == ["submitted", "waiting", "joined", "succeeded"]
    # The children of a run did run side by side, on the two workers.
    with fleet.engine.connect() as conn:
        pairs = conn.execute(text(
            "SELECT r.parent_run_id, count(DISTINCT a.worker) FROM step_attempts a JOIN runs r ON r.run_id = a.run_id "
            "WHERE r.parent_run_id IS NOT NULL GROUP BY r.parent_run_id")).all()
    assert any(n == 2 for _, n in pairs)


def test_a_worker_killed_right_after_a_childs_final_commit_still_wakes_the_parent_once(fleet: Fleet) -> None:
    faulty = {**fleet.env, "STEPLOG_FAULT_AFTER_COMMIT": "1"}
    run_id = fleet.submit("fanout", {"children": 2})
    killed = []
    # Each faulty worker commits one step (the Map, then each child's last) and dies before publishing.
    while not _joined_events(fleet, run_id):
        assert len(killed) < 8, "the parent was never woken"
        w = fleet.start(env=faulty)
        w.proc.wait(timeout=60)
        killed.append(w.node)
    (joined,) = _joined_events(fleet, run_id)
    last = next(e for e in fleet.events(joined["payload"]["by"]) if e["type"] == "succeeded")
    assert last["worker"] in killed  # the child whose commit fired the join was committed by a worker that died
    assert fleet.run(run_id)["status"] == "queued"
    fleet.start()  # the sweeper publishes the join's step, which no dead worker could
    run = fleet.wait_finished(run_id, timeout=60)
    assert run["status"] == "succeeded" and run["result"]["succeeded"] == 2
    assert len(_joined_events(fleet, run_id)) == 1
    assert_contiguous(fleet.events(run_id))


def test_200_children_max_parallel_20_under_sigkills_never_exceed_the_window_and_join_once(fleet: Fleet) -> None:
    import random
    import threading
    import time

    from sqlalchemy import create_engine

    _start(fleet, 3)
    run_id = fleet.submit("fanout", {"children": 200, "max_parallel": 20, "sleep": 0.05})
    sampler = create_engine(fleet.env["STEPLOG_DATABASE_URL"], pool_size=1)
    peak, samples, stop = [0], [0], threading.Event()

    def sample() -> None:  # every 10 ms, from the lease table: children holding a lease now
        with sampler.connect() as conn:
            while not stop.is_set():
                n = conn.execute(text("SELECT count(*) FROM runs WHERE parent_run_id = :p AND lease_owner IS NOT NULL"),
                                 dict(p=run_id)).scalar()
                conn.commit()
                peak[0], samples[0] = max(peak[0], n), samples[0] + 1
                time.sleep(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    rng, kills, deadline = random.Random(15), 0, time.monotonic() + 240
    try:
        while fleet.run(run_id)["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the fan-out did not finish"
            time.sleep(2.0)
            rng.choice([w for w in fleet.workers if w.alive()]).kill()  # a SIGKILL every 2 s ...
            kills += 1
            fleet.start(wait=False)  # ... and a replacement, so three workers stay
    finally:
        stop.set()
        watcher.join()
        sampler.dispose()
    run = fleet.run(run_id)
    assert run["status"] == "succeeded", run["error"]
    assert kills >= 1 and samples[0] > 100
    assert 0 < peak[0] <= 20, peak[0]
    result = run["result"]
    assert result["succeeded"] == 200
    assert [r["index"] for r in result["results"]] == list(range(200))
    assert [r["result"] for r in result["results"]] == [{"index": i} for i in range(200)]
    assert len(_joined_events(fleet, run_id)) == 1
    assert_contiguous(fleet.events(run_id))


def test_show_json_children_and_parent_show_children_and_watch(fleet: Fleet) -> None:
    from tests.support.harness import cli, cli_json

    _start(fleet, 1)
    run_id = fleet.submit("fanout", {"children": 4, "max_parallel": 1, "sleep": 0.6, "fail": [2],
                                     "on_error": "settled"})
    wait_for(lambda: fleet.run(run_id)["status"] == "waiting" and len(_children(fleet, run_id)) == 4, timeout=60,
             what="the fan-out to start")
    shown = cli_json(fleet.env, "show", run_id, "--json")
    assert shown["status"] == "waiting" and shown["parent"] is None
    kids = shown["children"]
    assert kids["total"] == 4 and sum(kids[s] for s in ("queued", "running", "succeeded", "failed", "cancelled")) == 4
    assert kids["running"] <= 1  # max_parallel 1
    watched = cli(fleet.env, "watch", run_id)  # no terminal: the view once, when the run has ended
    assert watched.returncode == 0, watched.stderr
    assert "4/4 ended: 3 succeeded, 1 failed" in watched.stdout, watched.stdout

    done = cli_json(fleet.env, "show", run_id, "--json")
    assert done["children"] == {"total": 4, "queued": 0, "running": 0, "waiting": 0, "succeeded": 3, "failed": 1,
                                "cancelled": 0}
    listed = cli_json(fleet.env, "show", run_id, "--children", "--json")
    assert [(c["index"], c["status"]) for c in listed] == [(0, "succeeded"), (1, "succeeded"), (2, "failed"),
                                                          (3, "succeeded")]
    assert all(c["seq"] == 2 and c["workflow"] == "fanout_child" for c in listed)
    child = cli_json(fleet.env, "show", listed[2]["run_id"], "--json")
    assert child["parent"] == {"run_id": run_id, "seq": 2, "index": 2} and child["children"] is None
    assert child["status"] == "failed"
    table = cli(fleet.env, "show", run_id, "--children")
    assert table.returncode == 0 and listed[3]["run_id"] in table.stdout


def test_a_map_over_a_tool_calls_it_once_per_item_each_with_its_own_key(fleet: Fleet) -> None:
    from tests.support.toolsupport import LocalHTTPServer

    with LocalHTTPServer() as hook:
        env = {**fleet.env, "STEPLOG_NET_ALLOW": hook.allow}
        run_id = fleet.submit("notify_each", {"url": f"{hook.base}/hook", "n": 5})
        # The parent's worker dies right after committing the Map, before publishing any child.
        faulty = fleet.start(env={**env, "STEPLOG_FAULT_AFTER_COMMIT": "1"})
        faulty.proc.wait(timeout=60)
        _start(fleet, 2, env=env)
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        kids = _children(fleet, run_id)
        with fleet.engine.connect() as conn:
            ledger = conn.execute(text("SELECT run_id, seq, key, status FROM tool_ledger WHERE tool = 'notify' "
                                       "ORDER BY run_id")).all()
        # Each call is its child's: keyed by the child's run id and step, recorded once, made once.
        assert [(r.run_id, r.seq, r.status) for r in ledger] == [(k["run_id"], 2, "succeeded") for k in kids]
        assert run["result"]["ok"] == [True] * 5
        assert run["result"]["keys"] == [r.key for r in ledger]
        assert sorted(k for k, _ in hook.requests) == sorted(run["result"]["keys"])  # one request per item
        assert sorted(p["item"] for _, p in hook.requests) == list(range(5))
