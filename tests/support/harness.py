"""Real `steplog worker` subprocesses for tests (start, find by the step they run, kill, wait), the runs
they work on, and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, text

from checkpoint import runs
from workers.fleet import ROOT, WorkerProc
from workers.local.procs import wait_until

__all__ = ["ROOT", "Fleet", "Runs", "assert_contiguous", "cli", "cli_json", "count_runs", "wait_for"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> T:
    """The first true value ``predicate`` returns; AssertionError naming ``what`` after ``timeout`` s."""
    seen: list[T] = []

    def check() -> T:
        value = predicate()
        if value:
            seen.append(value)
        return value

    if not wait_until(check, timeout, interval):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return seen[0]


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def count_runs(env: dict[str, str]) -> int:
    engine = create_engine(env["STEPLOG_DATABASE_URL"])
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
    engine.dispose()
    return n


def cli_json(env: dict[str, str], *args: str) -> Any:
    res = cli(env, *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


class Runs:
    """Runs submitted through a steplog app (in-process, as `steplog submit` does, to keep tests quick)
    and read back from its database: the app's own engine, or the test's."""

    def __init__(self, app: Any, engine: Engine | None = None) -> None:
        self._app = app
        self.engine = engine if engine is not None else app.steplog.engine

    @property
    def app(self) -> Any:
        return self._app

    def submit(self, workflow: str, input: dict[str, Any], *, publish: bool = True) -> str:
        """Create a run as `steplog submit` does."""
        return self.app.steplog.submit(workflow, input, submitted_by="test", precheck=False, publish=publish)

    def publish(self, run_id: str, seq: int, workflow: str = "countdown") -> None:
        from checkpoint.steps import Dispatch

        assert self.app.steplog.publish(Dispatch(run_id, seq, workflow))

    # -- reading the run back ------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        return runs.get(self.engine, run_id)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return runs.events(self.engine, run_id)

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return runs.attempts(self.engine, run_id)

    def in_flight(self, run_id: str, *, min_seq: int = 0) -> dict[str, Any] | None:
        f = runs.in_flight(self.engine, run_id)
        return f if f and f["seq"] >= min_seq else None

    def wait_finished(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        def done():
            run = self.run(run_id)
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(done, timeout=timeout, interval=0.1, what=f"run {run_id} to finish")


class Fleet(Runs):
    """The workers a test started; every one is killed at the end, by process group."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, host: str = "test") -> None:
        """``host``: the workers' node names are ``w1@host``, ...; on the shared RabbitMQ each node's
        control queue is exclusive, so a fleet there needs a host of its own (another suite's w1@test
        holds that queue, and a second w1@test dies at start with RESOURCE_LOCKED)."""
        # Read back as the workers connect: without prepared statements behind a transaction-mode pooler.
        prepared = env.get("STEPLOG_PREPARED_STATEMENTS", "true").lower() not in ("0", "false", "no", "off")
        super().__init__(None, create_engine(env["STEPLOG_DATABASE_URL"], pool_size=2,
                                             connect_args={} if prepared else {"prepare_threshold": None}))
        self.env, self.log_dir, self.host = env, log_dir, host
        self.workers: list[WorkerProc] = []
        self._count = 0

    def start(self, *extra: str, env: dict[str, str] | None = None, wait: bool = True) -> WorkerProc:
        self._count += 1
        w = WorkerProc(env or self.env, f"w{self._count}", self.log_dir, *extra, host=self.host)
        self.workers.append(w)
        if wait:
            self.wait_ready(w)
        return w

    def wait_ready(self, w: WorkerProc, timeout: float = 60) -> None:
        w.wait_ready(self.engine, timeout)

    @property
    def app(self) -> Any:
        """A steplog app of the fleet's settings in this process, to submit and publish through."""
        if self._app is None:
            from workers.app import create_app
            from workers.settings import settings_from_env

            self._app = create_app(settings_from_env(self.env))
        return self._app

    def by_node(self, node: str) -> WorkerProc:
        return next(w for w in self.workers if w.node == node)

    def kill_mid_step(self, victim: WorkerProc, run_ids: list[str], timeout: float = 60) -> tuple[str, int]:
        """SIGKILL ``victim`` while it holds a step of one of ``run_ids`` (frozen with SIGSTOP first, so the
        step cannot finish between the check and the kill); returns that (run_id, seq)."""

        def holding() -> tuple[str, int] | None:
            for run_id in run_ids:
                flight = self.in_flight(run_id)
                if flight and flight["worker"] == victim.node:
                    return run_id, flight["seq"]
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if holding() is None:
                time.sleep(0.02)
                continue
            victim.signal(signal.SIGSTOP)
            held = holding()
            if held is not None:
                victim.kill()
                return held
            victim.signal(signal.SIGCONT)  # it committed meanwhile: try again
        raise AssertionError(f"worker {victim.node} held no step of {run_ids} within {timeout}s")

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.engine.dispose()


def assert_contiguous(events: list[dict[str, Any]]) -> None:
    """Seq 1..N, each once: no gap, no duplicate."""
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"event seqs not contiguous: {seqs}"
