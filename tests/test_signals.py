"""Celery's signals are process-wide and every steplog app connects its handlers to them, so each
handler must act for its own app only: in a process with two apps and a worker of one of them, only
that app's runtime takes the worker's name, registers a liveness row and starts a sweeper."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import create_engine, text

from tests.support.harness import ROOT
from tests.support.two_apps import NODE


def _liveness_rows(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = list(conn.execute(text("SELECT worker FROM worker_procs")).scalars())
    engine.dispose()
    return rows


def test_a_worker_starts_liveness_and_a_sweeper_for_its_own_app_only(fast_env, new_database, tmp_path):
    # A process of its own, so that its apps and its one in-process worker are the only ones there.
    bystander = {**fast_env, "STEPLOG_DATABASE_URL": new_database(), "STEPLOG_HOME": str(tmp_path / "bystander")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.two_apps", json.dumps({"bystander": bystander, "worker": fast_env})],
        env=fast_env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["finished"], report
    # One liveness row, in the worker app's database; none in the bystander's ...
    assert _liveness_rows(fast_env["STEPLOG_DATABASE_URL"]) == [NODE]
    assert _liveness_rows(bystander["STEPLOG_DATABASE_URL"]) == []
    # ... one heartbeat and one sweeper in the process: the worker app's ...
    assert report["threads"] == ["steplog-heartbeat", "steplog-sweeper"], report
    # ... and the worker's name taken by its own app's runtime alone.
    assert report["node_names"]["worker"] == NODE
    assert report["node_names"]["bystander"].startswith("cli@"), report
