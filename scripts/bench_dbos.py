"""The peer: DBOS workflows of no-op steps on the same Postgres. Prints steps/s as JSON.

Usage: bench_dbos.py DATABASE_URL RUNS STEPS
"""

from __future__ import annotations

import json
import sys
import time

from dbos import DBOS, DBOSConfig


def main() -> None:
    url, n_runs, n_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config: DBOSConfig = {"name": "steplog-bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def countdown(steps: int) -> int:
        for i in range(steps):
            noop(i)
        return steps

    DBOS.launch()
    started = time.perf_counter()
    handles = [DBOS.start_workflow(countdown, n_steps) for _ in range(n_runs)]
    for h in handles:
        h.get_result()
    elapsed = time.perf_counter() - started
    DBOS.destroy()
    print(json.dumps({"steps_per_second": n_runs * n_steps / elapsed, "seconds": elapsed}))


if __name__ == "__main__":
    main()
