"""Durable steps per second against a bare Celery chain and DBOS, on the same Postgres and Redis.

(a) 40 concurrent `countdown` runs x 50 steps (sleep 0) on 2 `steplog worker` processes, -c 1 each
(b) a bare Celery hop chain of the same shape on 2 workers, stock Celery and kombu: what a plain
    Celery chain gets, the ceiling for a broker-hopping design on the stock stack
(b') the same chain on steplog's Redis transport (one client per channel): the ceiling at equal transport cost
(c) DBOS 40 x 50 no-op step workflows on the same Postgres (needs the `bench` extra)
(d) ms per step of one sequential 200-step run, median of 3

Usage: python scripts/bench_steps.py [--runs 40] [--steps 50] [--seq-steps 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from benchkit import ROOT, BenchFleet, median, scratch_database, scratch_redis, servers, worker_env


def durable(fleet: BenchFleet, runs: int, steps: int) -> float:
    started = time.perf_counter()
    ids = [fleet.submit("countdown", {"steps": steps, "sleep": 0}) for _ in range(runs)]
    fleet.wait_all(ids)
    return runs * steps / (time.perf_counter() - started)


def sequential_ms(fleet: BenchFleet, steps: int) -> float:
    started = time.perf_counter()
    fleet.wait_all([fleet.submit("countdown", {"steps": steps, "sleep": 0})])
    return (time.perf_counter() - started) * 1000 / steps


def bare_chain(broker: str, runs: int, steps: int, log_dir: Path, *, steplog_transport: bool = False) -> float:
    env = {**os.environ, "BENCH_BROKER_URL": broker, "BENCH_STEPLOG_TRANSPORT": "1" if steplog_transport else "0",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "celery", "-A", "scripts.bench_bare", "worker", "-P", "solo", "-c", "1",
           "--loglevel=WARNING", "--without-gossip", "--without-mingle", "-Q", "bare"]
    logs = [open(log_dir / f"bare{i}.log", "wb") for i in range(2)]
    procs = [subprocess.Popen([*cmd, "-n", f"bare{i}@bench"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True) for i, log in enumerate(logs)]
    try:
        from scripts.bench_bare import make_app

        app = make_app(broker, steplog_transport=steplog_transport)
        r = redis.Redis.from_url(broker)
        # warm up: both workers consuming before the clock starts
        r.delete("bench:done")
        for i in range(4):
            app.send_task("bench.hop", (10_000 + i, 1))
        while int(r.get("bench:done") or 0) < 4:
            time.sleep(0.01)
        r.delete("bench:done")
        started = time.perf_counter()
        for chain in range(runs):
            app.send_task("bench.hop", (chain, steps), task_id=f"{chain}:{steps}")
        while int(r.get("bench:done") or 0) < runs:
            time.sleep(0.005)
        rate = runs * steps / (time.perf_counter() - started)
        app.close()
        return rate
    finally:
        for p in procs:
            os.killpg(p.pid, 9)
            p.wait()
        for log in logs:
            log.close()


def dbos_rate(server_url: str, runs: int, steps: int) -> float | None:
    if importlib.util.find_spec("dbos") is None:
        print("(c) skipped: dbos is not installed (pip install -e '.[bench]')")
        return None
    with scratch_database(server_url, migrate=False) as url:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_dbos.py"), url, str(runs), str(steps)],
                             capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        print(f"(c) DBOS failed: {out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seq-steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    settings = servers()
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-"))
    print(f"Postgres {settings.database_url.split('@')[-1]}, broker {settings.broker_url}; logs in {log_dir}")

    with scratch_database(settings.database_url) as db:
        broker = scratch_redis(settings.broker_url, 14)
        fleet = BenchFleet(worker_env(db, broker, STEPLOG_QUEUE="bench"), log_dir)
        try:
            fleet.start(2, "--concurrency=1")
            fleet.wait_all([fleet.submit("countdown", {"steps": 5, "sleep": 0}) for _ in range(4)])  # warm up
            a = median([durable(fleet, args.runs, args.steps) for _ in range(args.repeats)])
            d = median([sequential_ms(fleet, args.seq_steps) for _ in range(args.repeats)])
        finally:
            fleet.close()
    b = median([bare_chain(scratch_redis(settings.broker_url, 15), args.runs, args.steps, log_dir) for _ in range(args.repeats)])
    redis_broker = settings.broker_url.startswith("redis://")
    b2 = median([bare_chain(scratch_redis(settings.broker_url, 15), args.runs, args.steps, log_dir, steplog_transport=True)
                 for _ in range(args.repeats)]) if redis_broker else None
    c = dbos_rate(settings.database_url, args.runs, args.steps)

    shape = f"{args.runs} runs x {args.steps} steps, 2 workers -c 1"
    rows = [
        ("(a) steplog durable steps", f"{a:8.1f} steps/s", shape),
        ("(b) bare Celery hop chain", f"{b:8.1f} steps/s", shape + ", no Postgres, stock kombu"),
        ("(b') same, steplog transport", f"{b2:8.1f} steps/s" if b2 else "   n/a", "one Redis client per channel"),
        ("(c) DBOS no-op steps", f"{c:8.1f} steps/s" if c else "   skipped", f"{args.runs} x {args.steps}, one process"),
        ("(d) sequential latency", f"{d:8.2f} ms/step", f"one {args.seq_steps}-step run, median of {args.repeats}"),
    ]
    print()
    print(f"{'measure':28} {'figure':>16}   shape")
    for name, fig, note in rows:
        print(f"{name:28} {fig:>16}   {note}")
    print()
    print(f"a/b = {a / b:.2f}   (target >= 0.6)")
    if b2:
        print(f"a/b' = {a / b2:.2f}  (durability's cost at equal transport; no target)")
    print(f"a/c = {a / c:.2f}   (target >= 1.3)" if c else "a/c = n/a")
    print(f"d   = {d:.2f} ms  (target <= 8)")


if __name__ == "__main__":
    main()
