"""`steplog watch RUN`: follow a run live until it ends.

It polls Postgres for the events after the last seq it saw (one indexed range read), the run row
and the step in flight; nothing is pushed, so it works against any fleet and survives restarts.
Exit code: 0 when the run succeeded, 1 when it failed or was cancelled (or does not exist).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workers.cli.common import ctx, err, out

if TYPE_CHECKING:
    from workers.cli.watch_view import WatchState


def _emit(run_id: str, events: list[dict[str, Any]]) -> None:
    from workers.cli.render import event_json

    for e in events:
        sys.stdout.write(json.dumps({**event_json(e), "run_id": run_id}, default=str) + "\n")
    sys.stdout.flush()  # a pipe is block-buffered: a follower must see each line as it happens


def follow(engine, run_id: str, interval: float, on_update, progress=None) -> WatchState:
    """Read until the run has ended and its last event was read; ``on_update(state, new_events)`` each
    time. Between reads it waits on the run's progress stream in Redis (``progress``, a HotCache) so a
    new step shows at once; Postgres stays the source of what is shown. Without Redis it polls."""
    from checkpoint import fanout, runs
    from checkpoint.statuses import TERMINAL_STATUSES
    from workers.cli.render import children_json
    from workers.cli.watch_view import WatchState

    state: WatchState | None = None
    cursor = "$"
    while True:
        # The run row first: a terminal status is committed with the last event, so the events read
        # after it include that event, and the loop can end without missing one.
        run = runs.get(engine, run_id)
        new = runs.events(engine, run_id, after=state.last_seq if state else 0)
        flight = None if run["status"] in TERMINAL_STATUSES else runs.in_flight(engine, run_id)
        first = state is None
        if state is None:
            state = WatchState(run)
        if first or run["status"] == "waiting" or state.children is not None:  # a fan-out's children, one line
            state.children = children_json(fanout.counts(engine, run_id)) or state.children
        state.update(run, new, flight)
        on_update(state, new)
        if state.finished:
            return state
        if progress is None:
            time.sleep(interval)
            continue
        asked = time.monotonic()
        woke = progress.read_progress(run_id, cursor, block_ms=max(int(interval * 4000), 1))
        if woke:
            cursor = woke[-1][0]
        elif time.monotonic() - asked < interval:  # Redis unavailable answers at once: poll instead
            time.sleep(interval)


def progress_stream(settings):
    """The Redis hot tier whose progress stream :func:`follow` waits on, or None without Redis."""
    if not settings.redis_url:
        return None
    from checkpoint.hotcache import HotCache

    return HotCache.from_url(settings.redis_url, settings.hot_ttl_seconds)


def watch(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON line per event, as `show --json` shapes them.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.01, help="Seconds between polls.")] = 0.25,
) -> None:
    """Follow a run live: progress, the step in flight and its worker, recent steps, tokens; ends with the run."""
    from rich.live import Live

    from checkpoint import runs
    from checkpoint.statuses import TERMINAL_STATUSES
    from workers.cli.watch_view import final_line, watch_view

    progress = progress_stream(ctx.settings)

    def run() -> WatchState:
        if json_:
            return follow(ctx.engine, run_id, interval, lambda state, new: _emit(run_id, new), progress)
        first = runs.get(ctx.engine, run_id)
        if first["status"] in TERMINAL_STATUSES or not out.is_terminal:
            # Nothing to follow (the summary at once), or no terminal to redraw: the view once, at the end.
            state = follow(ctx.engine, run_id, interval, lambda state, new: None)
            out.print(watch_view(state))
            return state
        with Live(console=out, refresh_per_second=4) as live:
            return follow(ctx.engine, run_id, interval, lambda state, new: live.update(watch_view(state)), progress)

    try:
        state = run()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if json_:
        err.print(final_line(state), highlight=False)
    else:
        out.print(final_line(state), highlight=False)
    raise typer.Exit(0 if state.run["status"] == "succeeded" else 1)
