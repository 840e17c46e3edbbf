"""Durable steps per second against a bare Celery chain and DBOS, on the same Postgres and Redis.

(a)  40 concurrent `countdown` runs x 50 steps (sleep 0) on 2 `steplog worker` processes, -c 1 each
(b)  a bare Celery hop chain of the same shape on 2 workers, stock Celery and kombu: what a plain
     Celery chain gets, the ceiling for a broker-hopping design on the stock stack
(b') the same chain on steplog's Redis transport (one client per channel), its next hop's `task-sent`
     event sent with the worker's buffered task events as steplog does: the ceiling at equal transport
(a1) (a) on one `steplog worker`, -c 1: one process, DBOS's shape
(c)  DBOS 40 x 50 no-op step workflows on the same Postgres, one process (needs the `bench` extra)
(d)  ms per step of one sequential 200-step run, median of the rounds
(a0) with --baseline DIR: (a) on the code of another checkout (say, before a change), in the same rounds

Method, because this machine drifts by +-20% within minutes: each round measures (a), (b), (b'), (a1)
and (c) one after another, each on workers started for it and warmed up until every one of them has
been seen consuming (steady state; the others stopped), in an order that rotates from round to round.
Ratios are computed within a round and the median of the per-round ratios is reported. Task events
are on for Flower in every Celery figure. A measurement counts only if every run succeeded with all
its events (a) or every chain reached its last hop (b); each has a deadline.

Usage: python scripts/bench_steps.py [--runs 40] [--steps 50] [--rounds 3] [--seq-steps 200] [--only a,b]
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
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psutil
import redis

from benchkit import ROOT, BenchFleet, loadavg, median, scratch_database, scratch_redis, servers, worker_env

CPU_US: dict[str, list[float]] = defaultdict(list)  # worker CPU microseconds per step, per measure
DEADLINE = 600.0  # seconds any one measurement may take before it is reported as failed
ALL = ("a", "b", "b'", "a1", "c", "a0")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their children (a worker and its pool)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def steplog_rate(db: str, broker: str, log_dir: Path, runs: int, steps: int, workers: int,
                 seq_steps: int = 0, checkout: Path | None = None) -> tuple[float, float | None]:
    """(a) on ``workers`` fresh steplog workers: steps/s, and (d) ms per step if ``seq_steps``."""
    fleet = BenchFleet(worker_env(db, broker, STEPLOG_QUEUE="bench"), log_dir)
    try:
        fleet.start(workers, "--concurrency=1", checkout=checkout)
        fleet.wait_seen(workers)
        cpu = cpu_seconds([w.pid for w in fleet.workers])
        started = time.perf_counter()
        ids = [fleet.submit("countdown", {"steps": steps, "sleep": 0}) for _ in range(runs)]
        fleet.wait_all(ids, timeout=DEADLINE)
        rate = runs * steps / (time.perf_counter() - started)
        CPU_US[f"a{workers}" if checkout is None else "a0"].append(
            (cpu_seconds([w.pid for w in fleet.workers]) - cpu) * 1e6 / (runs * steps))
        fleet.check_runs(ids, steps)
        seq = None
        if seq_steps:
            started = time.perf_counter()
            run = [fleet.submit("countdown", {"steps": seq_steps, "sleep": 0})]
            fleet.wait_all(run, timeout=DEADLINE)
            seq = (time.perf_counter() - started) * 1000 / seq_steps
            fleet.check_runs(run, seq_steps)
        return rate, seq
    finally:
        fleet.close()


def bare_rate(broker: str, log_dir: Path, runs: int, steps: int, *, steplog_transport: bool = False) -> float:
    env = {**os.environ, "BENCH_BROKER_URL": broker, "BENCH_STEPLOG_TRANSPORT": "1" if steplog_transport else "0",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "celery", "-A", "scripts.bench_bare", "worker", "-P", "solo", "-c", "1",
           "--loglevel=WARNING", "--without-gossip", "--without-mingle", "-Q", "bare"]
    logs = [open(log_dir / f"bare{i}.log", "wb") for i in range(2)]
    names = [f"bare{i}@bench" for i in range(2)]
    procs = [subprocess.Popen([*cmd, "-n", name], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True) for name, log in zip(names, logs)]
    try:
        from scripts.bench_bare import make_app

        app = make_app(broker, steplog_transport=steplog_transport)
        r = redis.Redis.from_url(broker)
        r.delete("bench:done", "bench:seen")
        # Steady state: one-hop tasks until both workers have been seen taking one (one worker
        # alone can take any fixed number of them).
        deadline = time.monotonic() + 120
        while r.scard("bench:seen") < len(names):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"bare workers not both consuming; seen {r.smembers('bench:seen')}; logs in {log_dir}")
            app.send_task("bench.hop", (-1, 1))
            time.sleep(0.05)
        time.sleep(0.2)  # let the warm-up hops drain
        cpu = cpu_seconds([p.pid for p in procs])
        started = time.perf_counter()
        for chain in range(runs):
            app.send_task("bench.hop", (chain, steps), task_id=f"{chain}:{steps}")
        deadline = time.monotonic() + DEADLINE
        while r.scard("bench:done") < runs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare chain: {r.scard('bench:done')} of {runs} chains done after {DEADLINE:.0f}s")
            time.sleep(0.005)
        rate = runs * steps / (time.perf_counter() - started)
        CPU_US["b'" if steplog_transport else "b"].append((cpu_seconds([p.pid for p in procs]) - cpu) * 1e6 / (runs * steps))
        done = {int(c) for c in r.smembers("bench:done")}
        if done != set(range(runs)):
            raise RuntimeError(f"bare chain: chains done {sorted(done)[:10]}..., expected 0..{runs - 1}")
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
        return None
    with scratch_database(server_url, migrate=False) as url:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_dbos.py"), url, str(runs), str(steps)],
                             capture_output=True, text=True, timeout=DEADLINE)
    if out.returncode != 0:
        raise RuntimeError(f"DBOS failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq-steps", type=int, default=200, help="(d)'s run length; 0 skips (d)")
    ap.add_argument("--only", default=",".join(ALL[:-1]), help=f"which of {','.join(ALL)} to measure")
    ap.add_argument("--baseline", type=Path, help="a checkout whose steplog (a0) to measure beside this one")
    args = ap.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    if args.baseline and "a0" not in only:
        only.append("a0")
    if "a0" in only and not args.baseline:
        ap.error("a0 needs --baseline DIR")
    if unknown := set(only) - set(ALL):
        ap.error(f"--only: unknown measure(s) {sorted(unknown)}; choose from {','.join(ALL)}")
    if "c" in only and importlib.util.find_spec("dbos") is None:
        print("(c) skipped: dbos is not installed (pip install -e '.[bench]')")
        only.remove("c")
    settings = servers()
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-"))
    redis_broker = settings.broker_url.startswith("redis://")
    if "b'" in only and not redis_broker:
        only.remove("b'")
    print(f"Postgres {settings.database_url.split('@')[-1]}, broker {settings.broker_url}; logs in {log_dir}")
    print(f"{args.runs} runs x {args.steps} steps, {args.rounds} rounds; before: {loadavg()} on {os.cpu_count()} cores")

    seq: list[float] = []
    results: list[dict[str, float]] = []
    with scratch_database(settings.database_url) as db:
        measures: dict[str, Callable[[int], float]] = {}

        def a(workers: int, with_seq: bool, checkout: Path | None = None) -> float:
            rate, d = steplog_rate(db, scratch_redis(settings.broker_url, 14), log_dir, args.runs, args.steps, workers,
                                   args.seq_steps if with_seq else 0, checkout)
            if d is not None:
                seq.append(d)
            return rate

        measures["a"] = lambda rnd: a(2, True)
        measures["a1"] = lambda rnd: a(1, False)
        measures["a0"] = lambda rnd: a(2, False, args.baseline)
        measures["b"] = lambda rnd: bare_rate(scratch_redis(settings.broker_url, 15), log_dir, args.runs, args.steps)
        measures["b'"] = lambda rnd: bare_rate(scratch_redis(settings.broker_url, 15), log_dir, args.runs, args.steps,
                                               steplog_transport=True)
        measures["c"] = lambda rnd: dbos_rate(settings.database_url, args.runs, args.steps)
        for rnd in range(args.rounds):
            order = only[rnd % len(only):] + only[:rnd % len(only)]  # rotate: no measure always runs first
            figures = {m: measures[m](rnd) for m in order}
            results.append(figures)
            print(f"round {rnd + 1}: " + "  ".join(f"{m}={figures[m]:.1f}" for m in only) + f"   {loadavg()}")

    def col(m: str) -> str:
        return f"{median([r[m] for r in results]):8.1f} steps/s" if m in only else "       -"

    def ratio(x: str, y: str) -> str:
        if x not in only or y not in only:
            return "n/a"
        per_round = [r[x] / r[y] for r in results]
        return f"{median(per_round):.2f} (rounds: {', '.join(f'{v:.2f}' for v in per_round)})"

    shape = f"{args.runs} runs x {args.steps} steps"
    rows = [
        ("(a) steplog durable steps", col("a"), shape + ", 2 workers -c 1"),
        ("(b) bare Celery hop chain", col("b"), shape + ", 2 workers, no Postgres, stock kombu"),
        ("(b') same, steplog transport", col("b'"), "one Redis client per channel, task-sent batched"),
        ("(a1) steplog, one worker", col("a1"), shape + ", 1 worker -c 1"),
        ("(c) DBOS no-op steps", col("c"), shape + ", one process"),
        ("(a0) baseline checkout", col("a0"), f"{args.baseline}, as (a)"),
        ("(d) sequential latency", f"{median(seq):8.2f} ms/step" if seq else "       -",
         f"one {args.seq_steps}-step run, 2 workers"),
    ]
    print()
    print(f"medians of {args.rounds} rounds; ratios: median of the per-round ratios")
    print(f"{'measure':30} {'figure':>16}   shape")
    for name, fig, note in rows:
        print(f"{name:30} {fig:>16}   {note}")
    cpu = {"a2": "(a)", "b": "(b)", "b'": "(b')", "a1": "(a1)", "a0": "(a0)"}
    print("worker CPU per step (median): " + ", ".join(
        f"{label} {median(CPU_US[k]):.0f} us" for k, label in cpu.items() if CPU_US.get(k)))
    print()
    print(f"a/b   = {ratio('a', 'b')}   (target >= 0.6)")
    print(f"a/b'  = {ratio('a', 'b' + chr(39))}   (durability's cost at equal transport; no target)")
    print(f"a1/c  = {ratio('a1', 'c')}   (one process each; target >= 1.3)")
    if "a0" in only:
        print(f"a/a0  = {ratio('a', 'a0')}   (this checkout against the baseline)   a0/b = {ratio('a0', 'b')}")
    if seq:
        print(f"d     = {median(seq):.2f} ms  (target <= 8)")
    print(f"after: {loadavg()}")


if __name__ == "__main__":
    main()
