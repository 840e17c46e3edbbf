"""What `steplog limits` and the API's ``GET /limits`` show: every concurrency key in use (steps in
flight, waiters, limit) and every fleet-wide rate limit (use in the window, steps deferred by it)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from checkpoint import flow
from checkpoint.limiter import RateLimiter


def snapshot(engine: Engine, redis_url: str | None) -> dict[str, Any]:
    """``{"concurrency": [...], "rates": [...], "deferred": [...]}`` (README: `limits --json`)."""
    now = datetime.now(timezone.utc)
    concurrency = [
        {"key": k["key"], "in_flight": k["in_flight"], "woken": k["woken"], "queued": k["queued"],
         "limit": k["limit"],
         "oldest_wait_seconds": None if k["oldest"] is None else round((now - k["oldest"]).total_seconds(), 3)}
        for k in flow.keys(engine)
    ]
    deferred = [
        {"reason": d["reason"], "queued": d["queued"], "next_due": d["next_due"].isoformat()}
        for d in flow.deferred(engine)
    ]
    by_reason = {d["reason"]: d["queued"] for d in deferred}
    rates = []
    if redis_url:
        for r in RateLimiter.from_url(redis_url).known():
            reasons = set((r.pop("reasons") or {}).values())
            rates.append({**r, "deferred": sum(n for reason, n in by_reason.items() if reason in reasons)})
    return {"concurrency": concurrency, "rates": rates, "deferred": deferred}
