"""`steplog chaos`: SIGKILL random local workers of this fleet on a schedule, and count the steps that
were interrupted and later resumed, from the event log itself.

A kill interrupts the steps whose attempt belongs to a liveness owner (``node:pid:token``) of the
killed process group; the attempt is resumed when a later attempt committed that step or the run
ended. Exit code: 0 when every interrupted step resumed within the grace period, 1 when one did
not or when no worker of this database runs here.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workers.cli.common import ctx, err, fail, out

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from workers.cli.chaos_procs import WorkerTarget

#: The queries of `steplog chaos` (beside the worker package's other .sql files, its package data).
CHAOS_SQL = Path(__file__).parents[1] / "chaos.sql"

SETTLE_SECONDS = 0.2  # after a kill, before reading what it interrupted: lets a commit already sent land


@cache
def _queries() -> dict:
    from checkpoint.queries import load  # loads SQLAlchemy: only when chaos runs

    return load(CHAOS_SQL)


def live_owners(engine: Engine, pids: list[int], fresh_seconds: float) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(_queries()["live_owners"], dict(pids=pids, fresh_seconds=fresh_seconds))
        return [dict(r._mapping) for r in rows]


def interrupted_by(engine: Engine, owners: list[str]) -> list[dict[str, Any]]:
    """The attempts of these (killed) owners that did not finish: ``{run_id, seq, attempt}`` each."""
    if not owners:
        return []
    with engine.connect() as conn:
        rows = conn.execute(_queries()["interrupted"], dict(owners=owners))
        return [{"run_id": r.run_id, "seq": r.seq, "attempt": r.attempt} for r in rows]


def is_resumed(engine: Engine, step: dict[str, Any]) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(_queries()["resumed"], step).scalar())


class Chaos:
    """The kills of one `steplog chaos` session and the workers it started again."""

    def __init__(self, engine: Engine, *, lease_seconds: float, log_dir: Path, say) -> None:
        self.engine, self.log_dir, self.say = engine, log_dir, say
        self.lease_seconds = lease_seconds
        self.kills: list[dict[str, Any]] = []
        self._owners: list[list[str]] = []  # per kill, the liveness ids it killed
        self._children: dict[int, Any] = {}  # restarted workers (ours to reap when killed again)

    def kill(self, victim: WorkerTarget, *, restart: bool) -> None:
        from workers.cli import chaos_procs

        pids = [p.pid for p in victim.group()]
        owners = live_owners(self.engine, pids, fresh_seconds=self.lease_seconds * 3) if pids else []
        worker = owners[0]["worker"] if owners else (victim.hostname or f"pid {victim.pid}")
        at = datetime.now(timezone.utc)
        killed = chaos_procs.kill(victim)
        if victim.pid in self._children:
            self._children.pop(victim.pid).wait()
        if not killed:
            self.say(f"worker {worker} (pid {victim.pid}) had already exited")
            return
        time.sleep(SETTLE_SECONDS)
        ids = [o["id"] for o in owners]
        steps = interrupted_by(self.engine, ids)
        record = {
            "time": at.isoformat(), "worker": worker, "pid": victim.pid, "pids": killed,
            "interrupted": steps, "restarted_pid": None,
        }
        what = ", ".join(f"run {s['run_id']} step {s['seq']} (attempt {s['attempt']})" for s in steps) or "no step in flight"
        self.say(f"killed {worker} (pid {victim.pid}): interrupted {what}")
        if restart:
            proc = chaos_procs.restart(victim, self.log_dir)
            self._children[proc.pid] = proc
            record["restarted_pid"] = proc.pid
            self.say(f"restarted {worker} as pid {proc.pid}")
        self.kills.append(record)
        self._owners.append(ids)

    def recount(self) -> None:
        """Read each kill's interrupted steps again: a step still open at the first read may have
        committed as the kill landed, and counting from the log alone keeps the summary exact."""
        for record, ids in zip(self.kills, self._owners, strict=True):
            record["interrupted"] = interrupted_by(self.engine, ids)

    def steps(self) -> list[dict[str, Any]]:
        unique = {(s["run_id"], s["seq"], s["attempt"]): s for k in self.kills for s in k["interrupted"]}
        return list(unique.values())

    def resumed(self) -> list[dict[str, Any]]:
        return [s for s in self.steps() if is_resumed(self.engine, s)]

    def wait_resumed(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while len(self.resumed()) < len(self.steps()) and time.monotonic() < deadline:
            time.sleep(0.25)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def chaos(
    kill_every: Annotated[float, typer.Option("--kill-every", min=0.1, help="Seconds between kills.")],
    duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds to keep killing.")],
    restart: Annotated[bool, typer.Option("--restart", help="Start each killed worker again as it was.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the choice of victims.")] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds to wait at the end for interrupted steps to resume.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print {kills, interrupted, resumed} at the end.")] = False,
) -> None:
    """SIGKILL a random local worker of this database every --kill-every seconds for --duration seconds;
    report the steps each kill interrupted and how many resumed."""
    import random

    from workers.cli import chaos_procs

    settings = ctx.settings
    console = err if as_json else out

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)  # worker names and paths are data

    if not chaos_procs.find_workers(settings.database_url):
        fail("no steplog worker of this database runs on this machine (workers are matched by their "
             "STEPLOG_DATABASE_URL, or by STEPLOG_HOME for the local services)", 1)
    log_dir = Path(settings.home).expanduser().resolve() / "chaos"
    session = Chaos(ctx.engine, lease_seconds=settings.lease_seconds, log_dir=log_dir, say=say)
    rng = random.Random(seed)

    start = time.monotonic()
    tick = 1
    while tick * kill_every <= duration:
        _sleep_until(start + tick * kill_every)
        tick += 1
        targets = chaos_procs.find_workers(settings.database_url)
        if not targets:
            say("no worker left to kill")
            continue
        session.kill(rng.choice(targets), restart=restart)
    _sleep_until(start + duration)
    session.recount()
    session.wait_resumed(grace)
    session.recount()
    interrupted, resumed = len(session.steps()), len(session.resumed())
    if as_json:
        sys.stdout.write(json.dumps({"kills": session.kills, "interrupted": interrupted, "resumed": resumed}) + "\n")
    else:
        out.print(f"{len(session.kills)} kills: {interrupted} steps interrupted, {resumed} resumed", highlight=False)
    raise typer.Exit(0 if resumed == interrupted else 1)
