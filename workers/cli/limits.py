"""`steplog limits`: each concurrency key's steps in flight, its queue and its limit; each rate limit's
use of its window and the steps it deferred."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.common import ctx, fail, out, print_json


def limits(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"concurrency": [...], "rates": [...], "deferred": [...]}.')] = False,
) -> None:
    """Concurrency keys in use (in flight / limit, queued) and fleet-wide rate limits (used / limit)."""
    import redis

    from workers.limits import snapshot

    try:
        found = snapshot(ctx.engine, ctx.settings.redis_url)
    except redis.RedisError as exc:
        fail(f"could not read the rate limits from Redis: {exc}", 1)
    if as_json:
        print_json(found)
        return
    if not found["concurrency"] and not found["rates"]:
        out.print("no concurrency key or rate limit in use", markup=False)
    for k in found["concurrency"]:
        wait = f", oldest waiting {k['oldest_wait_seconds']:.1f}s" if k["oldest_wait_seconds"] is not None else ""
        woken = f", {k['woken']} woken" if k["woken"] else ""
        out.print(f"concurrency {k['key']}: {k['in_flight']}/{k['limit']} in flight, {k['queued']} queued{woken}{wait}",
                  markup=False, highlight=False)
    for r in found["rates"]:
        parts = []
        if r["requests_limit"]:
            parts.append(f"{r['requests']}/{r['requests_limit']} requests")
        if r["units_limit"]:
            parts.append(f"{r['units']}/{r['units_limit']} tokens")
        extra = f", blocked {r['blocked_seconds']:.1f}s more" if r["blocked_seconds"] else ""
        out.print(f"rate {r['name']}: {', '.join(parts)} per {r['window_seconds']:g}s, {r['deferred']} deferred"
                  f"{extra}", markup=False, highlight=False)
