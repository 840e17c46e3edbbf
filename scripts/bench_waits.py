"""Durable waits at scale: what parked runs cost, how fast a signal wakes one, how late timers and
cron ticks fire. Real `steplog worker` processes (solo pool, -c 1) on a scratch database and a scratch
Redis database; loopback only.

(a) --runs `waiter` runs parked on a signal (submitted with 2 workers running, throttled so at most
    --backlog wait to be stepped): Postgres bytes per waiting run (pg_total_relation_size of runs,
    events, signals, outbox: after minus before, over the count), Redis keys naming them, the broker
    queue length and kombu `unacked` entries, and each worker process's CPU over --idle-seconds idle,
    with none parked and with them parked
(b) --signals signals, one at a time with the workers idle, each to a parked `waiter` through
    app.steplog.signal (store + wake in one transaction, then publish, as `steplog signal`): from the
    signal row's created_at (the sending transaction's start) to the started_at of the woken step's
    attempt, both Postgres clocks
(c) --sleeps runs of the bench-only workflow `bench_alarm`, all sleeping until one whole second a few
    seconds ahead: the `woke` event's late_seconds, and the next step's start minus the due time
(d) a schedule ticking every second ("* * * * * *", countdown 1 step, overlap allow, catch_up all) for
    --ticks ticks on 3 workers: schedule_fires rows and runs per tick (duplicates, gaps)

Servers: STEPLOG_DATABASE_URL / STEPLOG_BROKER_URL when set, else Postgres localhost:5432 (user
postgres) and Redis localhost:6379. The broker must be Redis (the queue and `unacked` checks read it).

Usage: python scripts/bench_waits.py [--runs 10000] [--signals 1000] [--sleeps 1000] [--ticks 60]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchkit import empty_redis, loadavg, pct  # noqa: E402

from tasks.workflow import Finish, Sleep, StepContext, Workflow

# -- the bench-only workflow: workers load it as scripts.bench_waits (cwd is the repository) --------


class AlarmInput(BaseModel):
    until: datetime  # aware: when the sleep ends


def _alarm_step(ctx: StepContext) -> Finish | Sleep:
    if not ctx.state["slept"]:
        return Sleep(until=ctx.input.until, state={"slept": True})
    return Finish({"late_seconds": ctx.wake.late_seconds if ctx.wake else None})


ALARM = Workflow("bench_alarm", AlarmInput, lambda i: {"slept": False}, _alarm_step)
WORKFLOWS = [ALARM]

QUEUE = "bench-waits"
MODULES = "tests.support.wait_workflows,scripts.bench_waits"
SENTINEL = "bench-waits:sentinel"  # gone at a check: someone flushed our Redis database mid-run
RUN_ID = re.compile(rb"[0-9a-f]{32}")


# -- helpers ----------------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each process, its threads and its children: the scheduler's
    nanosecond counters (/proc/PID/task/TID/schedstat), not /proc/PID/stat's 10 ms ticks."""
    import psutil

    def threads_ns(pid: int) -> int:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that just ended
        return total

    out = {}
    for pid in pids:
        try:
            family = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
            out[pid] = sum(threads_ns(p) for p in family) / 1e9
        except (psutil.NoSuchProcess, FileNotFoundError):
            out[pid] = float("nan")
    return out


