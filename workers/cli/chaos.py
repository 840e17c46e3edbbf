"""`steplog chaos`: faults on this machine's fleet on a schedule (SIGKILL or SIGSTOP a random local
worker of this database, restart the Postgres steplog runs itself, wipe the Redis broker, cut a host
off the network), then the invariants checked from the event log itself.

A kill interrupts the steps whose attempt belongs to a liveness owner (``node:pid:token``) of the
killed process group; a stop (SIGSTOP for longer than a lease, then SIGCONT) interrupts those its
leases are taken over from, and the woken zombie's late commits are refused. A partition (root only)
needs a second host: chaos starts one worker of its own on a network namespace that reaches the
services through a relay (:mod:`workers.cli.chaos_partition`), cuts that host's link while its worker
holds a lease, for as long as a stop lasts, then restores it; the worker's late commits are refused
like a zombie's, and it takes work again once back. An interrupted attempt is
resumed when a later attempt committed that step or the run ended. At the end, for every run touched
during the session: it completes (ends, or parks in a wait) within the grace period, its events are
seq 1..N (no gap), no step was committed twice (no duplicate), and no step called one tool under two
keys (one key per side effect). Exit code: 0 when every interrupted step resumed and every invariant
held; 1 when not, or when no worker of this database runs here; 2 for a fault this machine cannot make.
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

    from workers.cli.chaos_partition import PartitionedWorker
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


def interrupted_by(engine: Engine, owners: list[str], before: datetime | None = None) -> list[dict[str, Any]]:
    """The attempts of these (killed, or stopped until ``before``) owners that did not finish:
    ``{run_id, seq, attempt}`` each."""
    if not owners:
        return []
    with engine.connect() as conn:
        rows = conn.execute(_queries()["interrupted"], dict(owners=owners, before=before))
        return [{"run_id": r.run_id, "seq": r.seq, "attempt": r.attempt} for r in rows]


def is_resumed(engine: Engine, step: dict[str, Any]) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(_queries()["resumed"], step).scalar())


FAULTS = ("kill", "stop", "pg-restart", "broker-wipe", "partition")
#: What a wipe empties: the queue's kombu lists, one per priority (``steplog``, ``steplog\x06\x163``, ...).
PRIORITY_SEP = "\x06\x16"


def parse_faults(raw: str) -> list[str]:
    """``kill,stop`` as a list, each once, in the order given; ValueError naming an unknown one."""
    faults = list(dict.fromkeys(f.strip() for f in raw.split(",") if f.strip()))
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        raise ValueError(f"unknown fault(s) {unknown or [raw]}; known: {', '.join(FAULTS)}")
    return faults


def local_postgres(settings: Any) -> Any:
    """The local services whose Postgres this fleet uses (``LocalServices``), when steplog runs that
    Postgres itself under ``STEPLOG_HOME`` and it is up; else None (a Postgres steplog does not own
    is never restarted)."""
    from workers.cli.chaos_procs import normalize_db_url
    from workers.local.servers import LocalServices

    services = LocalServices(settings.home)
    if normalize_db_url(services.urls().database_url) != normalize_db_url(settings.database_url):
        return None
    return services if services.status()["postgres"]["running"] else None


def wipe_broker(broker_url: str, queue: str) -> int:
    """FLUSHDB of the Redis broker's database; returns how many messages its queue held."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        pipe = client.pipeline(transaction=True)
        for priority in range(10):
            pipe.llen(queue + (f"{PRIORITY_SEP}{priority}" if priority else ""))
        pipe.flushdb()
        return sum(pipe.execute()[:-1])
    finally:
        client.close()


