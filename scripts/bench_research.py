"""Offline research runs on 2 workers: throughput, steps and wall time per run, and how much of the
workers' time is steplog's own overhead (checkpoint, ledger, dispatch, broker) rather than the
workflow's reasoning and tool work (measured inside the step function: `step_attempts.step_ms`).

Usage: python scripts/bench_research.py [--runs 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchkit import BenchFleet, median, scratch_database, scratch_redis, servers, worker_env
from checkpoint import runs
from tools.corpus import build_stdlib

QUESTIONS = [
    "how do I parse command-line options", "how to read a CSV file", "how to run a subprocess with a timeout",
    "how to compute a SHA-256 hash", "how to serialize objects to JSON", "how to match a regular expression",
    "how to create a temporary directory", "how to parse a date string", "how to compress a file with gzip",
    "how to make an HTTP request",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    settings = servers()
    with scratch_database(settings.database_url) as db:
        fleet = BenchFleet(worker_env(db, scratch_redis(settings.broker_url, 12), STEPLOG_QUEUE="bench-research"),
                           Path(tempfile.mkdtemp(prefix="steplog-research-")))
        try:
            build_stdlib(fleet.engine)
            fleet.start(args.workers)
            started = time.perf_counter()
            ids = [fleet.submit("research", {"question": QUESTIONS[i % len(QUESTIONS)]}) for i in range(args.runs)]
            fleet.wait_all(ids, timeout=900)
            wall = time.perf_counter() - started
            per_run, steps, work_ms, ok = [], [], 0.0, 0
            for r in ids:
                run, events = runs.get(fleet.engine, r), runs.events(fleet.engine, r)
                ok += run["status"] == "succeeded"
                per_run.append((events[-1]["created_at"] - events[0]["created_at"]).total_seconds())
                steps.append(len(events) - 1)
                work_ms += sum(a["step_ms"] or 0 for a in runs.attempts(fleet.engine, r) if a["outcome"] == "committed")
        finally:
            fleet.close()
    busy = wall * args.workers
    print(f"{args.runs} offline research runs on {args.workers} workers: {ok} succeeded")
    print(f"runs per minute           {args.runs / wall * 60:8.1f}")
    print(f"median steps per run      {median(steps):8.1f}")
    print(f"median wall time per run  {median(per_run):8.2f} s   (all runs queued at once)")
    print(f"reasoning + tool work     {work_ms / 1000 / busy:8.1%} of worker time")
    print(f"steplog overhead          {1 - work_ms / 1000 / busy:8.1%} of worker time (claim, commit, ledger, dispatch, broker, idle tail)")


if __name__ == "__main__":
    main()
