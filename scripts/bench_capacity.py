"""What one durable step costs the shared servers, and how that holds as worker hosts are added.

On a Postgres and a Redis of its own (started here, under a temporary directory: the counters then
hold nothing but this benchmark), with pg_stat_statements preloaded, it runs `countdown` runs (sleep 0)
on 1, 2 and 4 worker hosts (one `steplog worker -c 1` each) and prints, per durable step:

- Postgres statements and round trips (pg_stat_statements calls: in the extended protocol each
  call is one round trip), by statement; commits (pg_stat_database.xact_commit); WAL bytes
  (pg_current_wal_lsn difference, and per statement from pg_stat_statements);
- Postgres CPU microseconds: the CPU time of every server process (postmaster, backends, WAL
  writer, checkpointer, ... and children that exited), from /proc;
- broker and hot-tier operations (Redis INFO commandstats difference), by command, and round trips
  (INFO stats total_reads_processed: one read event per request or pipeline a client sends);
- worker CPU microseconds (the worker processes, from /proc).

As root, each worker host is a Linux network namespace of its own (tests/support/netns.py) reaching
the servers over its veth link, as separate machines would; otherwise the workers run on this host.
Steps are the measured runs' steps; everything else in the window (heartbeats, sweeps, submissions,
this script's one polling query) is counted too, and shown apart, so "per step" is what the fleet
costs per step of work, not only the step's own statements.

Usage: python scripts/bench_capacity.py [--runs 40] [--steps 50] [--hosts 1,2,4] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import redis

from benchkit import ROOT, BenchFleet, loadavg, worker_env

from checkpoint.queries import parse
from workers.fleet import WorkerProc
from workers.local.procs import free_port, wait_until
from workers.local.servers import LocalServices, find_redis_server
from workers.migrate import upgrade

SQL_FILES = [*ROOT.glob("checkpoint/*.sql"), *ROOT.glob("tools/**/*.sql"), *ROOT.glob("workers/*.sql")]
STEP_PATH = ("claim_step", "commit_step")  # the two statements the README promises per step


# -- naming what pg_stat_statements saw ---------------------------------------------------------------


def _shape(sql: str) -> str:
    """A statement's text up to its first parameter, comments and spacing dropped: enough to tell
    steplog's named queries apart, whatever the parameter style (``:name``, ``%(name)s``, ``$1``)."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = " ".join(sql.split())
    return re.split(r"(?<![:\w]):\w|%\(|\$\d", sql, maxsplit=1)[0][:80]


NAMED = {_shape(body): name for path in SQL_FILES for name, body in parse(path.read_text()).items()}


def statement_name(query: str) -> str:
    shape = _shape(query)
    for prefix, name in NAMED.items():
        if len(prefix) >= 12 and (shape.startswith(prefix) or prefix.startswith(shape) and len(shape) >= 12):
            return name
    return " ".join(query.split())[:48]


# -- servers of its own --------------------------------------------------------------------------------