class Chaos:
    """The faults of one `steplog chaos` session, and the workers it started again."""

    def __init__(self, engine: Engine, *, lease_seconds: float, log_dir: Path, say) -> None:
        self.engine, self.log_dir, self.say = engine, log_dir, say
        self.lease_seconds = lease_seconds
        self.faults: list[dict[str, Any]] = []
        self._owners: list[tuple[dict[str, Any], list[str], datetime | None]] = []  # (record, owner ids, before)
        self._children: dict[int, Any] = {}  # restarted workers (ours to reap when killed again)

    @property
    def kills(self) -> list[dict[str, Any]]:
        return [f for f in self.faults if f["fault"] == "kill"]

    def _victim(self, victim: WorkerTarget) -> tuple[str, list[str]]:
        pids = [p.pid for p in victim.group()]
        owners = live_owners(self.engine, pids, fresh_seconds=self.lease_seconds * 3) if pids else []
        worker = owners[0]["worker"] if owners else (victim.hostname or f"pid {victim.pid}")
        return worker, [o["id"] for o in owners]

    @staticmethod
    def _what(steps: list[dict[str, Any]], nothing: str) -> str:
        return ", ".join(f"run {s['run_id']} step {s['seq']} (attempt {s['attempt']})" for s in steps) or nothing

    def kill(self, victim: WorkerTarget, *, restart: bool) -> None:
        from workers.cli import chaos_procs

        worker, ids = self._victim(victim)
        at = datetime.now(timezone.utc)
        killed = chaos_procs.kill(victim)
        if victim.pid in self._children:
            self._children.pop(victim.pid).wait()
        if not killed:
            self.say(f"worker {worker} (pid {victim.pid}) had already exited")
            return
        time.sleep(SETTLE_SECONDS)
        steps = interrupted_by(self.engine, ids)
        record = {
            "fault": "kill", "time": at.isoformat(), "worker": worker, "pid": victim.pid, "pids": killed,
            "interrupted": steps, "restarted_pid": None,
        }
        self.say(f"killed {worker} (pid {victim.pid}): interrupted {self._what(steps, 'no step in flight')}")
        if restart:
            proc = chaos_procs.restart(victim, self.log_dir)
            self._children[proc.pid] = proc
            record["restarted_pid"] = proc.pid
            self.say(f"restarted {worker} as pid {proc.pid}")
        self.faults.append(record)
        self._owners.append((record, ids, None))

    def stop(self, victim: WorkerTarget, seconds: float) -> None:
        """SIGSTOP the worker for ``seconds`` (longer than a lease: its steps are taken over), then
        SIGCONT it: a zombie whose late commits must be refused."""
        from workers.cli import chaos_procs

        worker, ids = self._victim(victim)
        at = datetime.now(timezone.utc)
        frozen = chaos_procs.pause(victim)
        if not frozen:
            self.say(f"worker {worker} (pid {victim.pid}) had already exited")
            return
        try:
            time.sleep(seconds)
            taken = interrupted_by(self.engine, ids)
        finally:
            chaos_procs.resume(frozen)
        with self.engine.connect() as conn:  # Postgres's clock, as the attempts' started_at
            until = conn.execute(_queries()["clock"]).scalar_one()
        record = {
            "fault": "stop", "time": at.isoformat(), "worker": worker, "pid": victim.pid,
            "pids": sorted(p.pid for p in frozen), "seconds": seconds, "interrupted": taken,
        }
        self.say(f"stopped {worker} (pid {victim.pid}) for {seconds:.1f} s, then let it go on: "
                 f"interrupted {self._what(taken, 'no step in flight')}")
        self.faults.append(record)
        self._owners.append((record, ids, until))

    def partition(self, part: PartitionedWorker, seconds: float, wait_seconds: float = 10.0) -> None:
        """Cut ``part``'s host off for ``seconds`` while its worker holds a lease (waiting up to
        ``wait_seconds`` for one), then restore the link: its steps are taken over meanwhile."""
        ids = [o["id"] for o in live_owners(self.engine, part.pids(), fresh_seconds=self.lease_seconds * 3)]
        seen = {(s["run_id"], s["seq"], s["attempt"]) for s in self.steps()}

        def holding() -> list[dict[str, Any]]:
            return [s for s in interrupted_by(self.engine, ids) if (s["run_id"], s["seq"], s["attempt"]) not in seen]

        deadline = time.monotonic() + wait_seconds
        while ids and not holding() and time.monotonic() < deadline:
            time.sleep(0.05)
        at = datetime.now(timezone.utc)
        part.host.cut()
        try:
            time.sleep(seconds)
            taken = holding()
        finally:
            part.host.heal()
        with self.engine.connect() as conn:
            until = conn.execute(_queries()["clock"]).scalar_one()
        record = {
            "fault": "partition", "time": at.isoformat(), "worker": part.node, "host": part.host.ns,
            "pids": part.pids(), "seconds": seconds, "healed_at": until.isoformat(), "interrupted": taken,
            "rejoined_steps": None,
        }
        self.say(f"cut off host {part.host.ns} (worker {part.node}) for {seconds:.1f} s, then restored its link: "
                 f"interrupted {self._what(taken, 'no step in flight')}")
        self.faults.append(record)
        self._owners.append((record, ids, until))

    def rejoined(self) -> None:
        """For each partition: how many steps its worker committed after its link came back."""
        q = _queries()["committed_since"]
        for record, ids, until in self._owners:
            if record["fault"] == "partition":
                with self.engine.connect() as conn:
                    record["rejoined_steps"] = conn.execute(q, dict(owners=ids, since=until)).scalar_one()

    def restart_postgres(self, services: Any) -> None:
        at = datetime.now(timezone.utc)
        went = time.time()
        ready = services.restart_postgres()
        self.engine.dispose()  # our pooled connections died with the old server
        record = {"fault": "pg-restart", "time": at.isoformat(), "down_seconds": round(ready - went, 3),
                  "ready_at": datetime.fromtimestamp(ready, timezone.utc).isoformat(), "first_commit_seconds": None}
        self.say(f"restarted Postgres (fast mode, {services.pgdata}): accepting connections again after "
                 f"{ready - went:.2f} s")
        self.faults.append(record)

    def wipe_broker(self, broker_url: str, queue: str) -> None:
        at = datetime.now(timezone.utc)
        queued = wipe_broker(broker_url, queue)
        self.faults.append({"fault": "broker-wipe", "time": at.isoformat(), "queued": queued})
        self.say(f"wiped the broker's Redis database (FLUSHDB): {queued} queued step messages gone")

    def recount(self) -> None:
        """Read each fault's interrupted steps again: a step still open at the first read may have
        committed as the fault landed, and counting from the log alone keeps the summary exact."""
        for record, ids, before in self._owners:
            record["interrupted"] = interrupted_by(self.engine, ids, before)

    def steps(self) -> list[dict[str, Any]]:
        unique = {(s["run_id"], s["seq"], s["attempt"]): s for f in self.faults for s in f.get("interrupted", ())}
        return list(unique.values())

    def resumed(self) -> list[dict[str, Any]]:
        return [s for s in self.steps() if is_resumed(self.engine, s)]

    def wait_resumed(self, deadline: float) -> None:
        while len(self.resumed()) < len(self.steps()) and time.monotonic() < deadline:
            time.sleep(0.25)

    def first_commits(self) -> None:
        """For each Postgres restart: seconds from its return to the first step committed after it."""
        q = _queries()["first_commit_after"]
        for record in self.faults:
            if record["fault"] == "pg-restart":
                ready = datetime.fromisoformat(record["ready_at"]).timestamp()
                with self.engine.connect() as conn:
                    first = conn.execute(q, dict(at=ready)).scalar()
                record["first_commit_seconds"] = None if first is None else round(float(first) - ready, 3)


