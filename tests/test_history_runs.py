"""The tiers of state in real runs: bounded context over hundreds of steps, summaries, and a Redis
that can vanish mid-run without changing any result."""

from __future__ import annotations

import redis
from sqlalchemy import text

from tests.support.harness import assert_contiguous, wait_for

BUDGET = 300


def _env(fast_env):
    return {**fast_env, "STEPLOG_CONTEXT_BUDGET_TOKENS": str(BUDGET), "STEPLOG_SUMMARY_EVERY_STEPS": "25"}


def test_a_300_step_run_stays_within_its_context_budget_and_summarizes(fast_env, tmp_path):
    from tests.support.harness import Fleet

    fleet = Fleet(_env(fast_env), tmp_path)
    try:
        fleet.start()
        run_id = fleet.submit("journal", {"entries": 280})
        run = fleet.wait_finished(run_id, timeout=240)
        assert run["status"] == "succeeded" and run["result"]["entries"] == 280
        events = fleet.events(run_id)
        assert_contiguous(events)
        assert len(events) >= 300
        seen = [e["payload"]["seen"] for e in events if "seen" in e["payload"]]
        assert max(s["tokens"] for s in seen) <= BUDGET
        summaries = [e for e in events if e["type"] == "summary"]
        assert len(summaries) >= 10
        assert seen[-1]["summary_seq"] == summaries[-1]["seq"]  # later steps see the latest summary
        with fleet.engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM summaries WHERE run_id = :r"), dict(r=run_id)).scalar_one()
        assert rows == len(summaries)
    finally:
        fleet.close()


def _run_journals(env, tmp_path, *, flush: bool) -> list[dict]:
    from tests.support.harness import Fleet

    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        fleet.start()
        ids = [fleet.submit("journal", {"entries": 60}) for _ in range(5)]
        if flush:
            wait_for(lambda: sum(len(fleet.events(r)) for r in ids) > 120, what="runs half way")
            redis.Redis.from_url(env["STEPLOG_REDIS_URL"]).flushdb()  # this test's hot cache and queued steps gone
        results = [fleet.wait_finished(r, timeout=180)["result"] for r in ids]
        for r in ids:
            assert_contiguous(fleet.events(r))
        return results
    finally:
        fleet.close()


def test_flushdb_of_redis_mid_run_loses_nothing_and_changes_no_result(fast_env, tmp_path):
    env = _env(fast_env)
    calm = _run_journals(env, tmp_path / "calm", flush=False)
    flushed = _run_journals(env, tmp_path / "flushed", flush=True)
    assert flushed == calm
    assert all(r["entries"] == 60 for r in flushed)


def test_an_agent_can_search_earlier_runs_summaries_and_notes(fast_env, tmp_path):
    from tests.support.harness import Fleet
    from tools.registry import builtin_registry
    from tools.runtime import ToolRuntime

    fleet = Fleet(_env(fast_env), tmp_path)
    try:
        fleet.start()
        earlier = fleet.submit("journal", {"entries": 40})
        fleet.wait_finished(earlier, timeout=120)
        later = fleet.submit("countdown", {"steps": 1})
        fleet.wait_finished(later)
        tools = ToolRuntime(fleet.engine, builtin_registry(), run_id=later, seq=99)
        out = tools.call("search_memory", {"query": "journal notes", "limit": 3})
        assert out.ok, out.error
        hits = out.result["results"]
        assert hits and all(h["run_id"] == earlier and h["kind"] == "summary" for h in hits)
        assert "journal notes" in hits[0]["text"]
        mine = tools.call("search_memory", {"query": "journal notes", "this_run_only": True})
        assert mine.ok and mine.result["results"] == []
    finally:
        fleet.close()
