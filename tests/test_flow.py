"""Flow control through real workers: concurrency keys (FIFO waiters woken by freed slots, surviving
SIGKILL), priorities on the broker message, and why a step waits in `show`."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, assert_contiguous, cli, wait_for


class LeaseSampler(threading.Thread):
    """Reads every 10 ms how many steps of each concurrency key hold a lease; keeps the maximum."""

    def __init__(self, engine: Any) -> None:
        super().__init__(daemon=True)
        self.engine, self.most, self.ever, self.samples = engine, Counter(), Counter(), 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stopping.wait(0.01):
                rows = conn.execute(text(
                    "SELECT flow_key, count(*) FROM runs WHERE lease_owner IS NOT NULL AND flow_key IS NOT NULL "
                    "GROUP BY flow_key")).all()
                conn.commit()
                self.samples += 1
                for key, n in rows:
                    self.most[key] = max(self.most[key], n)
                    self.ever[key] = max(self.ever[key], n)

    def __enter__(self) -> LeaseSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join()


def first_step_wait(fleet: Fleet, run_id: str) -> float:
    """Seconds from a run's submission to its first step's start (both Postgres clock)."""
    with fleet.engine.connect() as conn:
        return conn.execute(text(
            "SELECT extract(epoch FROM min(a.started_at) - r.created_at) FROM runs r "
            "JOIN step_attempts a ON a.run_id = r.run_id WHERE r.run_id = :r GROUP BY r.created_at"),
            dict(r=run_id)).scalar_one()


def limited(env: dict[str, str], limit: int) -> dict[str, str]:
    return {**env, "STEPLOG_CONCURRENCY": json.dumps({"countdown": {"key": "input.tenant", "limit": limit}})}


def test_a_key_over_its_limit_waits_holding_no_worker_and_show_says_why(fast_env, tmp_path):
    """Limit 2 for tenant a, 3 workers: never more than 2 of a's steps hold a lease; the third worker
    takes b's steps meanwhile; a throttled run's `show` names the key and its count; every run completes."""
    env = limited(fast_env, 2)
    fleet = Fleet(env, tmp_path)
    try:
        for _ in range(3):
            fleet.start()
        with LeaseSampler(fleet.engine) as sampler:
            a_runs = [fleet.submit("countdown", {"steps": 1, "sleep": 8.0, "tenant": "a"}) for _ in range(6)]

            def last_waiter() -> str | None:  # four of a's runs wait 8 or 16 s: time to look
                with fleet.engine.connect() as conn:
                    return conn.execute(text(
                        "SELECT run_id FROM outbox WHERE throttle_key = 'tenant=a' AND dispatched_at IS NULL "
                        "ORDER BY throttled_since DESC LIMIT 1")).scalar_one_or_none()

            waiter = wait_for(last_waiter, timeout=30, what="a waiter of tenant a")
            assert re.search(r"concurrency tenant=a: [0-2]/2 in flight, \d+ queued", cli(env, "limits").stdout)
            limits = json.loads(cli(env, "limits", "--json").stdout)
            shown = cli(env, "show", wait_for(last_waiter, timeout=30, what="a waiter"))
            assert "concurrency tenant=a 2/2" in shown.stdout, shown.stdout + shown.stderr
            doc = json.loads(cli(env, "show", wait_for(last_waiter, timeout=30, what="a waiter"), "--json").stdout)
            b_run = fleet.submit("countdown", {"steps": 2, "sleep": 0.5, "tenant": "b"})
            for run_id in a_runs + [b_run]:
                assert fleet.wait_finished(run_id, timeout=120)["status"] == "succeeded"
                assert_contiguous(fleet.events(run_id))
        (key,) = [k for k in limits["concurrency"] if k["key"] == "tenant=a"]
        assert (key["limit"], key["in_flight"], key["queued"], key["woken"]) == (2, 2, 4, 0), key
        assert set(key) == {"key", "in_flight", "woken", "queued", "limit", "oldest_wait_seconds"}
        assert limits["rates"] == [] and limits["deferred"] == []
        t = doc["throttled"]
        assert (t["reason"], t["key"], t["limit"], t["due_at"]) == ("concurrency", "tenant=a", 2, None), t
        assert t["text"].startswith("concurrency tenant=a ") and doc["in_flight"] is None
        assert sampler.most["tenant=a"] == 2 and sampler.most["tenant=b"] == 1, sampler.most
        # b did not queue behind a's runs: its first step started at once on the third worker
        assert first_step_wait(fleet, b_run) < 0.5
        with fleet.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
            slots = conn.execute(text("SELECT count(*) FROM runs WHERE flow_slot")).scalar_one()
        assert (left, slots) == (0, 0)
    finally:
        fleet.close()


def _decide(request):
    from tests.support.fake_llm import text, tool_call

    if any(m.get("role") == "tool" for m in request.messages):
        return text("noted [jot]", usage={"prompt_tokens": 0, "completion_tokens": 20, "total_tokens": 20})
    return tool_call("jot", {"text": "hello"}, usage={"prompt_tokens": 0, "completion_tokens": 20, "total_tokens": 20})


def test_llm_limits_hold_fleet_wide_without_a_429_or_a_sleeping_worker(fast_env, fake_llm, tmp_path):
    """A provider allowing 60 requests and 40,000 tokens per (compressed) minute; 8 worker processes,
    150 agent runs of two model decisions each (300 reasoning steps): no 429 reaches a step, the request
    limit is used to at least 90% in every full window, and no step waited for budget inside its worker
    (every attempt is far shorter than a window: a step without budget is deferred, not slept on)."""
    window = 8.0  # a compressed minute: 7.5 requests a second is what 8 workers sustain on a loaded 2-core machine
    fake_llm.enforce(rpm=60, tpm=40_000, window=window).script(_decide)
    env = {**fast_env, "STEPLOG_WORKFLOW_MODULES": "tests.support.flow_agents",
           "STEPLOG_LLM_BASE_URL": fake_llm.url, "STEPLOG_LLM_MODEL": "fake-model",
           "STEPLOG_LLM_RPM": "60", "STEPLOG_LLM_TPM": "40000", "STEPLOG_RATE_WINDOW_SECONDS": str(window),
           "STEPLOG_SWEEP_SECONDS": "0.1"}
    fleet = Fleet(env, tmp_path)
    try:
        workers = [fleet.start(wait=False) for _ in range(8)]
        for w in workers:
            fleet.wait_ready(w, timeout=120)
        runs = [fleet.submit("limited_llm", {"task": f"note {i}"}, publish=False) for i in range(150)]
        for run_id in runs:  # all at once: the fleet is saturated from the first window
            fleet.publish(run_id, 2, "limited_llm")
        for run_id in runs:
            run = fleet.wait_finished(run_id, timeout=300)
            assert run["status"] == "succeeded", run["error"]
            assert_contiguous(fleet.events(run_id))
        assert fake_llm.rejected == 0
        served = sorted(at for at, _ in fake_llm.served)
        assert len(served) == 300
        start, end = served[0], served[-1]
        full = int((end - start) // window)  # windows that ended before the last request
        assert full >= 3, "the limit did not bind"
        counts = [sum(1 for at in served if start + k * window <= at < start + (k + 1) * window) for k in range(full)]
        assert max(counts) <= 60 and sum(counts) / (60 * full) >= 0.9, counts
        with fleet.engine.connect() as conn:
            longest = conn.execute(text("SELECT max(step_ms) FROM step_attempts WHERE outcome = 'committed'")).scalar_one()
        assert longest < window * 1000 / 2, f"a step ran {longest} ms: it waited inside its worker"
        assert sum("throttled (rate: llm rpm)" in w.log() for w in fleet.workers) >= 1
        (rate,) = json.loads(cli(env, "limits", "--json").stdout)["rates"]
        assert rate["name"] == f"llm fake-model at {fake_llm.url}" and rate["window_seconds"] == window
        assert (rate["requests_limit"], rate["units_limit"]) == (60, 40_000) and 0 < rate["requests"] <= 60
        assert set(rate) == {"name", "window_seconds", "requests", "requests_limit", "units", "units_limit",
                             "blocked_seconds", "waiting", "deferred"}
    finally:
        fleet.close()


def test_tenants_keep_their_limit_through_sigkills_and_a_small_tenant_is_not_starved(fast_env, tmp_path):
    """Tenant A submits 200 runs and tenant B 5, limit 3 per tenant, 4 workers, a worker SIGKILLed every
    3 s (and replaced). Sampled every 10 ms, neither tenant ever has more than 3 steps in flight; B's
    first step starts within one step's duration of its submission; A's slots survive the kills (it is
    back at 3 in flight after the last one); every B run completes without a gap or a repeat."""
    step = 0.5
    env = limited(fast_env, 3)
    fleet = Fleet(env, tmp_path)
    try:
        for _ in range(4):
            fleet.start()
        with LeaseSampler(fleet.engine) as sampler:
            a_runs = [fleet.submit("countdown", {"steps": 2, "sleep": step, "tenant": "A"}) for _ in range(200)]
            b_runs = [fleet.submit("countdown", {"steps": 2, "sleep": step, "tenant": "B"}) for _ in range(5)]
            for _ in range(3):
                time.sleep(3)
                victim = next(w for w in fleet.workers if w.alive)
                victim.kill()
                fleet.start(wait=False)
            for run_id in b_runs:
                assert fleet.wait_finished(run_id, timeout=120)["status"] == "succeeded"
                assert_contiguous(fleet.events(run_id))
            sampler.most.clear()  # A after the last kill: back at its limit, no slot lost with a worker
            time.sleep(4 * step)
        assert sampler.samples > 100
        assert sampler.ever["tenant=A"] == 3 and sampler.ever["tenant=B"] <= 3, sampler.ever
        assert sampler.most["tenant=A"] == 3, sampler.most
        first_b = first_step_wait(fleet, b_runs[0])
        assert first_b < step, f"B's first step waited {first_b:.3f} s behind A's 200 runs"
        with fleet.engine.connect() as conn:
            # A's steps go first come, first served: each run's second step queues behind the first
            # steps of the runs submitted before it (A's runs finish later, all of them together).
            done = conn.execute(text("SELECT count(*) FROM events e JOIN runs r USING (run_id) "
                                     "WHERE r.flow_key = 'tenant=A' AND e.type = 'step'")).scalar_one()
        assert done >= 10
    finally:
        fleet.close()


def test_recoveries_outrank_every_run_priority_on_both_brokers():
    from workers.celeryconfig import step_priority
    from workers.settings import Settings

    for url, first in (("redis://localhost:1/0", min), ("amqp://guest@localhost//", max)):
        s = Settings(broker_url=url)
        ranks = [step_priority(s, "normal", p) for p in range(10)]
        urgent = step_priority(s, "urgent", 9)
        assert first(ranks + [urgent]) == urgent and urgent not in ranks  # recoveries first, always
        assert first(ranks) == ranks[9] and ranks[9] != ranks[0]  # priority 9 before priority 0
        assert step_priority(s, "turn", 0) == step_priority(s, "normal", 6)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_priority_9_run_starts_within_a_second_behind_5000_queued_steps(broker, fast_env, tmp_path):
    """5,000 priority-0 steps queued on the broker, one worker taking them; `submit --priority 9` starts
    its run's first step within a second of its submission, ahead of every one still queued."""
    import uuid

    from checkpoint import runs
    from checkpoint.steps import Dispatch
    from tests.support.servers import AMQP_URL

    # The lost-dispatch backstop would re-send a backlog older than it, urgently (ahead of any priority):
    # this queue takes longer than fast_env's 3 s to drain.
    env = {**fast_env, "STEPLOG_REDISPATCH_SECONDS": "600"}
    if broker == "rabbitmq":
        env.update(STEPLOG_BROKER_URL=AMQP_URL, STEPLOG_QUEUE=f"steplog-flow-{uuid.uuid4().hex[:8]}")
    fleet = Fleet(env, tmp_path)
    try:
        with fleet.engine.begin() as conn:
            queued = [runs.create_in(conn, "countdown", {"steps": 1, "sleep": 0.0}, {"remaining": 1}, submitted_by="test")
                      for _ in range(5000)]
        if broker == "rabbitmq":
            fleet.start()  # declares the queue (RabbitMQ drops what is sent to no queue)
        for run_id in queued:
            fleet.app.steplog.publish(Dispatch(run_id, 2, "countdown", 0))
        if broker == "redis":
            fleet.start()
        def succeeded() -> int:
            with fleet.engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM runs WHERE status = 'succeeded'")).scalar_one()

        wait_for(lambda: succeeded() >= 100, timeout=120, what="the worker under way")
        done = cli(env, "submit", "countdown", "--input", '{"steps": 1}', "--priority", "9")
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip()
        assert fleet.wait_finished(run_id, timeout=60)["status"] == "succeeded"
        with fleet.engine.connect() as conn:
            behind = conn.execute(text("SELECT count(*) FROM runs r WHERE r.status <> 'succeeded' OR "
                                       "r.updated_at > (SELECT updated_at FROM runs WHERE run_id = :r)"),
                                  dict(r=run_id)).scalar_one()
            assert conn.execute(text("SELECT priority FROM runs WHERE run_id = :r"), dict(r=run_id)).scalar_one() == 9
        assert behind > 1000, "the priority-9 run did not overtake the queue"
        assert first_step_wait(fleet, run_id) < 1.0
    finally:
        fleet.close()
        if broker == "rabbitmq":
            from kombu import Connection

            with Connection(AMQP_URL) as conn:
                conn.default_channel.queue_delete(env["STEPLOG_QUEUE"])


