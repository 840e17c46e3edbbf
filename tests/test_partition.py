"""Across hosts, and a network partition between them: each worker on a test host of its own (a Linux
network namespace the test makes), reaching Postgres, Redis and a webhook only over its link. One host
is cut off while it holds leases: its steps are taken over on the other host; when the link comes
back, its late commits are refused and its late tool calls are deduplicated by key; no run loses or
repeats an event, and the host rejoins and takes work again. Needs root (CI runs as root)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, assert_contiguous, wait_for
from tests.support.netns import network as make_network
from tests.support.toolsupport import LocalHTTPServer
from workers.fleet import WorkerProc
from workers.partition import Network, relay_urls

pytestmark = pytest.mark.slow


@pytest.fixture
def network():
    net = make_network()
    yield net
    net.close()


def _attempts(fleet: Fleet, run_ids: list[str]) -> list[dict]:
    with fleet.engine.connect() as conn:
        rows = conn.execute(text("SELECT run_id, seq, attempt, worker, outcome FROM step_attempts "
                                 "WHERE run_id = ANY(:ids) ORDER BY run_id, seq, attempt"), {"ids": run_ids})
        return [dict(r._mapping) for r in rows]


def test_a_host_cut_off_mid_lease_is_taken_over_fenced_and_rejoins(fleet: Fleet, network: Network, tmp_path) -> None:
    with LocalHTTPServer() as sink:
        names = ["STEPLOG_DATABASE_URL", "STEPLOG_BROKER_URL", "STEPLOG_REDIS_URL"]
        relay, urls = relay_urls(network.service_ip, [fleet.env[n] for n in names]
                                 + [f"http://127.0.0.1:{sink.server_port}/hook"])
        try:
            hook = urls.pop()
            hook_netloc = hook.split("/")[2]
            env = {**fleet.env, **dict(zip(names, urls)), "STEPLOG_NET_ALLOW": hook_netloc}
            hosts = [network.host(), network.host()]
            workers = [WorkerProc(env, f"h{i + 1}", tmp_path, "--concurrency=1", host=f"host{i + 1}", prefix=h.prefix)
                       for i, h in enumerate(hosts)]
            fleet.workers.extend(workers)
            for w in workers:
                fleet.wait_ready(w)
            cut_host, cut_worker, other = hosts[0], workers[0], workers[1]

            run_ids = [fleet.submit("notify_after", {"url": hook, "steps": 8, "sleep": 0.4}) for _ in range(6)]
            held = wait_for(lambda: [r for r in run_ids if (f := fleet.in_flight(r)) and f["worker"] == cut_worker.node],
                            timeout=60, what="the first host to hold a lease")
            held_at = {r: fleet.in_flight(r) for r in held}
            cut_host.cut()
            # Its held steps start again on the other host once its heartbeats stop counting.
            for run_id, flight in held_at.items():
                if flight is None:
                    continue
                wait_for(lambda r=run_id, s=flight["seq"]: any(
                    a["seq"] == s and a["worker"] == other.node for a in _attempts(fleet, [r]) if a["run_id"] == r),
                    timeout=60, what=f"step {flight['seq']} of {run_id} taken over on the other host")
            # The cut-off worker is alive, stalled on its link, still thinking it holds its steps.
            assert cut_worker.alive()
            cut_host.heal()

            for run_id in run_ids:
                run = fleet.wait_finished(run_id, timeout=120)
                assert run["status"] == "succeeded", run["error"]
                events = fleet.events(run_id)
                assert_contiguous(events)
            attempts = _attempts(fleet, run_ids)
            # The cut-off host's attempts at the steps it held were taken from it: none of them committed.
            for run_id, flight in held_at.items():
                if flight is None:
                    continue
                mine = [a for a in attempts if a["run_id"] == run_id and a["seq"] == flight["seq"]
                        and a["worker"] == cut_worker.node]
                assert mine and all(a["outcome"] != "committed" for a in mine), mine
            # Each run's notification took effect once, under one key, whoever sent it and how often.
            applied = sink.applied
            assert len(applied) == len(run_ids)
            assert sorted(p["run_id"] for p in applied.values()) == sorted(run_ids)

            # The host rejoins: its worker takes steps again.
            more = [fleet.submit("countdown", {"steps": 6, "sleep": 0.1}) for _ in range(4)]
            for run_id in more:
                assert fleet.wait_finished(run_id, timeout=120)["status"] == "succeeded"
            assert any(a["worker"] == cut_worker.node and a["outcome"] == "committed" for a in _attempts(fleet, more))
            late = "lost its lease before committing" in cut_worker.log() or any(
                a["worker"] == cut_worker.node and a["outcome"] == "lost" for a in attempts)
            assert late  # the late commit was refused, or its attempt recorded as lost
        finally:
            relay.close()
