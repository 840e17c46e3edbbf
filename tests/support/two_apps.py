"""Two steplog apps in one process and one in-process worker, of the second: what each runtime did.

``python -m tests.support.two_apps '{"bystander": ENV, "worker": ENV}'`` builds an app on each
environment (the bystander first), runs a Celery worker thread of the ``worker`` app through one
countdown run, and prints a JSON report: the run, the node name each runtime took, and the steplog
threads alive while the worker ran. The liveness rows are in each app's database for the caller to read.
"""

from __future__ import annotations

import json
import sys
import threading

from celery.contrib.testing.worker import start_worker

from checkpoint import runs
from tests.support.inprocess import StepWorker
from workers.app import create_app
from workers.local.procs import wait_until
from workers.settings import settings_from_env

NODE = "solo@two-apps"


def main(argv: list[str]) -> int:
    envs = json.loads(argv[1])
    bystander = create_app(settings_from_env(envs["bystander"]))
    app = create_app(settings_from_env(envs["worker"]))
    with start_worker(app, pool="solo", hostname=NODE, WorkController=StepWorker, perform_ping_check=False):
        run_id = app.steplog.submit("countdown", {"steps": 2, "sleep": 0}, submitted_by="two-apps", precheck=False)
        finished = wait_until(lambda: runs.get(app.steplog.engine, run_id)["status"] == "succeeded", 30)
        threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("steplog-"))
    print(json.dumps({
        "run_id": run_id,
        "finished": finished,
        "node_names": {"worker": app.steplog.node_name, "bystander": bystander.steplog.node_name},
        "threads": threads,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