def test_a_tool_rate_defers_steps_fleet_wide(fast_env, tmp_path):
    """`ping_api` allows 5 calls a second per text (Rate(5, 1.0, key="args.text")): 15 runs calling it on 2
    workers execute it at most 5 times in any second, each call once (a deferred step counted no
    attempt), and steps over the rate were deferred, not failed."""
    env = {**fast_env, "STEPLOG_WORKFLOW_MODULES": "tests.support.flow_agents", "STEPLOG_SWEEP_SECONDS": "0.1"}
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        fleet.start()
        runs = [fleet.submit("rated_tool", {"task": "go"}) for _ in range(15)]
        for run_id in runs:
            run = fleet.wait_finished(run_id, timeout=120)
            assert run["status"] == "succeeded", run["error"]
            assert_contiguous(fleet.events(run_id))
        with fleet.engine.connect() as conn:
            rows = conn.execute(text("SELECT started_at, attempts FROM tool_ledger WHERE tool = 'ping_api' "
                                     "ORDER BY started_at")).all()
        assert len(rows) == 15 and {r.attempts for r in rows} == {1}
        times = [r.started_at.timestamp() for r in rows]
        # (Postgres stamps the ledger a moment after Redis granted the call: 0.9 s of slack for that.)
        assert max(sum(1 for u in times if t <= u < t + 0.9) for t in times) <= 5
        assert sum("throttled (rate: tool ping_api text=x)" in w.log() for w in fleet.workers) >= 1
    finally:
        fleet.close()
