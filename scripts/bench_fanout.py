"""Fan-out: join time, Postgres statements per child, and the parent's checkpoint against N.

On a Postgres of its own (started under a temporary home, with pg_stat_statements preloaded) and two
`steplog worker` processes (-c 1 each), Redis db 0 of the given Redis:
(a) a `fanout` run of 1,000 no-op children (all dispatched at once) and its join: time from the Map's
    commit (its `waiting` event) to the join firing (the `joined` event, in the last child's commit)
    and to the join step's commit; target under 5 s
(b) Postgres statements per child over (a), from pg_stat_statements: all statements of the run's
    window divided by the children, and without the fleet's background (heartbeats, sweeps); target <= 3
(c) 10,000 children: the parent's checkpoint (largest state and payload of its events, in bytes) against
    10 children (target: the same), and the join time

Usage: python scripts/bench_fanout.py [--redis redis://localhost:6379] [--children 1000] [--big 10000]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy import text

from benchkit import BenchFleet, scratch_database, scratch_redis, worker_env

BACKGROUND = ("heartbeat", "sweep", "wake_due", "due_schedules", "worker_procs", "broker_epoch", "pg_stat_statements",
              "bench-poll")


def own_postgres(home: Path):
    """A Postgres of this benchmark's own, with pg_stat_statements preloaded (a restart after initdb)."""
    from workers.local.servers import LocalServices

    services = LocalServices(home)
    url = services.up(["postgres"]).database_url
    conf = services.pgdata / "postgresql.auto.conf"
    conf.write_text(conf.read_text() + "\nshared_preload_libraries = 'pg_stat_statements'\n"
                    "pg_stat_statements.track = 'top'\npg_stat_statements.track_utility = on\n")
    services.restart_postgres()
    return services, url


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def timings(fleet: BenchFleet, run_id: str) -> tuple[float, float]:
    """Seconds from the Map's commit to the `joined` event, and to the join step's commit."""
    with fleet.engine.connect() as conn:
        at = dict(conn.execute(text("SELECT type, created_at FROM events WHERE run_id = :r"), dict(r=run_id)).all())
    return ((at["joined"] - at["waiting"]).total_seconds(), (at["succeeded"] - at["waiting"]).total_seconds())


def checkpoint_bytes(fleet: BenchFleet, run_id: str) -> tuple[int, int]:
    """The parent's largest event state and payload (bytes, as stored)."""
    with fleet.engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT max(pg_column_size(state)), max(pg_column_size(payload)) FROM events WHERE run_id = :r "
            "AND type <> 'succeeded'"), dict(r=run_id)).one())


def fan(fleet: BenchFleet, db: str, n: int, timeout: float = 1800) -> str:
    """Submit a `fanout` of ``n`` no-op children and wait for it, polling on one autocommit connection
    every 50 ms with a statement (bench-poll) that the statement count leaves out."""
    run_id = fleet.submit("fanout", {"children": n, "sleep": 0})
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq(db), autocommit=True) as conn:
        while (status := conn.execute("SELECT status /* bench-poll */ FROM runs WHERE run_id = %s",
                                      (run_id,)).fetchone()[0]) not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"fan-out run {run_id} unfinished after {timeout} s"
            time.sleep(0.05)
    assert status == "succeeded", f"fan-out run {run_id} ended {status}"
    return run_id


def statements(url: str) -> tuple[int, int, list[tuple[int, str]]]:
    """(all calls, calls without the background, the top statements) since the last reset."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        rows = conn.execute("SELECT calls, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                            "WHERE d.datname = current_database() ORDER BY calls DESC").fetchall()
    rows = [(c, q) for c, q in rows if "bench-poll" not in q and "pg_stat_statements" not in q]  # the bench's own
    total = sum(c for c, _ in rows)
    foreground = sum(c for c, q in rows if not any(b in q.lower() for b in BACKGROUND))
    return total, foreground, rows[:8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default="redis://localhost:6379", help="Redis whose db 0 the fleet uses")
    ap.add_argument("--children", type=int, default=1000)
    ap.add_argument("--big", type=int, default=10_000)
    args = ap.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-fanout-"))
    services, server = own_postgres(Path(tempfile.mkdtemp(prefix="steplog-bench-pg-")))
    print(f"own Postgres {server.split('@')[-1]} (pg_stat_statements), Redis {args.redis}/0; logs in {log_dir}")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    try:
        with scratch_database(server) as db:
            with psycopg.connect(libpq(db), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            broker = scratch_redis(args.redis, 0)
            fleet = BenchFleet(worker_env(db, broker, STEPLOG_QUEUE="bench-fanout"), log_dir)
            try:
                fleet.start(2, "--concurrency=1")
                fan(fleet, db, 20)  # warm up
                small = fan(fleet, db, 10)
                with psycopg.connect(libpq(db), autocommit=True) as conn:
                    conn.execute("SELECT pg_stat_statements_reset()")
                started = time.perf_counter()
                run_a = fan(fleet, db, args.children)
                wall = time.perf_counter() - started
                total, foreground, top = statements(db)
                joined_a, done_a = timings(fleet, run_a)
                big = fan(fleet, db, args.big)
                joined_big, done_big = timings(fleet, big)
                small_bytes, big_bytes = checkpoint_bytes(fleet, small), checkpoint_bytes(fleet, big)
            finally:
                fleet.close()
    finally:
        services.down()

    n = args.children
    rows = [
        (f"(a) {n} no-op children: Map commit -> join fired", f"{joined_a:8.2f} s", "target < 5 s"),
        ("    Map commit -> join step committed", f"{done_a:8.2f} s", f"whole run {wall:.2f} s from submit"),
        ("(b) Postgres statements per child, all", f"{total / n:8.2f}", f"{total} statements in the window"),
        ("    without heartbeats and sweeps", f"{foreground / n:8.2f}", "target <= 3 (BEGIN/COMMIT counted)"),
        ("(c) parent checkpoint, 10 children", f"{small_bytes[0]:5d} B", f"largest event payload {small_bytes[1]} B"),
        (f"    parent checkpoint, {args.big} children", f"{big_bytes[0]:5d} B", f"largest event payload {big_bytes[1]} B"),
        (f"    {args.big} children: Map commit -> join fired", f"{joined_big:8.2f} s", f"join step committed {done_big:.2f} s"),
    ]
    print()
    print(f"{'measure':52} {'figure':>10}   note")
    for name, fig, note in rows:
        print(f"{name:52} {fig:>10}   {note}")
    print()
    print("most frequent statements in (a):")
    for calls, query in top:
        print(f"  {calls:7d}  {' '.join(query.split())[:110]}")
    print(f"\nload: {load}")


if __name__ == "__main__":
    main()
