"""What a step's context costs as its run's history grows: 10, 100, 1,000 and 10,000 events.

For each size, a synthetic run (tool results of 100 B to 2.5 KB, every 37th offloaded to the artifact
store as a pointer, a summary every 45 events) is written to a scratch database; then the context at
the latest seq is loaded 50 times on a Redis miss (the Redis entry deleted first: one index-probe
statement on Postgres, then the cache refill) and 50 times from Redis. Prints the median of each.
A "Redis miss" is not a cold start: Postgres's own cache is warm (the same rows, read over and over),
so it is what a context rebuilt from a busy Postgres costs, not one read from disk.
Targets: flat in history length (10,000 events within 2x of 10), Redis under 2 ms, Redis miss under 20 ms.

    .venv/bin/python scripts/bench_context.py [--repeat 50] [--budget 6000] [--tail 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchkit import median, scratch_database, scratch_redis, servers
from sqlalchemy import create_engine

from checkpoint import redis_keys
from checkpoint.artifacts import LocalArtifactStore
from checkpoint.hotcache import HotCache
from checkpoint.tokens import method
from tests.support.histories import make_history

SIZES = (10, 100, 1_000, 10_000)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--budget", type=int, default=6000)
    parser.add_argument("--tail", type=int, default=50)
    parser.add_argument("--summary-every", type=int, default=45,
                        help="A summary event every N events (45: the latest is 10 events back); 0: none.")
    args = parser.parse_args()
    settings = servers()
    rows = []
    with scratch_database(settings.database_url) as url, tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(url, pool_size=2)
        cache = HotCache.from_url(scratch_redis(settings.redis_url, 14), ttl=600)
        store = LocalArtifactStore(tmp)
        try:
            for n in SIZES:
                run_id = make_history(engine, n, summary_every=args.summary_every or None, store=store)
                key = redis_keys.context(run_id, n)

                def load():
                    return cache.load(engine, run_id, latest_seq=n, budget_tokens=args.budget, tail_limit=args.tail)

                for _ in range(5):  # warm the connection pools and plan cache
                    cache.client.delete(key)
                    load()
                cold = []
                for _ in range(args.repeat):
                    cache.client.delete(key)
                    cold.append(_timed(load))
                load()
                warm = [_timed(load) for _ in range(args.repeat)]
                ctx = load()
                rows.append((n, median(cold), median(warm), len(ctx.tail), ctx.tokens))
        finally:
            cache.client.flushdb()
            engine.dispose()
    print(f"context load, median of {args.repeat} (budget {args.budget} tokens, tail limit {args.tail}, "
          f"summary every {args.summary_every or 'never'}, token counts: {method()})")
    print(f"{'events':>8} {'Redis miss, PG cache warm ms':>29} {'Redis hit ms':>13} {'tail events':>12} {'tokens':>7}")
    for n, cold, warm, tail, tokens in rows:
        print(f"{n:>8,} {cold:>29.2f} {warm:>13.2f} {tail:>12} {tokens:>7}")
    base_cold, base_warm = rows[0][1], rows[0][2]
    print(f"10,000 vs 10 events: Redis miss x{rows[-1][1] / base_cold:.2f}, Redis hit x{rows[-1][2] / base_warm:.2f}")


if __name__ == "__main__":
    main()