def check_invariants(engine: Engine, since: datetime, deadline: float) -> dict[str, Any]:
    """The invariants over every run touched since ``since``, once each has settled (or ``deadline``,
    a monotonic time, passed): ``{runs, unsettled, gaps, duplicates, tool_calls, split_keys, ok}``."""
    q = _queries()
    with engine.connect() as conn:
        ids = [r.run_id for r in conn.execute(q["touched_runs"], dict(since=since))]
    while True:
        with engine.connect() as conn:
            unsettled = [r.run_id for r in conn.execute(q["unsettled"], dict(ids=ids))]
        if not unsettled or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    with engine.connect() as conn:
        report = {
            "runs": len(ids),
            "unsettled": unsettled,
            "gaps": [r.run_id for r in conn.execute(q["gaps"], dict(ids=ids))],
            "duplicates": [dict(r._mapping) for r in conn.execute(q["duplicates"], dict(ids=ids))],
            "tool_calls": conn.execute(q["tool_calls"], dict(ids=ids)).scalar_one(),
            "split_keys": [dict(r._mapping) for r in conn.execute(q["split_keys"], dict(ids=ids))],
        }
    report["ok"] = not (report["unsettled"] or report["gaps"] or report["duplicates"] or report["split_keys"])
    return report


def invariants_line(report: dict[str, Any]) -> str:
    """One line: each invariant, held or how it failed."""
    n = report["runs"]
    parts = [
        f"{n - len(report['unsettled'])} of {n} runs complete"
        + (f" ({', '.join(report['unsettled'][:5])} still running)" if report["unsettled"] else ""),
        "no gap" if not report["gaps"] else f"gaps in {', '.join(report['gaps'][:5])}",
        "no duplicate" if not report["duplicates"] else "duplicate steps " + ", ".join(
            f"{d['run_id']}:{d['seq']}" for d in report["duplicates"][:5]),
        (f"one key per side effect ({report['tool_calls']} tool calls)" if not report["split_keys"] else
         "side effects under two keys " + ", ".join(f"{k['run_id']}:{k['seq']} {k['tool']}" for k in report["split_keys"][:5])),
    ]
    return f"invariants {'held' if report['ok'] else 'FAILED'}: " + ", ".join(parts)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def chaos(
    kill_every: Annotated[float, typer.Option("--kill-every", "--every", min=0.1, help="Seconds between faults.")],
    duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds to keep making faults.")],
    faults: Annotated[str, typer.Option(
        "--faults", help="Comma-separated faults, taking turns in this order: kill (SIGKILL a worker), stop (SIGSTOP "
        "a worker past its lease, then SIGCONT), pg-restart (restart the local services' Postgres, fast mode), "
        "broker-wipe (FLUSHDB of the Redis broker), partition (root: cut a worker's host off the network for "
        "as long as a stop, then restore it).")] = "kill",
    restart: Annotated[bool, typer.Option("--restart", help="Start each killed worker again as it was.")] = False,
    stop_seconds: Annotated[float | None, typer.Option(
        "--stop-seconds", min=0.1, help="How long a stop freezes its worker, or a partition cuts its host off "
        "(default: 3 leases).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the choice of victims.")] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds to wait at the end for interrupted steps to resume "
                            "and touched runs to complete.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {kills, interrupted, resumed, faults, invariants} at the end.")] = False,
) -> None:
    """Every --every seconds for --duration seconds, one fault of --faults (default: SIGKILL a random
    local worker of this database); report the steps the faults interrupted, how many resumed, and the
    invariants: runs complete, no gap, no duplicate, one key per side effect."""
    from workers.cli import chaos_procs

    try:
        chosen = parse_faults(faults)
    except ValueError as exc:
        fail(f"--faults: {exc}", 2)
    if "partition" in chosen:
        from workers.partition import cannot_make_hosts

        reason = cannot_make_hosts()
        if reason:
            fail(f"--faults partition: cutting a host off puts a worker on a network namespace of its own, and "
                 f"{reason}; run steplog chaos as root, or leave partition out", 2)
    settings = ctx.settings
    services = None
    if "pg-restart" in chosen:
        services = local_postgres(settings)
        if services is None:
            fail("--faults pg-restart: steplog restarts only the Postgres it runs itself (the local services of "
                 "STEPLOG_HOME, STEPLOG_DATABASE_URL unset); this fleet's database is another server", 2)
    if "broker-wipe" in chosen and not settings.broker_is_redis:
        fail("--faults broker-wipe: the broker is not Redis (RabbitMQ keeps its durable queue through a restart)", 2)
    console = err if as_json else out

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)  # worker names and paths are data

    local = chaos_procs.find_workers(settings.database_url)
    if not local:
        fail("no steplog worker of this database runs on this machine (workers are matched by their "
             "STEPLOG_DATABASE_URL, or by STEPLOG_HOME for the local services)", 1)
    log_dir = Path(settings.home).expanduser().resolve() / "chaos"
    part = _partitioned_worker(settings, local[0], log_dir, say) if "partition" in chosen else None
    try:
        _session(settings, chosen, services, part, log_dir, say, kill_every=kill_every, duration=duration,
                 restart=restart, stop_seconds=stop_seconds, seed=seed, grace=grace, as_json=as_json)
    finally:
        if part is not None:
            part.close()
            say(f"removed host {part.host.ns} and its worker")