class Servers:
    """Postgres (the project's local-services machinery, under a temporary home, restarted with
    pg_stat_statements and listening on ``listen``) and a Redis, both on free ports."""

    def __init__(self, home: Path, listen: list[str]) -> None:
        self.home, self.listen = home, listen
        self.pg = LocalServices(home)
        self.pg.up(["postgres"])  # initdb, the server user when root, the `steplog` database
        self.pg._postgres_down()
        hba = self.pg.pgdata / "pg_hba.conf"
        with open(hba, "a") as fh:  # the namespace hosts' addresses
            fh.write("host all all 10.0.0.0/8 trust\n")
        self.pg_port = free_port()
        options = (f"-h {','.join(listen)} -p {self.pg_port} -c unix_socket_directories='' -c max_connections=200 "
                   "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
                   "-c track_io_timing=off")
        done = self.pg._run_pg("pg_ctl", "start", "-D", str(self.pg.pgdata), "-l", str(self.pg.pg_log), "-o", options,
                               "-w", "-t", "60", timeout=70)
        if done.returncode != 0:
            raise RuntimeError(f"Postgres did not start: {done.stderr}\n{self.pg.pg_log.read_text()[-2000:]}")
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            [str(find_redis_server()), "--port", str(self.redis_port), "--bind", *listen, "--protected-mode", "no",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, cwd=home)
        if not wait_until(lambda: self._redis_answers(), 20):
            raise RuntimeError("Redis did not start")

    def _redis_answers(self) -> bool:
        try:
            return redis.Redis(port=self.redis_port).ping()
        except redis.ConnectionError:
            return False

    def urls(self, host: str = "127.0.0.1") -> tuple[str, str]:
        return (f"postgresql+psycopg://postgres@{host}:{self.pg_port}/steplog", f"redis://{host}:{self.redis_port}/0")

    def commits(self, start: str, end: str) -> int:
        """Commit records in the WAL between two LSNs: every transaction that wrote something (a
        read-only transaction writes no commit record, and costs no fsync)."""
        out = subprocess.run([str(self.pg.postgres_bin / "pg_waldump"), "--stats=record", "-p", str(self.pg.pgdata / "pg_wal"),
                              "-s", start, "-e", end], capture_output=True, text=True, timeout=120)
        found = re.search(r"^Transaction/COMMIT\s+(\d+)", out.stdout, re.MULTILINE)
        if found is None and out.returncode != 0:
            raise RuntimeError(f"pg_waldump failed: {out.stderr.strip()}")
        return int(found.group(1)) if found else 0

    def postmaster(self) -> psutil.Process:
        pid = int((self.pg.pgdata / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def close(self) -> None:
        self.redis.kill()
        self.redis.wait()
        self.pg._run_pg("pg_ctl", "stop", "-D", str(self.pg.pgdata), "-m", "immediate", "-w", "-t", "30", timeout=40)


def cpu_seconds(procs: list[psutil.Process], *, with_reaped_children: bool = False) -> float:
    """User + system CPU of ``procs`` and their live descendants (and of their exited children)."""
    total, seen = 0.0, set()
    for p in procs:
        try:
            family = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for q in family:
            if q.pid in seen:
                continue
            seen.add(q.pid)
            try:
                t = q.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
            if with_reaped_children:
                total += t.children_user + t.children_system
    return total


# -- one measurement -------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    at: float
    wal_lsn: int
    lsn: str
    pg_cpu: float
    worker_cpu: float
    box_busy: float
    box_total: float
    redis_calls: Counter
    redis_reads: int  # read events the server processed: one per client round trip (a pipeline is one)


def snapshot(conn: psycopg.Connection, servers: Servers, workers: list[WorkerProc], r: redis.Redis) -> Snapshot:
    wal, lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_current_wal_lsn()::text").fetchone()
    reads = r.info("stats")["total_reads_processed"]
    stats = r.info("commandstats")
    calls = Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})
    cpu = psutil.cpu_times()
    busy = cpu.user + cpu.system + cpu.nice + getattr(cpu, "irq", 0) + getattr(cpu, "softirq", 0)
    return Snapshot(time.perf_counter(), int(wal), lsn,
                    cpu_seconds([servers.postmaster()], with_reaped_children=True),
                    cpu_seconds([psutil.Process(w.pid) for w in workers if w.alive()]),
                    busy, busy + cpu.idle + getattr(cpu, "iowait", 0), calls, reads)


POLL = "SELECT count(*) AS bench_pending FROM runs WHERE run_id = ANY(%s) AND status NOT IN ('succeeded', 'failed')"


