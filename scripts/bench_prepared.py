"""What turning prepared statements off costs per step: the hot path's two statements (claim, commit)
run in this process, one step after another, on engines made with and without prepared statements.

Modes alternate within each round, and the table reports the median of per-round figures, so the
machine's drift hits every mode alike. `--pgbouncer-port P` adds a mode through a PgBouncer on P
(transaction mode, pointing at the same Postgres), where statements cannot be prepared.

    scripts/bench_prepared.py [--runs 20] [--steps 50] [--rounds 5] [--pgbouncer-port 6432]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import psutil
from benchkit import median, scratch_database, servers  # noqa: F401  (benchkit puts the repo on sys.path)
from sqlalchemy import text
from sqlalchemy.engine import make_url

from checkpoint import heartbeat, runs, steps
from checkpoint.db import make_engine
from checkpoint.steps import Worker


def _server_cpu(admin) -> float:
    """CPU seconds of the Postgres backends on the scratch database (this process's pools' and the
    pooler's server connections; the admin connection itself only runs this query)."""
    with admin.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND pid <> pg_backend_pid()")).scalars().all()
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _round(engine, admin, worker: Worker, n_runs: int, n_steps: int) -> tuple[float, float, float]:
    """Wall, client CPU and Postgres CPU milliseconds per step (claim + commit) over ``n_runs`` runs
    of ``n_steps`` steps."""
    run_ids = [runs.create(engine, "countdown", {"steps": n_steps}, {"left": n_steps}, submitted_by="bench")
               for _ in range(n_runs)]
    wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu(admin)
    for seq in range(runs.FIRST_STEP, runs.FIRST_STEP + n_steps):
        for run_id in run_ids:
            claim = steps.claim(engine, run_id, seq, worker, deadline=30, lease_seconds=30)
            assert claim is not None, (run_id, seq)
            status = steps.commit(engine, claim, worker, event_type="step", state={"left": n_steps - seq},
                                  payload={}, status="running")
            assert status == "running", status
    n = n_runs * n_steps
    return ((time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n,
            (_server_cpu(admin) - server) * 1000 / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pgbouncer-port", type=int, default=None)
    args = parser.parse_args()

    with scratch_database(servers().database_url) as url:
        modes = {"prepared": make_engine(url, prepared=True), "unprepared": make_engine(url, prepared=False)}
        if args.pgbouncer_port:
            bounced = make_url(url).set(host="127.0.0.1", port=args.pgbouncer_port).render_as_string(hide_password=False)
            modes["pgbouncer, unprepared"] = make_engine(bounced, prepared=False)
        admin = make_engine(url)
        worker = Worker(f"bench:{os.getpid()}:{uuid.uuid4().hex[:8]}", "bench@local", os.getpid())
        heartbeat.register(modes["prepared"], worker)
        for engine in modes.values():  # warm: connections open, statements prepared where they are
            _round(engine, admin, worker, 2, 3)
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modes}
        for i in range(args.rounds):
            order = list(modes) if i % 2 == 0 else list(reversed(modes))
            for name in order:
                figures[name].append(_round(modes[name], admin, worker, args.runs, args.steps))
        base_wall = [w for w, _, _ in figures["prepared"]]
        print(f"{args.rounds} rounds of {args.runs} runs x {args.steps} steps (claim + commit, in one process); "
              f"load: {os.getloadavg()[0]:.2f}")
        print(f"{'mode':<24} {'ms/step':>8} {'client cpu ms':>14} {'postgres cpu ms':>16} {'wall vs prepared':>17}")
        for name, rows in figures.items():
            ratio = median([w / b for (w, _, _), b in zip(rows, base_wall)])
            print(f"{name:<24} {median([r[0] for r in rows]):>8.3f} {median([r[1] for r in rows]):>14.3f} "
                  f"{median([r[2] for r in rows]):>16.3f} {ratio:>16.2f}x")
        for engine in (*modes.values(), admin):
            engine.dispose()


if __name__ == "__main__":
    main()
