#!/usr/bin/env python3
"""Flow control's figures (issue 16):

(a) what one concurrency check adds to a step: claim and commit of keyed runs against unkeyed ones, in
    this process on the hot path's own functions (ms per step, median of rounds, the two kinds taking
    turns; round trips per step, counted at the driver), and what a step turned away costs;
(b) how much of a requests-and-tokens limit a fleet uses: 4 workers, 100 agent runs (200 model calls)
    against a fake provider allowing 60 requests and 40,000 tokens per window (a minute compressed to
    --window seconds) and answering 429 past them;
(c) the wait of a small tenant behind a large one: limit 3 per tenant, 4 workers; tenant A submits 200
    one-step runs at once, tenant B one run every 0.5 s meanwhile; each run's submission to first step.

Uses Redis db --redis-db of STEPLOG_REDIS_URL's server (must be empty) and scratch databases.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.benchkit import BenchFleet, scratch_database, scratch_redis, servers, worker_env  # noqa: E402

QUEUE = "steplog-bench-limits"


def loadavg() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def part_a(db: str, rounds: int, steps: int) -> list[tuple[str, str]]:
    from checkpoint import runs, steps as st
    from checkpoint.steps import Worker
    from checkpoint.db import make_engine

    engine = make_engine(db, pool_size=2)
    me = Worker("bench:1:a", "bench@a", os.getpid())
    from checkpoint import heartbeat

    heartbeat.register(engine, me)

    # Round trips: every statement of the claim and the commit goes through checkpoint.db.one (the
    # driver, one call each); counting those calls counts the round trips.
    calls = [0]
    real_one = st.one

    def counted(*args, **kwargs):
        calls[0] += 1
        return real_one(*args, **kwargs)

    st.one = counted

    def run_steps(flow) -> tuple[float, float]:
        ids = [runs.create(engine, "countdown", {"steps": steps}, {"remaining": steps}, submitted_by="bench", flow=flow)
               for _ in range(10)]
        before, t0, n = calls[0], time.perf_counter(), 0
        for seq in range(2, 2 + steps):
            for run_id in ids:
                claim = st.claim(engine, run_id, seq, me, deadline=30, lease_seconds=5)
                assert claim is not None
                assert st.commit(engine, claim, me, event_type="step", state={"remaining": 1}, payload={}) == "running"
                n += 1
        elapsed = time.perf_counter() - t0
        return elapsed / n * 1000, (calls[0] - before) / n

    plain, keyed = [], []
    for _ in range(rounds):
        plain.append(run_steps(None))
        keyed.append(run_steps(("tenant=bench", 1000)))
    # A step turned away: the key full (limit 1, held by another run), a claim and the position read.
    holder = runs.create(engine, "countdown", {"steps": 5}, {"remaining": 5}, submitted_by="bench", flow=("tenant=full", 1))
    assert st.claim(engine, holder, 2, me, deadline=300, lease_seconds=300) is not None
    refused = []
    for _ in range(50):
        rid = runs.create(engine, "countdown", {"steps": 5}, {"remaining": 5}, submitted_by="bench", flow=("tenant=full", 1))
        t0 = time.perf_counter()
        assert st.claim(engine, rid, 2, me, deadline=30, lease_seconds=5) is None
        assert st.position(engine, rid, lease_seconds=5, seq=2).throttled
        refused.append((time.perf_counter() - t0) * 1000)
    st.one = real_one
    engine.dispose()
    ms_plain, ms_keyed = statistics.median(p[0] for p in plain), statistics.median(k[0] for k in keyed)
    rt_plain, rt_keyed = statistics.median(p[1] for p in plain), statistics.median(k[1] for k in keyed)
    return [
        ("(a) claim + commit, unkeyed run", f"{ms_plain:.2f} ms, {rt_plain:.2f} round trips"),
        ("(a) claim + commit, keyed run", f"{ms_keyed:.2f} ms, {rt_keyed:.2f} round trips"),
        ("(a) the concurrency check adds", f"{ms_keyed - ms_plain:+.2f} ms, {rt_keyed - rt_plain:+.2f} round trips"),
        ("(a) a step turned away (claim + read)", f"{statistics.median(refused):.2f} ms, 2 round trips"),
    ]


def _decide(request):
    from tests.support.fake_llm import text as say, tool_call

    usage = {"prompt_tokens": 0, "completion_tokens": 20, "total_tokens": 20}
    if any(m.get("role") == "tool" for m in request.messages):
        return say("noted [jot]", usage=usage)
    return tool_call("jot", {"text": "hello"}, usage=usage)


def part_b(settings, broker: str, log_dir: Path, window: float) -> list[tuple[str, str]]:
    from tests.support.fake_llm import FakeLLM

    with FakeLLM() as fake, scratch_database(settings.database_url) as db:
        fake.enforce(rpm=60, tpm=40_000, window=window).script(_decide)
        env = worker_env(db, broker, STEPLOG_QUEUE=QUEUE, STEPLOG_REDIS_URL=broker,
                         STEPLOG_WORKFLOW_MODULES="tests.support.flow_agents", STEPLOG_LLM_BASE_URL=fake.url,
                         STEPLOG_LLM_MODEL="fake-model", STEPLOG_LLM_RPM="60", STEPLOG_LLM_TPM="40000",
                         STEPLOG_RATE_WINDOW_SECONDS=str(window), STEPLOG_SWEEP_SECONDS="0.1")
        fleet = BenchFleet(env, log_dir)
        try:
            fleet.start(4, "--concurrency=1")
            ids = [fleet.app.steplog.submit("limited_llm", {"task": f"n{i}"}, submitted_by="bench", precheck=False, publish=False)
                   for i in range(100)]
            from checkpoint.steps import Dispatch

            for run_id in ids:
                fleet.app.steplog.publish(Dispatch(run_id, 2, "limited_llm"))
            fleet.wait_all(ids)
        finally:
            fleet.close()
        served = sorted(fake.served)
        start, end = served[0][0], served[-1][0]
        full = int((end - start) // window)
        reqs = [sum(1 for at, _ in served if start + k * window <= at < start + (k + 1) * window) for k in range(full)]
        toks = [sum(n for at, n in served if start + k * window <= at < start + (k + 1) * window) for k in range(full)]
        return [
            ("(b) model calls served / 429s", f"{len(served)} / {fake.rejected}"),
            ("(b) requests per full window", f"{statistics.mean(reqs):.1f} of 60 ({statistics.mean(reqs) / 60:.0%}), min {min(reqs)}"),
            ("(b) tokens per full window", f"{statistics.mean(toks):.0f} of 40000 ({statistics.mean(toks) / 40000:.0%})"),
        ]


def part_c(settings, broker: str, log_dir: Path) -> list[tuple[str, str]]:
    with scratch_database(settings.database_url) as db:
        env = worker_env(db, broker, STEPLOG_QUEUE=QUEUE, STEPLOG_REDIS_URL=broker,
                         STEPLOG_CONCURRENCY=json.dumps({"countdown": {"key": "input.tenant", "limit": 3}}))
        fleet = BenchFleet(env, log_dir)
        try:
            fleet.start(4, "--concurrency=1")
            a = [fleet.submit("countdown", {"steps": 1, "sleep": 0.2, "tenant": "A"}) for _ in range(200)]
            b = []
            for _ in range(20):
                b.append(fleet.submit("countdown", {"steps": 1, "sleep": 0.2, "tenant": "B"}))
                time.sleep(0.5)
            fleet.wait_all(a + b)
            waits = {}
            with fleet.engine.connect() as conn:
                for tenant, ids in (("A", a), ("B", b)):
                    waits[tenant] = [row[0] for row in conn.execute(text(
                        "SELECT extract(epoch FROM min(s.started_at) - r.created_at) FROM runs r "
                        "JOIN step_attempts s USING (run_id) WHERE r.run_id = ANY(:ids) GROUP BY r.run_id, r.created_at"),
                        dict(ids=ids))]
        finally:
            fleet.close()
    return [
        ("(c) B (20 runs) submission to first step", f"p50 {statistics.median(waits['B']) * 1000:.0f} ms, p95 {p95(waits['B']) * 1000:.0f} ms"),
        ("(c) A (200 runs, limit 3) the same", f"p50 {statistics.median(waits['A']):.1f} s, p95 {p95(waits['A']):.1f} s"),
        ("(c) one step's duration", "200 ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-db", type=int, default=0, help="Redis database of the server (must be empty)")
    parser.add_argument("--window", type=float, default=8.0, help="the compressed minute of part (b), seconds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = servers()
    broker = scratch_redis(settings.redis_url, args.redis_db)
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-limits-"))
    print(f"Postgres {settings.database_url.split('@')[-1]}, Redis {broker}; logs in {log_dir}; "
          f"{os.cpu_count()} cores, {loadavg()}", flush=True)
    began, rows = time.monotonic(), []
    with scratch_database(settings.database_url) as db:
        rows += part_a(db, args.rounds, 20)
    print("(a) done", flush=True)
    rows += part_b(settings, broker, log_dir, args.window)
    print("(b) done", flush=True)
    redis.Redis.from_url(broker).flushdb()
    rows += part_c(settings, broker, log_dir)
    redis.Redis.from_url(broker).flushdb()
    print(f"\nsteplog flow control, {time.monotonic() - began:.0f} s; {loadavg()} (2-core machine shared with others' work)")
    print(f"{'measure':44} figure")
    for measure, figure in rows:
        print(f"{measure:44} {figure}")


if __name__ == "__main__":
    main()
