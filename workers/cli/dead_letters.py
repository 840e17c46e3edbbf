"""`steplog dead-letters`: messages the workers dropped from the step queue because they could not
read them (see workers/dead_letters.py): how many ever, and the newest."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli.common import ctx, fail, out, print_json


def dead_letters(
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show this many of the newest.")] = 20,
    json_: Annotated[
        bool, typer.Option("--json", help='Print {"queue", "count", "entries": [{"at", "queue", "reason", "worker", "raw"}]}.')
    ] = False,
) -> None:
    """Messages dropped from the step queue as unreadable: how many ever, and the newest."""
    import redis

    from workers import dead_letters as store
    from workers.wiring import dead_letter_url

    settings = ctx.settings
    url = dead_letter_url(settings)
    if url is None:
        fail("no Redis keeps dead letters (RabbitMQ broker and no STEPLOG_REDIS_URL): see the worker logs", 1)
    try:
        found = store.read(redis.Redis.from_url(url, socket_timeout=5), settings.queue, limit)
    except redis.RedisError as exc:
        fail(f"could not read dead letters from Redis: {exc}", 1)
    if json_:
        print_json({"queue": found.queue, "count": found.count, "entries": found.entries})
        return
    out.print(f"{found.count} dead letter{'s' if found.count != 1 else ''} on queue {found.queue}", markup=False)
    for e in found.entries:
        out.print(f"  {e.get('at', '?')}  {e.get('worker', '?')}  {e.get('reason', '?')}", markup=False, highlight=False)
        out.print(f"    {e.get('raw', '')[:200]!r}", markup=False, highlight=False)
