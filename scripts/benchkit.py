"""What every benchmark needs: servers (explicit URLs or the local services), a scratch database,
a scratch Redis database, and a fleet of real worker processes."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.fleet import WorkerProc  # noqa: E402
from workers.migrate import upgrade  # noqa: E402
from workers.settings import load_settings  # noqa: E402


def servers():
    """Settings with every URL resolved (starting the local services if no URL is set)."""
    return load_settings().resolved(start=True)


@contextmanager
def scratch_database(server_url: str, *, migrate: bool = True):
    """A fresh database on the same Postgres server, dropped afterwards."""
    name = f"steplog_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(server_url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scratch_redis(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url
    scratch = f"{base}/{db}"
    redis.Redis.from_url(scratch).flushdb()
    return scratch


def worker_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLOG_")}
    env.update(STEPLOG_DATABASE_URL=database_url, STEPLOG_BROKER_URL=broker_url, STEPLOG_LOG_LEVEL="WARNING")
    env.update(extra)
    return env


class BenchFleet:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.engine = create_engine(env["STEPLOG_DATABASE_URL"], pool_size=2)
        self.workers: list[WorkerProc] = []
        from workers.app import create_app
        from workers.settings import settings_from_env

        self.app = create_app(settings_from_env(env))

    def start(self, n: int, *extra: str, checkout: Path | None = None) -> None:
        """``n`` workers; ``checkout``: run another checkout's code (its directory comes first on the path)."""
        prefix = ["env", f"--chdir={checkout}"] if checkout else []
        for _ in range(n):
            w = WorkerProc(self.env, f"b{len(self.workers) + 1}", self.log_dir, *extra, host="bench", prefix=prefix)
            self.workers.append(w)
        for w in self.workers:
            w.wait_ready(self.engine)

    def wait_seen(self, n: int, timeout: float = 120) -> None:
        """Steady state: warm-up runs until ``n`` distinct workers have committed steps (a worker's
        liveness row says it started, not that it consumes; one worker alone can take any fixed
        number of warm-up runs)."""
        seen = text("SELECT count(DISTINCT a.worker) FROM step_attempts a WHERE a.run_id = ANY(:ids) AND a.outcome = 'committed'")
        ids: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            ids += [self.submit("countdown", {"steps": 5, "sleep": 0}) for _ in range(2 * n)]
            self.wait_all(ids, timeout=timeout)
            with self.engine.connect() as conn:
                if conn.execute(seen, {"ids": ids}).scalar_one() >= n:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} workers consumed warm-up steps within {timeout}s")

    def submit(self, workflow: str, data: dict) -> str:
        return self.app.steplog.submit(workflow, data, submitted_by="bench", precheck=False)

    def wait_all(self, run_ids: list[str], timeout: float = 600, interval: float = 0.02) -> None:
        # One query per poll for all runs: the measuring process must not load the Postgres it measures.
        deadline = time.monotonic() + timeout
        count = text("SELECT count(*) FROM runs WHERE run_id = ANY(:ids) AND status NOT IN ('succeeded', 'failed', 'cancelled')")
        while True:
            with self.engine.connect() as conn:
                pending = conn.execute(count, {"ids": list(run_ids)}).scalar_one()
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} runs unfinished after {timeout}s")
            time.sleep(interval)

    def check_runs(self, run_ids: list[str], steps: int) -> None:
        """Every run succeeded with all its events: `submitted` (seq 1) and one per step, no gap. A
        figure counted over runs that failed or lost events would flatter."""
        q = text("SELECT r.status, count(e.seq), min(e.seq), max(e.seq) FROM runs r LEFT JOIN events e USING (run_id) "
                 "WHERE r.run_id = ANY(:ids) GROUP BY r.run_id, r.status")
        with self.engine.connect() as conn:
            rows = conn.execute(q, {"ids": run_ids}).all()
        bad = [tuple(r) for r in rows if tuple(r) != ("succeeded", steps + 1, 1, steps + 1)]
        if len(rows) != len(run_ids) or bad:
            raise RuntimeError(f"{len(run_ids) - len(rows)} runs missing; not succeeded with all events: {bad[:5]}")

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.engine.dispose()


def median(values) -> float:
    return statistics.median(values)


def pct(values, q: float) -> float:
    """The q-th percentile (0-100) by nearest rank: a value that was measured, never an interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def empty_redis(broker_url: str, db: int) -> tuple[str, redis.Redis]:
    """Database ``db`` of the broker's Redis, which must be empty: a benchmark flushes it afterwards,
    so it must never share a database with anything else."""
    base = broker_url.rsplit("/", 1)[0] if broker_url.count("/") >= 3 else broker_url
    url = f"{base}/{db}"
    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"Redis database {url} is not empty; pick an empty one with --redis-db")
    return url, client
