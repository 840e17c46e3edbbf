"""A Postgres restart mid-run, on a Postgres the test owns: the project's own embedded server under a
temporary home on a free port, restarted in fast mode while two real workers step countdown runs.

The redispatch backstop is pushed to 120 s (and kombu's redelivery to an hour), so a run that goes on
within seconds of the restart owes it to the product's own paths: the step task's retry while
Postgres is away, lease hand-backs retried by the heartbeat, and the sweeper's lost-lease sweep.
The time from the server accepting connections again (seen by a client polling every 10 ms, on this
host's clock) to the first step committed after it (the event's ``created_at``, Postgres's clock on
the same host) is printed; ``scripts/bench_recovery.py --pg-restarts N`` reports its median and max.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, assert_contiguous, wait_for
from workers.local.servers import LocalServices
from workers.migrate import upgrade

pytestmark = [pytest.mark.services, pytest.mark.slow]

BACKSTOP = 120.0  # STEPLOG_REDISPATCH_SECONDS in this test


@pytest.fixture
def own_postgres() -> Iterator[tuple[LocalServices, str]]:
    # Not pytest's tmp_path: see tests/test_services.py (the server's user must reach the data directory).
    home = Path(tempfile.mkdtemp(prefix="steplog-pgrestart-test-"))
    services = LocalServices(home)
    try:
        url = services.up(["postgres"]).database_url
        upgrade(url)
        yield services, url
    finally:
        services.down()
        shutil.rmtree(home, ignore_errors=True)


def test_a_postgres_restart_mid_run_is_ridden_out_and_steps_commit_again_within_seconds(
    own_postgres: tuple[LocalServices, str], fast_env: dict[str, str], tmp_path: Path
) -> None:
    services, url = own_postgres
    env = {**fast_env, "STEPLOG_DATABASE_URL": url, "STEPLOG_REDISPATCH_SECONDS": str(BACKSTOP),
           "STEPLOG_VISIBILITY_TIMEOUT": "3600"}
    fleet = Fleet(env, tmp_path / "fleet")
    try:
        workers = [fleet.start(), fleet.start()]
        run_ids = [fleet.submit("countdown", {"steps": 12, "sleep": 0.2}) for _ in range(6)]
        wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) >= 18, what="runs to progress")
        server = psutil.Process(services.status()["postgres"]["pid"])

        ready_at = services.restart_postgres()

        assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE  # a new postmaster serves
        assert services.status()["postgres"]["pid"] != server.pid
        fleet.engine.dispose()  # the test's own pooled connections died with the old server
        with fleet.engine.connect() as conn:
            unfinished = conn.execute(text(
                "SELECT count(*) FROM runs WHERE run_id = ANY(:ids) AND status NOT IN ('succeeded', 'failed')"
            ), {"ids": run_ids}).scalar_one()
        assert unfinished == len(run_ids)  # the restart came mid-run for every run

        finished = {r: fleet.wait_finished(r, timeout=BACKSTOP / 2) for r in run_ids}
        next_event = []
        for run_id, run in finished.items():
            assert run["status"] == "succeeded" and run["result"] == {"steps_run": 12}
            events = fleet.events(run_id)
            assert_contiguous(events)
            assert len(events) == 13
            next_event.append(min(e["created_at"].timestamp() for e in events if e["created_at"].timestamp() > ready_at))
        with fleet.engine.connect() as conn:
            twice = conn.execute(text(
                "SELECT count(*) FROM (SELECT run_id, seq FROM step_attempts WHERE run_id = ANY(:ids) "
                "AND outcome = 'committed' GROUP BY run_id, seq HAVING count(*) > 1) d"), {"ids": run_ids}).scalar_one()
        assert twice == 0  # no step committed twice

        first, last = min(next_event) - ready_at, max(next_event) - ready_at
        print(f"Postgres accepting connections again to the first step committed: {first:.2f} s; "
              f"to every run's next event: {last:.2f} s")
        # Only the product's own recovery paths can explain these, not the backstop (120 s): on a loaded
        # 2-core machine the bound is loose, the figure is what the bench reports.
        assert first < BACKSTOP / 4, first
        assert last < BACKSTOP / 2, last
        # (The restart itself is proven above: a new postmaster. A fast restart can fall between two
        # heartbeats, so the workers' logs need not show it.)
        assert all(w.alive() for w in workers)
    finally:
        fleet.close()


def test_chaos_restarts_the_postgres_it_runs_and_the_invariants_hold(
    own_postgres: tuple[LocalServices, str], fast_env: dict[str, str], tmp_path: Path
) -> None:
    import json

    from tests.test_watch_chaos import steplog
    from workers.cli import chaos_procs

    services, url = own_postgres
    # STEPLOG_HOME names the services' home: chaos may restart that Postgres, and only that one.
    env = {**fast_env, "STEPLOG_DATABASE_URL": url, "STEPLOG_HOME": str(services.home)}
    fleet = Fleet(env, tmp_path / "fleet")
    try:
        fleet.start()
        fleet.start()
        run_ids = [fleet.submit("countdown", {"steps": 12, "sleep": 0.2}) for _ in range(4)]
        wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) > 6, what="runs to progress")
        server = services.status()["postgres"]["pid"]
        try:
            res = steplog(env, "chaos", "--faults", "pg-restart,kill", "--every", "1.5", "--duration", "3",
                          "--restart", "--json")
        finally:
            for target in chaos_procs.find_workers(url):  # the restarted worker
                if target.pid not in {w.pid for w in fleet.workers}:
                    chaos_procs.kill(target)
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        restart, kill = summary["faults"]
        assert (restart["fault"], kill["fault"]) == ("pg-restart", "kill")
        assert services.status()["postgres"]["pid"] != server  # it did restart
        assert restart["first_commit_seconds"] is not None and restart["first_commit_seconds"] < BACKSTOP / 4
        assert "first step committed" in res.stderr and "restarted Postgres (fast mode" in res.stderr
        assert summary["invariants"]["ok"] and summary["invariants"]["runs"] == 4
        assert "invariants held: 4 of 4 runs complete, no gap, no duplicate" in res.stderr
        fleet.engine.dispose()
        for run_id in run_ids:
            assert fleet.run(run_id)["status"] == "succeeded"
            assert_contiguous(fleet.events(run_id))
    finally:
        fleet.close()