class Bench:
    def __init__(self, fleet: Any, db_url: str, broker: str, args: argparse.Namespace) -> None:
        import psycopg
        import redis
        from sqlalchemy.engine import make_url

        self.fleet, self.args, self.db_url = fleet, args, db_url
        self.dbname = make_url(db_url).database
        self.pg = psycopg.connect(make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False),
                                  autocommit=True)
        self.r = redis.Redis.from_url(broker)
        self.r.set(SENTINEL, "1")
        self.rows: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []
        self.pg_idle: dict[str, float] = {}

    # rows of the final table: measure, figure, target, met
    def row(self, measure: str, figure: str, target: str = "-", met: bool | None = None) -> None:
        self.rows.append((measure, figure, target, "n/a" if met is None else ("yes" if met else "NO")))

    def note(self, text: str) -> None:
        print("   " + text, flush=True)
        self.notes.append(text)

    def q(self, sql: str, *params: Any) -> list[tuple]:
        return self.pg.execute(sql, params).fetchall()

    def commit_probe(self, label: str, n: int = 200) -> None:
        """Context: what one small durable commit costs on this Postgres now (fsync of the WAL)."""
        self.pg.execute("CREATE TABLE IF NOT EXISTS bench_probe (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        took = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.pg.execute("INSERT INTO bench_probe DEFAULT VALUES")
            took.append((time.perf_counter() - t0) * 1000)
        self.note(f"one-row commit on this Postgres {label}: median {statistics.median(took):.2f} ms, "
                  f"p99 {pct(took, 99):.2f} ms ({n} commits; fsync {self.q('SHOW fsync')[0][0]}, "
                  f"synchronous_commit {self.q('SHOW synchronous_commit')[0][0]}); {loadavg()}")

    def redis_intact(self, phase: str) -> None:
        if not self.r.exists(SENTINEL):
            self.note(f"WARNING: the scratch Redis database was flushed by someone else during {phase}; "
                      "queued steps were lost and came back only through the sweeper's redispatch")
            self.r.set(SENTINEL, "1")

    # -- creating parked runs ---------------------------------------------------------------------

    def create(self, workflow: str, inputs: list[dict], want: str = "waiting", timeout: float = 900) -> tuple[list[str], float]:
        """Submit runs with the workers running, at most --backlog of them not yet stepped at a time;
        return their ids and the seconds until every one is ``want``."""
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        ids: list[str] = []
        backlog = self.args.backlog
        for i, data in enumerate(inputs):
            ids.append(self.fleet.submit(workflow, data))
            if i % 200 == 199:
                while self.q("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")[0][0] > backlog:
                    if time.monotonic() > deadline:
                        raise TimeoutError("parked runs are not being stepped")
                    time.sleep(0.05)
        submitted = time.perf_counter() - started
        while True:
            rows = dict(self.q("SELECT status, count(*) FROM runs WHERE run_id = ANY(%s) GROUP BY status", ids))
            if rows.get(want, 0) == len(ids):
                break
            bad = {k: v for k, v in rows.items() if k in ("failed", "cancelled")}
            if bad:
                raise RuntimeError(f"runs ended {bad} while parking; see worker logs")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all {len(ids)} runs are {want} after {timeout}s: {rows}")
            time.sleep(0.05)
        self.note(f"{len(ids)} {workflow} runs submitted in {submitted:.1f} s, all {want} after "
                  f"{time.perf_counter() - started:.1f} s")
        return ids, time.perf_counter() - started

    # -- (a) what parked runs cost ------------------------------------------------------------------

    TABLES = ("runs", "events", "signals", "outbox", "step_attempts")

    def sizes(self) -> dict[str, int]:
        return {t: self.q("SELECT pg_total_relation_size(%s)", t)[0][0] for t in self.TABLES}

    def idle_cpu(self, label: str) -> list[float]:
        """Each worker process's CPU (% of one core) over --idle-seconds with nothing to step, and the
        CPU of the Postgres backends serving this database (our own excluded)."""
        pids = [w.pid for w in self.fleet.workers]
        backends = [p for (p,) in self.q(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()", self.dbname)]
        scans = ("SELECT coalesce(sum(seq_scan), 0)::float8, coalesce(sum(seq_tup_read), 0)::float8, coalesce(sum(idx_scan), 0)::float8 "
                 "FROM pg_stat_user_tables WHERE relname = 'runs'")
        s0 = self.q(scans)[0]
        t0, before, pg_before = time.monotonic(), cpu_seconds(pids), cpu_seconds(backends)
        time.sleep(self.args.idle_seconds)
        dt, after, pg_after = time.monotonic() - t0, cpu_seconds(pids), cpu_seconds(backends)
        time.sleep(1.2)  # backends report table statistics at most once a second
        s1 = self.q(scans)[0]
        per = [100 * (after[p] - before[p]) / dt for p in pids]
        pg = 100 * sum(pg_after[p] - pg_before[p] for p in backends if not math.isnan(pg_after[p])) / dt
        analyzed = self.q("SELECT greatest(last_analyze, last_autoanalyze) IS NOT NULL, n_live_tup, n_dead_tup "
                          "FROM pg_stat_user_tables WHERE relname = 'runs'")[0]
        self.note(f"idle CPU {label}: workers {', '.join(f'{c:.2f}%' for c in per)} of a core; "
                  f"Postgres client backends of this database ({len(backends)}) {pg:.2f}%; {loadavg()}")
        self.note(f"  runs table in that window: {(s1[0] - s0[0]) / dt:.1f} seq scans/s reading "
                  f"{(s1[1] - s0[1]) / dt:.0f} rows/s, {(s1[2] - s0[2]) / dt:.1f} index scans/s; "
                  f"analyzed: {analyzed[0]}, {analyzed[1]} live / {analyzed[2]} dead rows")
        self.pg_idle[label] = pg
        return per

    def redis_census(self, ids: list[str]) -> tuple[int, int, int, int, list[str]]:
        """Keys naming any of ``ids``, the broker queue's length (all priority lists), kombu's unacked
        entries (hash and index), and every key name seen."""
        wanted = {i.encode() for i in ids}
        naming, queued, names = 0, 0, []
        for key in self.r.scan_iter(count=1000):
            names.append(key.decode(errors="replace"))
            if any(m in wanted for m in RUN_ID.findall(key)):
                naming += 1
            if key.startswith(QUEUE.encode()) and self.r.type(key) == b"list":
                queued += self.r.llen(key)
        unacked = self.r.hlen("unacked") if self.r.exists("unacked") else 0
        index = self.r.zcard("unacked_index") if self.r.exists("unacked_index") else 0
        return naming, queued, unacked, index, names

    def part_a(self) -> list[str]:
        n = self.args.runs
        print(f"\n(a) {n} waiting runs  [{loadavg()}]", flush=True)
        none_cpu = self.idle_cpu("with none parked")
        before = self.sizes()
        ids, took = self.create("waiter", [{"signal": "go"}] * n)
        self.row(f"(a) park {n} waiters", f"{took:.1f} s ({n / took:.0f}/s)", "-")
        time.sleep(2)  # acks and the last events settle
        after = self.sizes()
        delta = {t: after[t] - before[t] for t in self.TABLES}
        four = sum(delta[t] for t in ("runs", "events", "signals", "outbox"))
        self.note("Postgres growth: " + ", ".join(f"{t} {delta[t] / n:.0f} B" for t in self.TABLES) + " per run")
        live = self.q("SELECT (SELECT count(*) FROM events WHERE run_id = ANY(%s)), "
                      "(SELECT count(*) FROM outbox WHERE run_id = ANY(%s)), "
                      "(SELECT count(*) FROM signals WHERE run_id = ANY(%s))", ids, ids, ids)[0]
        self.note(f"their rows: {live[0]} events, {live[1]} outbox, {live[2]} signals (outbox and signals should be 0)")
        self.row("(a) PG bytes / waiting run", f"{four / n:.0f} B", "- (runs+events+signals+outbox)")
        self.row("(a)   step_attempts / run", f"{delta['step_attempts'] / n:.0f} B", "- (not in the sum)")

        naming, queued, unacked, index, names = self.redis_census(ids)
        self.note(f"Redis keys now: {sorted(set(names))[:12]}{' ...' if len(set(names)) > 12 else ''}")
        self.row("(a) Redis keys naming them", str(naming), "0", naming == 0)
        self.row("(a) broker queue length", str(queued), "0", queued == 0)
        self.row("(a) kombu unacked (hash/index)", f"{unacked}/{index}", "0", unacked == 0 and index == 0)

        parked_cpu = self.idle_cpu(f"with {n} parked")
        self.pg.execute("ANALYZE runs")  # what autovacuum does within a minute or so
        analyzed_cpu = self.idle_cpu(f"with {n} parked, after ANALYZE runs")
        for label, cpu in (("none parked", none_cpu), (f"{n} parked", parked_cpu), ("same, ANALYZEd", analyzed_cpu)):
            self.row(f"(a) worker CPU idle, {label}", " ".join(f"{c:.2f}%" for c in cpu),
                     "< 2% each", all(c < 2 for c in cpu))
        same = max(parked_cpu) - max(none_cpu)
        self.row("(a) CPU parked minus none", f"{same:+.2f} pp", "about 0 (|d| <= 0.5)", abs(same) <= 0.5)
        self.row("(a) PG backends CPU idle", " / ".join(f"{v:.2f}%" for v in self.pg_idle.values()),
                 "- (none / parked / ANALYZEd)")
        self.redis_intact("(a)")
        return ids

    # -- (b) signal to next step claimed ------------------------------------------------------------

    def part_b(self, parked: list[str]) -> None:
        n = self.args.signals
        print(f"\n(b) {n} signals, one at a time, idle workers  [{loadavg()}]", flush=True)
        if len(parked) < n:
            more, _ = self.create("waiter", [{"signal": "go"}] * (n - len(parked)))
            parked = parked + more
        self.commit_probe("before (b)")
        steplog = self.fleet.app.steplog
        sent: list[tuple[str, str, int, float, float]] = []
        for i, run_id in enumerate(parked[:n]):
            t0 = time.time()
            out = steplog.signal(run_id, "go", {"i": i}, sender="bench")
            t1 = time.time()
            if out.status != "delivered" or out.dispatch is None:
                raise RuntimeError(f"signal to {run_id}: {out.status}")
            if out.delivered_seq + 1 != out.dispatch.seq:
                self.note(f"odd: delivered_seq {out.delivered_seq} but dispatch seq {out.dispatch.seq}")
            sent.append((run_id, out.key, out.dispatch.seq, t0, t1))
            # Workers idle again before the next one: the woken step (it finishes the run) is done.
            time.sleep(0.01)
            deadline = time.monotonic() + 30
            while self.q("SELECT status FROM runs WHERE run_id = %s", run_id)[0][0] != "succeeded":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id} not finished 30 s after its signal")
                time.sleep(0.004)
            time.sleep(0.01)
        rows = {r[0]: r[1:] for r in self.q(
            """SELECT s.run_id, extract(epoch FROM s.created_at)::float8, extract(epoch FROM a.started_at)::float8,
                      e.seq, e.type
                 FROM signals s
                 JOIN step_attempts a ON a.run_id = s.run_id AND a.seq = s.consumed_seq + 1 AND a.attempt = 1
                 JOIN events e ON e.run_id = s.run_id AND e.seq = s.consumed_seq
                WHERE s.run_id = ANY(%s)""", [s[0] for s in sent])}
        pg_ms, host_ms, send_ms, after_ms = [], [], [], []
        for run_id, _key, seq, t0, t1 in sent:
            created, started, ev_seq, ev_type = rows[run_id]
            if ev_type != "signal" or ev_seq + 1 != seq:
                self.note(f"odd: run {run_id} event {ev_seq} {ev_type}, next step {seq}")
            pg_ms.append((started - created) * 1000)
            host_ms.append((started - t0) * 1000)
            send_ms.append((t1 - t0) * 1000)
            after_ms.append((started - t1) * 1000)
        self.note(f"send call (store+wake+publish) median {statistics.median(send_ms):.2f} ms, p99 {pct(send_ms, 99):.2f} ms; "
                  f"host clock before send -> attempt started: median {statistics.median(host_ms):.2f} ms, "
                  f"p99 {pct(host_ms, 99):.2f} ms, max {max(host_ms):.1f} ms; attempt started minus send returned: "
                  f"median {statistics.median(after_ms):+.2f} ms, p99 {pct(after_ms, 99):+.2f} ms")
        self.note(f"PG clock signal.created_at -> attempt.started_at: max {max(pg_ms):.1f} ms; "
                  f"> 20 ms: {sum(m > 20 for m in pg_ms)}, > 100 ms: {sum(m > 100 for m in pg_ms)}")
        med, p99 = statistics.median(pg_ms), pct(pg_ms, 99)
        self.row("(b) signal -> step claimed, p50", f"{med:.2f} ms", "<= 20 ms", med <= 20)
        self.row("(b) signal -> step claimed, p99", f"{p99:.2f} ms", "<= 100 ms", p99 <= 100)
        self.row("(b)   same, host clock p50/p99", f"{statistics.median(host_ms):.2f}/{pct(host_ms, 99):.2f} ms",
                 "- (from before the call)")
        self.commit_probe("after (b)")
        self.redis_intact("(b)")

    # -- (c) timer lateness ----------------------------------------------------------------------------

    def part_c(self) -> None:
        n = self.args.sleeps
        margin = 5 + n * self.args.park_seconds_each
        due = datetime.fromtimestamp(math.ceil(time.time() + margin), UTC)
        print(f"\n(c) {n} sleeps due at {due.isoformat()} (in {margin:.0f} s)  [{loadavg()}]", flush=True)
        ids, _ = self.create("bench_alarm", [{"until": due.isoformat()}] * n)
        left = due.timestamp() - time.time()
        self.note(f"all {n} parked {left:.1f} s before their due time")
        if left < 0.5:
            self.note("WARNING: runs were still being parked at the due time; raise --park-seconds-each")
        parked_late = self.q("SELECT count(*) FROM events WHERE run_id = ANY(%s) AND seq = 2 AND created_at > %s", ids, due)[0][0]
        deadline = due.timestamp() + 300
        while self.q("SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND status <> 'succeeded'", ids)[0][0]:
            if time.time() > deadline:
                raise TimeoutError("sleepers not finished 300 s after their due time")
            time.sleep(0.1)
        rows = self.q(
            """SELECT e.type, (e.payload->>'late_seconds')::float8, (e.payload->>'due_at')::timestamptz,
                      extract(epoch FROM e.created_at - %s)::float8, extract(epoch FROM a.started_at - %s)::float8
                 FROM events e JOIN step_attempts a ON a.run_id = e.run_id AND a.seq = e.seq + 1 AND a.attempt = 1
                WHERE e.run_id = ANY(%s) AND e.seq = 3""", due, due, ids)
        kinds = {r[0] for r in rows}
        dues = {r[2] for r in rows}
        if kinds != {"woke"} or dues != {due} or len(rows) != n:
            self.note(f"odd: event kinds {kinds}, due times {dues}, {len(rows)} rows for {n} runs")
        late = [r[1] for r in rows]
        start = [r[4] for r in rows]
        sweeps = self.q("SELECT count(DISTINCT created_at), count(DISTINCT worker) FROM events WHERE run_id = ANY(%s) AND seq = 3", ids)[0]
        self.note(f"woken by {sweeps[0]} sweep transactions of {sweeps[1]} workers; {parked_late} parked after the due time")
        self.note(f"next step start - due: min {min(start):.3f} s, p50 {statistics.median(start):.3f} s, "
                  f"p99 {pct(start, 99):.3f} s, max {max(start):.3f} s: {n} woken steps started over "
                  f"{max(start) - min(start):.2f} s = {n / max(max(start) - min(start), 1e-9):.0f} steps/s")
        # Was the drain bound by the workers? Their busy time (claim to commit) against the wall time.
        for worker, count, span, busy, step_ms in self.q(
            """SELECT a.worker, count(*), extract(epoch FROM max(a.finished_at) - min(a.started_at))::float8,
                      extract(epoch FROM sum(a.finished_at - a.started_at))::float8, avg(a.step_ms)::float8
                 FROM step_attempts a WHERE a.run_id = ANY(%s) AND a.seq = 4 GROUP BY a.worker ORDER BY a.worker""", ids):
            self.note(f"  {worker}: {count} steps in {span:.2f} s, {span * 1000 / count:.2f} ms each; claim-to-commit "
                      f"{busy * 1000 / count:.2f} ms each ({100 * busy / span:.0f}% of the span), step body {step_ms:.2f} ms")
        self.row("(c) woke late_seconds p50/p99/max",
                 f"{statistics.median(late):.3f}/{pct(late, 99):.3f}/{max(late):.3f} s", "p99 <= 1 s", pct(late, 99) <= 1)
        self.row("(c) next step start-due p50/p99/max",
                 f"{statistics.median(start):.3f}/{pct(start, 99):.3f}/{max(start):.3f} s", "p99 <= 1 s", pct(start, 99) <= 1)
        self.redis_intact("(c)")

    # -- (d) cron ---------------------------------------------------------------------------------------

    def part_d(self) -> None:
        ticks = self.args.ticks
        self.fleet.start(1, "--concurrency=1")  # a third worker
        name = f"bench-{os.getpid()}"
        print(f"\n(d) schedule {name!r} every second for {ticks} ticks on {len(self.fleet.workers)} workers  [{loadavg()}]",
              flush=True)
        first = self.fleet.app.steplog.add_schedule(name, "* * * * * *", "countdown", {"steps": 1, "sleep": 0},
                                                    overlap="allow", catch_up="all", created_by="bench")
        first = first.astimezone(UTC)
        window = [first + timedelta(seconds=k) for k in range(ticks)]
        last = window[-1]
        deadline = last.timestamp() + 30
        while time.time() < deadline:
            n = self.q("SELECT count(*) FROM schedule_fires WHERE schedule = %s AND tick <= %s", name, last)[0][0]
            if n >= ticks and time.time() > last.timestamp() + 1:
                break
            time.sleep(0.2)
        # schedule_fires rows go with their schedule (ON DELETE CASCADE): read them before removing it
        fires = self.q("SELECT tick, outcome, run_id, extract(epoch FROM fired_at - tick)::float8 FROM schedule_fires "
                       "WHERE schedule = %s", name)
        from checkpoint import schedules

        schedules.remove(self.fleet.engine, name)
        removed_at = time.time()
        time.sleep(1.5)  # a sweep that took the schedule before the removal commits its tick
        runs = self.q("SELECT run_id, payload->>'tick', pid FROM events WHERE seq = 1 AND type = 'submitted' "
                      "AND payload->>'schedule' = %s", name)
        deadline = time.monotonic() + 60
        while self.q("SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND status <> 'succeeded'", [r[0] for r in runs])[0][0]:
            if time.monotonic() > deadline:
                self.note("WARNING: some cron runs did not finish within 60 s")
                break
            time.sleep(0.1)
        in_window = set(window)
        fired = [f for f in fires if f[0] in in_window]
        started = [f for f in fired if f[1] == "started"]
        per_tick: dict[datetime, int] = {}
        for _run, tick, _pid in runs:
            t = datetime.fromisoformat(tick).astimezone(UTC)
            per_tick[t] = per_tick.get(t, 0) + 1
        runs_in = sum(c for t, c in per_tick.items() if t in in_window)
        dups = sum(c - 1 for t, c in per_tick.items() if t in in_window and c > 1)
        gaps = [t for t in window if per_tick.get(t, 0) == 0]
        outside = sum(c for t, c in per_tick.items() if t not in in_window)
        delays = [f[3] for f in started]
        by_pid: dict[int, int] = {}
        for _run, tick, pid in runs:
            by_pid[pid] = by_pid.get(pid, 0) + 1
        self.note(f"window {first.isoformat()} .. {last.isoformat()}; removed {removed_at - last.timestamp():.1f} s after "
                  f"the last tick; {outside} runs for ticks after the window (fired before the removal)")
        if delays:
            self.note(f"fired_at - tick: p50 {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms; "
                      f"runs per firing worker pid: {sorted(by_pid.values(), reverse=True)}")
        skipped = len(fired) - len(started)
        self.row(f"(d) cron ticks fired/{ticks}", f"{len(started)} started, {skipped} skipped", f"{ticks}", len(started) == ticks)
        self.row(f"(d) cron runs for {ticks} ticks", str(runs_in), f"{ticks}", runs_in == ticks)
        self.row("(d) cron duplicates / gaps", f"{dups} / {len(gaps)}", "0 / 0", dups == 0 and not gaps)
        self.redis_intact("(d)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000, help="(a) waiting runs")
    ap.add_argument("--signals", type=int, default=1000, help="(b) signals sent one at a time")
    ap.add_argument("--sleeps", type=int, default=1000, help="(c) sleeps due at one instant")
    ap.add_argument("--ticks", type=int, default=60, help="(d) cron ticks (one a second)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="(a) window of the idle CPU readings")
    ap.add_argument("--backlog", type=int, default=1000, help="most submitted runs not yet stepped while parking")
    ap.add_argument("--park-seconds-each", type=float, default=0.01,
                    help="(c) seconds allowed per sleeper to park before the common due time (plus 5 s)")
    ap.add_argument("--redis-db", type=int, default=0, help="scratch Redis database number (must be empty)")
    args = ap.parse_args()

    # The machine's servers unless told otherwise: never start the project's local services here.
    os.environ.setdefault("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
    os.environ.setdefault("STEPLOG_BROKER_URL", "redis://localhost:6379/0")
    from benchkit import BenchFleet, scratch_database, servers, worker_env

    settings = servers()
    if not settings.broker_url.startswith("redis://"):
        sys.exit("bench_waits needs a Redis broker (it reads the queue and kombu's unacked hash)")
    broker, scratch = empty_redis(settings.broker_url, args.redis_db)
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-waits-"))
    began = time.monotonic()
    print(f"Postgres {settings.database_url.split('@')[-1]}, broker {broker}; logs in {log_dir}; "
          f"{os.cpu_count()} cores, {loadavg()}", flush=True)

    with scratch_database(settings.database_url) as db:
        env = worker_env(db, broker, STEPLOG_QUEUE=QUEUE, STEPLOG_WORKFLOW_MODULES=MODULES)
        fleet = BenchFleet(env, log_dir)
        bench = None
        try:
            fleet.start(2, "--concurrency=1")
            fleet.wait_all([fleet.submit("countdown", {"steps": 3, "sleep": 0}) for _ in range(4)])  # warm up
            bench = Bench(fleet, db, broker, args)
            parked = bench.part_a()
            bench.part_b(parked)
            bench.part_c()
            bench.part_d()
        finally:
            fleet.close()
            if bench is not None:
                bench.pg.close()
            scratch.flushdb()
            scratch.close()

    print(f"\nsteplog durable waits, {time.monotonic() - began:.0f} s; {loadavg()} (2-core machine shared with others' tests)")
    print(f"{'measure':38} {'figure':>28}   {'target':32} met?")
    for measure, figure, target, met in bench.rows:
        print(f"{measure:38} {figure:>28}   {target:32} {met}")
    print("\nnotes:")
    for text in bench.notes:
        print("  " + text)
    missed = [r[0] for r in bench.rows if r[3] == "NO"]
    print("\nmissed: " + (", ".join(m.strip() for m in missed) if missed else "none"))


if __name__ == "__main__":
    main()
