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