def statements(conn: psycopg.Connection) -> dict[tuple[str, bool], tuple[int, int, float]]:
    """Calls, WAL bytes and execution ms per (named statement, top level) since the last reset, in
    the `steplog` database. A top-level call is one the client sent: one round trip. A nested one
    runs inside another (a foreign key check of an INSERT): server work, no round trip."""
    rows = conn.execute(
        "SELECT s.query, s.toplevel, s.calls, s.wal_bytes, s.total_exec_time FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'steplog'"
    ).fetchall()
    out: dict[tuple[str, bool], list] = {}
    for query, toplevel, calls, wal, ms in rows:
        name = "(this benchmark's polling)" if "bench_pending" in query else statement_name(query)
        acc = out.setdefault((name, toplevel), [0, 0, 0.0])
        acc[0] += calls
        acc[1] += int(wal)
        acc[2] += ms
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def wait_done(conn: psycopg.Connection, ids: list[str], timeout: float) -> None:
    """Until every run ended: one statement every 0.1 s, autocommit, named so the report leaves it out."""
    deadline = time.monotonic() + timeout
    while conn.execute(POLL, (ids,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs unfinished after {timeout}s")
        time.sleep(0.1)


@dataclass
class Result:
    hosts: int
    steps: int
    seconds: float
    before: Snapshot
    after: Snapshot
    stmts: dict[tuple[str, bool], tuple[int, int, float]]
    commits: int
    idle_pg: float  # Postgres CPU seconds per second with the fleet up and no runs (heartbeats, sweeps)

    def per_step(self, value: float) -> float:
        return value / self.steps

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def pg_us(self) -> float:
        return self.per_step(self.after.pg_cpu - self.before.pg_cpu) * 1e6

    @property
    def pg_net_us(self) -> float:
        """Postgres CPU per step net of what the idle fleet costs it over the same time."""
        return self.per_step(self.after.pg_cpu - self.before.pg_cpu - self.idle_pg * self.seconds) * 1e6

    @property
    def pg_exec_us(self) -> float:
        """Execution time of the statements the fleet sent (pg_stat_statements), per step."""
        return sum(ms for (name, top), (_, _, ms) in self.stmts.items()
                   if top and name != "(this benchmark's polling)") * 1000 / self.steps

    @property
    def worker_us(self) -> float:
        return self.per_step(self.after.worker_cpu - self.before.worker_cpu) * 1e6

    @property
    def box_busy(self) -> float:
        return (self.after.box_busy - self.before.box_busy) / (self.after.box_total - self.before.box_total)

    @property
    def redis_ops(self) -> Counter:
        return self.after.redis_calls - self.before.redis_calls


def measure(hosts: int, servers: Servers, admin: psycopg.Connection, env: dict[str, str], log_dir: Path,
            runs: int, steps: int, prefixes: list[list[str]]) -> Result:
    fleet = BenchFleet(env, log_dir)
    bench_engine = fleet.engine
    r = redis.Redis(port=servers.redis_port)
    try:
        for i in range(hosts):
            w = WorkerProc(env, f"h{i + 1}", log_dir, "--concurrency=1", host=f"host{i + 1}",
                           prefix=prefixes[i] if prefixes else ())
            fleet.workers.append(w)
        for w in fleet.workers:
            w.wait_ready(bench_engine)
        fleet.wait_seen(hosts)
        # The window: from the first step's publish to the last run's end. The runs are written first
        # (their outbox rows wait the redispatch time before a sweeper would send them) and published
        # at once, so the window holds steps, not submissions.
        ids = [fleet.app.steplog.submit("countdown", {"steps": steps, "sleep": 0}, submitted_by="bench", precheck=False,
                                        publish=False) for _ in range(runs)]
        idle_from = snapshot(admin, servers, fleet.workers, r)
        time.sleep(3)
        idle_to = snapshot(admin, servers, fleet.workers, r)
        idle_pg = (idle_to.pg_cpu - idle_from.pg_cpu) / (idle_to.at - idle_from.at)
        admin.execute("SELECT pg_stat_statements_reset()")
        before = snapshot(admin, servers, fleet.workers, r)
        from checkpoint.steps import Dispatch

        for run_id in ids:
            fleet.app.steplog.publish(Dispatch(run_id, 2, "countdown"))
        wait_done(admin, ids, 900)
        after = snapshot(admin, servers, fleet.workers, r)
        stmts = statements(admin)
        fleet.check_runs(ids, steps)
        return Result(hosts, runs * steps, after.at - before.at, before, after, stmts,
                      servers.commits(before.lsn, after.lsn), idle_pg)
    finally:
        fleet.close()


# -- the report ------------------------------------------------------------------------------------------


def report(results: list[Result], netns: bool) -> None:
    base = results[0]
    n = base.steps
    print()
    print(f"per durable step, {base.hosts} worker host(s), {n} steps ({n / base.rate:.1f} s):")
    print(f"{'Postgres statement':44} {'calls/step':>10} {'WAL B/step':>11} {'exec us/step':>13}")
    fleet = {k: v for k, v in base.stmts.items() if k[0] != "(this benchmark's polling)"}
    for (name, top), (calls, wal, ms) in sorted(fleet.items(), key=lambda kv: (not kv[0][1], -kv[1][0])):
        if calls / n >= 0.005:
            label = name if top else f"  nested: {name}"
            print(f"{label:44} {calls / n:10.3f} {wal / n:11.0f} {ms * 1000 / n:13.1f}")

    def total(keep) -> float:
        return sum(c for (name, top), (c, _, _) in fleet.items() if top and keep(name)) / n

    print(f"{'= the step path (claim + commit)':44} {total(lambda k: k in STEP_PATH):10.3f}")
    print(f"{'= heartbeats, sweeps, their transactions':44} {total(lambda k: k not in STEP_PATH):10.3f}")
    print(f"{'= round trips (top-level statements)':44} {total(lambda k: True):10.3f}")
    polls = sum(c for (name, _), (c, _, _) in base.stmts.items() if name == "(this benchmark's polling)")
    print(f"(left out: this benchmark's {polls} polling statements)")
    print(f"commits per step (WAL commit records): {base.commits / n:.2f}")
    print(f"WAL bytes per step (LSN difference): {(base.after.wal_lsn - base.before.wal_lsn) / n:.0f}")
    ops = base.redis_ops
    reads = base.after.redis_reads - base.before.redis_reads
    print(f"Redis round trips per step (server read events): {reads / n:.2f}")
    print(f"Redis operations per step: {sum(ops.values()) / n:.2f}  (" +
          ", ".join(f"{k} {v / n:.2f}" for k, v in ops.most_common()) + ")")
    print()
    where = "each in a network namespace of its own" if netns else "all on this host (not root: no namespaces)"
    print(f"scaling: worker hosts {where}, one `steplog worker -c 1` per host, one Postgres")
    print(f"{'hosts':>5} {'steps/s':>8} {'PG CPU us/step':>15} {'net of idle':>12} {'PG exec us':>11} "
          f"{'PG cores':>9} {'worker CPU us/step':>19} {'box CPU busy':>13} {'Redis ops/step':>15}")
    for res in results:
        pg_cores = (res.after.pg_cpu - res.before.pg_cpu) / res.seconds
        print(f"{res.hosts:>5} {res.rate:8.1f} {res.pg_us:15.0f} {res.pg_net_us:12.0f} {res.pg_exec_us:11.0f} "
              f"{pg_cores:9.2f} {res.worker_us:19.0f} {res.box_busy:12.0%} {sum(res.redis_ops.values()) / res.steps:15.2f}")
    pg = [res.pg_net_us for res in results]
    print(f"Postgres CPU per step net of the idle fleet, across host counts: {min(pg):.0f}-{max(pg):.0f} us "
          f"(max/min {max(pg) / min(pg):.2f}); one Postgres core carries about {1e6 / statistics.median(pg):.0f} steps/s")
    print("(box CPU busy counts every process on the machine, other users' included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hosts", default="1,2,4")
    ap.add_argument("--keep", action="store_true", help="keep the temporary servers' directory")
    args = ap.parse_args()
    host_counts = [int(h) for h in args.hosts.split(",")]
    netns = os.geteuid() == 0 and shutil.which("ip") is not None
    net = None
    home = Path(tempfile.mkdtemp(prefix="steplog-capacity-"))
    log_dir = home / "logs"
    print(f"before: {loadavg()} on {os.cpu_count()} cores; servers and logs in {home}")
    servers = None
    try:
        listen = ["127.0.0.1"]
        if netns:
            sys.path.insert(0, str(ROOT))
            from tests.support.netns import Network

            net = Network()
            listen.append(net.service_ip)
            hosts = [net.host() for _ in range(max(host_counts))]
        servers = Servers(home, listen)
        db_url, redis_url = servers.urls()
        upgrade(db_url)
        admin = psycopg.connect(f"host=127.0.0.1 port={servers.pg_port} user=postgres dbname=steplog", autocommit=True)
        admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        results = []
        for n in host_counts:
            if netns:
                wdb, wredis = servers.urls(net.service_ip)
                prefixes = [h.prefix for h in hosts[:n]]
            else:
                wdb, wredis, prefixes = db_url, redis_url, []
            env = worker_env(db_url, redis_url, STEPLOG_QUEUE="capacity")
            worker_side = {**env, "STEPLOG_DATABASE_URL": wdb, "STEPLOG_BROKER_URL": wredis, "STEPLOG_REDIS_URL": wredis}
            res = measure(n, servers, admin, worker_side if netns else env, log_dir, args.runs, args.steps, prefixes)
            results.append(res)
            print(f"{n} host(s): {res.rate:.1f} steps/s, Postgres {res.pg_us:.0f} us/step, {loadavg()}")
        kept = admin.execute(
            "SELECT sum(pg_total_relation_size(t::regclass)), (SELECT count(*) FROM events) "
            "FROM unnest(ARRAY['events', 'step_attempts', 'runs', 'outbox']) t").fetchone()
        admin.close()
        report(results, netns)
        print(f"Postgres bytes kept per event (events, step_attempts, runs, outbox, with indexes): {kept[0] / kept[1]:.0f}")
        print(f"after: {loadavg()}")
    finally:
        if servers is not None:
            servers.close()
        if net is not None:
            net.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
