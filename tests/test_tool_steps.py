"""Tool calls inside real worker steps: exactly one effect per logical call, through faults and kills."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import text

from tests.support.harness import assert_contiguous, cli_json, wait_for
from tests.support.toolsupport import LocalHTTPServer


def test_notify_reaches_the_webhook_once_per_call_through_faults_and_a_kill(fast_env, tmp_path):
    from tests.support.harness import Fleet

    with LocalHTTPServer() as hook:
        # 8 retries: at fault rate 0.3 all 9 executions of a call fail with p = 2e-5 (with the default
        # 4, p = 0.3**5 per call sequence made this test fail about once in 40 runs, legitimately).
        env = {**fast_env, "STEPLOG_TOOL_FAULT_RATE": "0.3", "STEPLOG_TOOL_RETRIES": "8", "STEPLOG_NET_ALLOW": hook.allow}
        fleet = Fleet(env, tmp_path)
        try:
            victim = fleet.start()
            fleet.start()
            # 20 calls: none of them faulted (the test would then prove nothing) with p = 0.7**20 = 8e-4.
            run_ids = [fleet.submit("notify_after", {"url": f"{hook.base}/hook", "steps": 6, "sleep": 0.15})
                       for _ in range(20)]
            wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) > 20, what="runs under way")
            killed_run, killed_seq = fleet.kill_mid_step(victim, run_ids)
            for run_id in run_ids:
                assert fleet.wait_finished(run_id, timeout=120)["status"] == "succeeded"
                assert_contiguous(fleet.events(run_id))
            # The kill interrupted a step: its attempt on the victim is lost, another worker committed it.
            killed = [(a["worker"], a["outcome"]) for a in fleet.attempts(killed_run) if a["seq"] == killed_seq]
            assert killed[0] == (victim.node, "lost") and killed[-1][1] == "committed", killed

            # Every workflow's notification reached the webhook with exactly one distinct key ...
            keys = hook.keys_by("run_id")
            assert set(keys) == set(run_ids)
            assert all(len(k) == 1 and None not in k for k in keys.values()), keys
            # ... and the receiver applied each exactly once (retries re-sent the same key).
            assert sorted(p["run_id"] for p in hook.applied.values()) == sorted(run_ids)

            with fleet.engine.connect() as conn:
                rows = conn.execute(text("SELECT run_id, key, status, attempts FROM tool_ledger WHERE tool = 'notify'")).all()
            # Faults were injected: some call took more than one execution.
            assert sum(r.attempts for r in rows) > len(rows), [tuple(r) for r in rows]
            assert Counter(r.run_id for r in rows if r.status == "succeeded") == Counter(run_ids), [tuple(r) for r in rows]
            assert {r.run_id: r.key for r in rows} == {r: next(iter(keys[r])) for r in run_ids}

            audit = cli_json(env, "tools", run_ids[0], "--json")
            assert [(a["tool"], a["status"]) for a in audit] == [("notify", "succeeded")]
            assert {"tool", "key", "status", "attempts", "replays", "duration_ms", "error"} <= set(audit[0])
        finally:
            fleet.close()