def _partitioned_worker(settings: Any, template: WorkerTarget, log_dir: Path, say) -> PartitionedWorker:
    """The worker on a host of its own that partitions cut off, started and registered; or fail."""
    from workers.cli.chaos_partition import PartitionedWorker
    from workers.partition import HostError

    try:
        part = PartitionedWorker(settings, template, log_dir)
    except HostError as exc:
        fail(f"--faults partition: {exc}", 2)

    def registered(node: str) -> bool:
        with ctx.engine.connect() as conn:
            return conn.execute(_queries()["registered"], dict(worker=node)).first() is not None

    if not part.wait_ready(registered, timeout=60):
        tail = part.log_tail()
        part.close()
        fail(f"--faults partition: the worker on host {part.host.ns} did not start; its log ends:\n{tail}", 1)
    say(f"started worker {part.node} on host {part.host.ns} ({part.host.inner_ip}), reaching the services "
        f"through a relay on {part.network.service_ip}")
    return part


def _session(settings: Any, chosen: list[str], services: Any, part: PartitionedWorker | None, log_dir: Path, say, *,
             kill_every: float, duration: float, restart: bool, stop_seconds: float | None, seed: int | None,
             grace: float, as_json: bool) -> None:
    import random

    from workers.cli import chaos_procs

    session = Chaos(ctx.engine, lease_seconds=settings.lease_seconds, log_dir=log_dir, say=say)
    rng = random.Random(seed)
    freeze = stop_seconds if stop_seconds is not None else max(3 * settings.lease_seconds, 1.0)
    with ctx.engine.connect() as conn:
        began = conn.execute(_queries()["clock"]).scalar_one()

    start = time.monotonic()
    tick = 1
    while tick * kill_every <= duration:
        _sleep_until(start + tick * kill_every)
        fault = chosen[(tick - 1) % len(chosen)]
        tick += 1
        if fault == "pg-restart":
            session.restart_postgres(services)
            continue
        if fault == "broker-wipe":
            session.wipe_broker(settings.broker_url, settings.queue)
            continue
        if fault == "partition":
            session.partition(part, freeze)
            continue
        targets = chaos_procs.find_workers(settings.database_url)
        if not targets:
            say(f"no worker left to {fault}")
        elif fault == "kill":
            session.kill(rng.choice(targets), restart=restart)
        else:
            session.stop(rng.choice(targets), freeze)
    _sleep_until(start + duration)
    deadline = time.monotonic() + grace
    session.recount()
    session.wait_resumed(deadline)
    session.recount()
    invariants = check_invariants(ctx.engine, began, deadline)
    session.first_commits()
    session.rejoined()
    interrupted, resumed = len(session.steps()), len(session.resumed())
    for record in session.faults:
        if record["fault"] == "pg-restart" and record["first_commit_seconds"] is not None:
            say(f"Postgres restart at {record['time']}: first step committed {record['first_commit_seconds']:.2f} s "
                "after it accepted connections again")
        if record["fault"] == "partition":
            say(f"host {record['host']} back at {record['healed_at']}: its worker committed "
                f"{record['rejoined_steps']} steps since")
    made = {name: sum(f["fault"] == name for f in session.faults) for name in chosen}
    counts = ", ".join(f"{n} {name}{'' if n == 1 else 's'}" for name, n in made.items())
    summary = f"{len(session.faults)} faults ({counts}): {interrupted} steps interrupted, {resumed} resumed"
    ok = resumed == interrupted and invariants["ok"]
    if as_json:
        sys.stdout.write(json.dumps({"kills": session.kills, "interrupted": interrupted, "resumed": resumed,
                                     "faults": session.faults, "invariants": invariants}, default=str) + "\n")
        say(summary)
        say(invariants_line(invariants))
    else:
        out.print(summary, highlight=False, markup=False)
        out.print(invariants_line(invariants), highlight=False, markup=False)
    raise typer.Exit(0 if ok else 1)
