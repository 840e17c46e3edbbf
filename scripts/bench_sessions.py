"""Sessions at scale: what steplog adds to a conversational turn, and what idle sessions cost.

Real `steplog worker` processes (solo pool, -c 1) on a scratch database and a scratch Redis database,
loopback only. The chat agent is `memo` (tests/support/chat_agents.py): a reasoner that takes no time
and one tool call per turn (`lookup`, a read tool that takes microseconds), so a turn is the message's
signal, a reasoning step, the tool step and the reasoning step that commits the reply: four events,
three step tasks.

(s) one session, --single turns one after another: the overhead with nothing queued, and where it
    goes: each phase of a turn from the events' and attempts' Postgres timestamps (same host clock).
(a) --sessions sessions x --turns turns on --workers workers. Each session is a client thread that
    sends a message (app.steplog.conversations, as `steplog say` does: store the signal, wake the run,
    publish), waits for the reply, then thinks for a random time (exponential, mean --think s) before
    the next. Overhead of a turn = message sent to reply available at the client, minus the model's
    time (the reasoning steps' model_ms) and the tool's (its ledger row). Growth: the least-squares
    slope of the per-turn-index median overhead over the turn index.
(b) a session of --long turns, driven one after another; then, --rounds times: wait until its Redis
    keys have expired (STEPLOG_SESSION_TTL_SECONDS=--ttl), and time a turn (cold: its context is
    rebuilt from Postgres), then one more at once (warm), side by side.
(c) --idle sessions of one turn each left idle: Redis keys and bytes (MEMORY USAGE) naming any of
    them, before and after their TTL.

Usage: python scripts/bench_sessions.py [--sessions 50] [--turns 20] [--think 1.0] [--long 1000] [--idle 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchkit import empty_redis, loadavg, pct  # noqa: E402

MODULES = "tests.support.chat_agents"
AGENT = "memo"


def slope(points: list[tuple[float, float]]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


class Bench:
    def __init__(self, fleet: Any, args: argparse.Namespace) -> None:
        from sqlalchemy import text

        self.fleet, self.args, self.text = fleet, args, text
        self.talk = fleet.app.steplog.conversations
        self.rows: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []

    def row(self, measure: str, figure: str, target: str = "-", met: bool | None = None) -> None:
        self.rows.append((measure, figure, target, "-" if met is None else ("yes" if met else "NO")))

    def turn(self, sid: str, text: str) -> tuple[Any, float]:
        """One turn from the client's side: the reply and the seconds from send to reply available."""
        started = time.perf_counter()
        reply = self.talk.reply(self.talk.send(sid, text, by="bench"), timeout=120)
        return reply, time.perf_counter() - started

    def inner_ms(self, sid: str) -> dict[int, float]:
        """Per turn: model and tool milliseconds (what the platform does not add): the reasoning steps'
        ``model_ms`` and the tool step's ``tool_ms``, each timed around the call alone."""
        with self.fleet.engine.connect() as conn:
            rows = conn.execute(self.text(
                "SELECT e.type, (e.payload->>'model_ms')::float AS model_ms, (e.payload->>'tool_ms')::float AS tool_ms, "
                "       e.payload->>'turn' AS turn FROM events e WHERE e.run_id = :sid ORDER BY e.seq"), {"sid": sid}).all()
        per_turn: dict[int, float] = {}
        spent = 0.0
        for r in rows:
            spent += float(r.model_ms or 0.0) + float(r.tool_ms or 0.0)
            if r.type == "reply":
                per_turn[int(r.turn)] = spent
                spent = 0.0
        return per_turn

    # -- (s) --------------------------------------------------------------------------------------

    def part_s(self) -> None:
        """One session, turns one after another: the overhead with nothing queued, and where it goes."""
        sid = self.talk.open(AGENT, by="bench")
        overhead: list[float] = []
        phases: dict[str, list[float]] = {}
        for n in range(1, self.args.single + 1):
            t0 = time.time()
            sent = self.talk.send(sid, f"single session message {n}", by="bench")
            t1 = time.time()
            reply = self.talk.reply(sent, timeout=120)
            t2 = time.time()
            overhead.append((t2 - t0) * 1000 - self.inner_ms(sid)[reply.turn])
            with self.fleet.engine.connect() as conn:
                marks = conn.execute(self.text(
                    "SELECT e.seq, extract(epoch FROM e.created_at) AS at, extract(epoch FROM a.started_at) AS started "
                    "  FROM events e LEFT JOIN step_attempts a ON a.run_id = e.run_id AND a.seq = e.seq "
                    " WHERE e.run_id = :sid AND e.seq > :after ORDER BY e.seq"), {"sid": sid, "after": reply.seq - 4}).all()
            at = [float(m.at) for m in marks]  # the message's event, reasoning, tool, reply (commit starts)
            started = [float(m.started) for m in marks[1:]]  # each step's claim
            for name, ms in (("send (store + wake + publish)", t1 - t0), ("publish -> reasoning step claimed", started[0] - t1),
                             ("reasoning step", at[1] - started[0]), ("hop to the tool step", started[1] - at[1]),
                             ("tool step", at[2] - started[1]), ("hop to the reply step", started[2] - at[2]),
                             ("reply step", at[3] - started[2]), ("reply commit -> client has it", t2 - t0 - (at[3] - t0))):
                phases.setdefault(name, []).append(ms * 1000)
        self.row(f"(s) one session, {self.args.single} turns in a row: overhead", f"median {statistics.median(overhead):.1f} ms, "
                 f"p99 {pct(overhead, 99):.1f}", "<= 15 ms", statistics.median(overhead) <= 15)
        self.notes.append("(s) where a turn's time goes (medians; commit times are each commit's start):")
        for name, values in phases.items():
            self.notes.append(f"      {name:36} {statistics.median(values):6.2f} ms")

    # -- (a) --------------------------------------------------------------------------------------

    def part_a(self) -> None:
        a = self.args
        sids = [self.talk.open(AGENT, by="bench") for _ in range(a.sessions)]
        totals: dict[str, dict[int, float]] = {sid: {} for sid in sids}
        errors: list[BaseException] = []
        rng = random.Random(7)
        thinks = {sid: [rng.expovariate(1 / a.think) for _ in range(a.turns)] for sid in sids}

        def client(sid: str) -> None:
            try:
                time.sleep(thinks[sid][0])
                for n in range(1, a.turns + 1):
                    reply, seconds = self.turn(sid, f"message {n} of session {sid[:6]} with a few words")
                    assert reply.turn == n, (sid, reply.turn, n)
                    totals[sid][n] = seconds * 1000
                    if n < a.turns:
                        time.sleep(thinks[sid][n])
            except BaseException as exc:  # reported below
                errors.append(exc)

        began = time.monotonic()
        threads = [threading.Thread(target=client, args=(sid,)) for sid in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        if errors:
            raise errors[0]
        overhead: list[float] = []
        by_index: dict[int, list[float]] = {}
        raw: list[float] = []
        for sid in sids:
            inner = self.inner_ms(sid)
            for n, total in totals[sid].items():
                o = total - inner.get(n, 0.0)
                overhead.append(o)
                raw.append(total)
                by_index.setdefault(n, []).append(o)
        turns = len(overhead)
        growth = slope([(n, statistics.median(v)) for n, v in sorted(by_index.items())])
        self.row(f"(a) turns ({a.sessions} x {a.turns}, {a.workers} workers)", f"{turns} in {elapsed:.0f} s "
                 f"({turns / elapsed:.1f}/s)")
        self.row("(a) overhead per turn, median", f"{statistics.median(overhead):.1f} ms", "<= 15 ms",
                 statistics.median(overhead) <= 15)
        self.row("(a) overhead per turn, p90", f"{pct(overhead, 90):.1f} ms")
        self.row("(a) overhead per turn, p99", f"{pct(overhead, 99):.1f} ms", "<= 60 ms", pct(overhead, 99) <= 60)
        self.row("(a) growth over a session's turns", f"{growth:+.3f} ms/turn", "<= 0.05 ms/turn", growth <= 0.05)
        self.row("(a) send to reply, median (model+tool incl.)", f"{statistics.median(raw):.1f} ms")
        first, last = statistics.median(by_index[1]), statistics.median(by_index[a.turns])
        self.notes.append(f"(a) median overhead of turn 1: {first:.1f} ms, of turn {a.turns}: {last:.1f} ms; "
                          f"think time mean {a.think} s, so about {a.sessions / (a.think + 0.02):.0f} turns/s offered")

    # -- (b) --------------------------------------------------------------------------------------

    def expired(self, sid: str) -> bool:
        client = self.fleet.hot
        return not client.exists(*self.keys(sid))

    def keys(self, sid: str) -> list[str]:
        from checkpoint import redis_keys

        return [redis_keys.session_turns(sid), redis_keys.session_live(sid), redis_keys.progress(sid)]

    def part_b(self) -> None:
        a = self.args
        sid = self.talk.open(AGENT, by="bench")
        began = time.monotonic()
        for n in range(1, a.long + 1):
            self.turn(sid, f"long session message {n}")
        built = time.monotonic() - began
        self.notes.append(f"(b) {a.long} turns driven one after another in {built:.0f} s "
                          f"({built / a.long * 1000:.1f} ms a turn, model and tool included)")
        cold, warm = [], []
        for r in range(a.rounds):
            deadline = time.monotonic() + a.ttl + 30
            while not self.expired(sid):
                if time.monotonic() > deadline:
                    raise TimeoutError("the session's Redis keys did not expire")
                time.sleep(0.2)
            for into in (cold, warm):
                reply, seconds = self.turn(sid, f"after the ttl, round {r}")
                into.append(seconds * 1000 - self.inner_ms(sid)[reply.turn])
        self.row(f"(b) cold turn after TTL, {a.long}-turn session", f"median {statistics.median(cold):.1f} ms, "
                 f"max {max(cold):.1f}", "<= 100 ms", max(cold) <= 100)
        self.row("(b) the warm turn right after it", f"median {statistics.median(warm):.1f} ms, max {max(warm):.1f}")

    # -- (c) --------------------------------------------------------------------------------------

    def census(self, sids: list[str]) -> tuple[int, int]:
        client = self.fleet.hot
        wanted = set(sids)
        keys = [k for k in client.scan_iter(match="steplog:*", count=1000) if wanted & set(k.decode().split(":"))]
        return len(keys), sum(client.memory_usage(k) or 0 for k in keys)

    def part_c(self) -> None:
        a = self.args
        sids = [self.talk.open(AGENT, by="bench") for _ in range(a.idle)]
        sem = threading.Semaphore(16)
        errors: list[BaseException] = []

        def one(sid: str) -> None:
            with sem:
                try:
                    self.turn(sid, "hello, then silence")
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=one, args=(sid,)) for sid in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        keys, size = self.census(sids)
        self.row(f"(c) Redis held by {a.idle} idle sessions, fresh", f"{keys} keys, {size:,} bytes")
        deadline = time.monotonic() + a.ttl + 30
        while self.census(sids)[0] and time.monotonic() < deadline:
            time.sleep(0.5)
        keys, size = self.census(sids)
        self.row(f"(c) ... after their TTL ({a.ttl} s)", f"{keys} keys, {size} bytes", "0 bytes", size == 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds between a session's turns")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--long", type=int, default=1000, help="(b) turns of the long session")
    ap.add_argument("--rounds", type=int, default=3, help="(b) cold turns measured")
    ap.add_argument("--idle", type=int, default=1000, help="(c) idle sessions")
    ap.add_argument("--ttl", type=int, default=8, help="STEPLOG_SESSION_TTL_SECONDS of the run")
    ap.add_argument("--redis-db", type=int, default=0, help="scratch Redis database number (must be empty)")
    ap.add_argument("--single", type=int, default=200, help="(s) turns of the single session")
    ap.add_argument("--parts", default="sabc")
    args = ap.parse_args()
    if args.ttl < args.think * 5:
        sys.exit("--ttl must be at least 5 x --think, or (a)'s sessions would go cold between turns")

    os.environ.setdefault("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
    os.environ.setdefault("STEPLOG_BROKER_URL", "redis://localhost:6379/0")
    from benchkit import BenchFleet, scratch_database, servers, worker_env

    settings = servers()
    broker, scratch = empty_redis(settings.broker_url, args.redis_db)
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-sessions-"))
    began = time.monotonic()
    print(f"Postgres {settings.database_url.split('@')[-1]}, Redis {broker}; logs in {log_dir}; "
          f"{os.cpu_count()} cores, {loadavg()}", flush=True)
    bench = None
    with scratch_database(settings.database_url) as db:
        env = worker_env(db, broker, STEPLOG_REDIS_URL=broker, STEPLOG_WORKFLOW_MODULES=MODULES,
                         STEPLOG_SESSION_TTL_SECONDS=str(args.ttl))
        os.environ.update({k: v for k, v in env.items() if k.startswith("STEPLOG_")})
        fleet = BenchFleet(env, log_dir)
        fleet.hot = scratch
        try:
            fleet.start(args.workers, "--concurrency=1")
            bench = Bench(fleet, args)
            warm = bench.talk.open(AGENT, by="bench")
            for n in range(20):  # warm up: imports, connections, caches
                bench.turn(warm, f"warm up {n}")
            for part in args.parts:
                print(f"part ({part}) ...", flush=True)
                getattr(bench, f"part_{part}")()
        finally:
            fleet.close()
            scratch.flushdb()
            scratch.close()

    print(f"\nsteplog sessions, {time.monotonic() - began:.0f} s; {loadavg()}")
    print(f"{'measure':46} {'figure':>34}   {'target':16} met?")
    for measure, figure, target, met in bench.rows:
        print(f"{measure:46} {figure:>34}   {target:16} {met}")
    print("\nnotes:")
    for text in bench.notes:
        print("  " + text)


if __name__ == "__main__":
    main()
