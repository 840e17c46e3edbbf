"""What the tool ledger costs: a trivial read tool called directly vs. through the ledgered runtime.

Creates a scratch database on the Postgres of STEPLOG_DATABASE_URL (default: local), migrates it,
runs N first ledgered calls (each: begin_call committed, the tool, finish_call inside an open
transaction as the step commit would run it) and N replays (new runtime, same run/seq/input: answered
from the ledger), prints median microseconds per call, then drops the database.

What "first call" times: the ledger's work for a key not seen before, up to the step's commit. The
commit of the transaction the result joins is not timed (the step pays it anyway, ledger or not), and
Postgres's cache is warm (the same small table, over and over): a first call's cost on a cold server,
with the commit's fsync, is higher.

    .venv/bin/python scripts/bench_tools.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tools.config import ToolConfig
from tools.declaration import Effect, ToolContext, tool
from tools.registry import ToolRegistry
from tools.runtime import ToolRuntime
from workers.migrate import upgrade


class In(BaseModel):
    i: int


class Out(BaseModel):
    doubled: int


@tool("double", "1", Effect.READ)
def double(ctx: ToolContext, args: In) -> Out:
    """A trivial read tool."""
    return Out(doubled=args.i * 2)


def _median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    n = parser.parse_args().calls
    base = os.environ.get("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
    name = f"steplog_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = create_engine(url, pool_size=2)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (run_id, workflow, input) VALUES ('bench', 'bench', '{}')"))
        registry = ToolRegistry([double])
        config = ToolConfig()
        ctx = ToolContext("k", "bench", 2, 1, engine, config)

        direct = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            In.model_validate({"i": i})
            double.fn(ctx, In(i=i))
            direct.append(time.perf_counter_ns() - t0)

        def ledgered() -> list[int]:
            samples = []
            for i in range(n):
                rt = ToolRuntime(engine, registry, config, run_id="bench", seq=2 + i, owner="bench", worker="bench")
                with engine.begin() as conn:  # the step's commit transaction (its own cost not counted)
                    conn.execute(text("SELECT 1"))
                    t0 = time.perf_counter_ns()
                    out = rt.call("double", {"i": i})
                    out.record(conn)
                    samples.append(time.perf_counter_ns() - t0)
                assert out.ok and out.result == {"doubled": 2 * i}
            return samples

        fresh = ledgered()
        replay = ledgered()
        with engine.connect() as conn:
            replays = conn.execute(text("SELECT sum(replays) FROM tool_ledger")).scalar()
        assert replays == n, f"expected {n} replays, ledger counted {replays}"
        engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    d, f, r = _median_us(direct), _median_us(fresh), _median_us(replay)
    print(f"calls per series:                               {n}")
    print(f"direct call (median):                           {d:9.1f} us")
    print(f"first call, commit untimed, warm cache (median): {f:9.1f} us   ledger adds {f - d:8.1f} us  ({f / d:.0f}x direct)")
    print(f"replayed (median):                              {r:9.1f} us   ledger adds {r - d:8.1f} us  ({r / f:.2f} of a first call)")
    print(f"target: replay < first call: {'yes' if r < f else 'NO'}; first-call overhead < 3 ms: {'yes' if f - d < 3000 else 'NO'}")


if __name__ == "__main__":
    main()
