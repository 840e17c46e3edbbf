"""The HTTP API under load, on loopback: two `steplog api` replicas on one scratch database.

(a) `GET /runs/{id}` (a 12-event run, with a bearer token: the token's lookup, the run, its events and
    the step in flight) from --clients concurrent clients spread over both replicas, offered at a fixed
    --rate (requests/s, open loop: a late response does not slow the schedule down) for --seconds:
    latency median and p99 from the time each request was due, and the requests/s served.
(b) --streams open event streams (`GET /runs/{id}/events`), --followers per run, on runs of
    `countdown` stepping every --step-sleep seconds on 2 workers: the API processes' memory per stream
    (RSS with the streams open, minus before), and delivery latency: each event's Postgres commit
    (its created_at) to the client reading it, median and p99.

The load generator is one asyncio process (httpx) on the same 2 cores: its own CPU is part of what is
measured. Usage: python scripts/bench_api.py [--rate 500] [--clients 100] [--seconds 20] [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchkit import empty_redis, loadavg, pct  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far: per-request CPU is a figure the load cannot flatter."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def _conn(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One request on a kept-alive connection; its status. A minimal HTTP/1.1 client: httpx costs the
    generator more CPU per request than the server spends, on the same two cores."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return status


async def part_a(urls: list[str], headers: dict[str, str], run_id: str, args: argparse.Namespace) -> dict[str, float]:
    total = int(args.rate * args.seconds)
    due_queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        due_queue.put_nowait(i)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.5
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def client(n: int) -> None:
        nonlocal errors
        url = urls[n % len(urls)]
        request = f"GET /runs/{run_id} HTTP/1.1\r\nHost: {url[7:]}\r\n{extra}\r\n".encode()
        reader, writer = await _conn(url)
        while True:
            try:
                i = due_queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                ok = await _get(reader, writer, request) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                ok = False
                reader, writer = await _conn(url)
            latencies.append((time.perf_counter() - due) * 1000)
            errors += not ok
        writer.close()

    await asyncio.gather(*(client(n) for n in range(args.clients)))
    elapsed = time.perf_counter() - start
    return {"n": total, "errors": errors, "median": statistics.median(latencies), "p99": pct(latencies, 99),
            "rps": total / elapsed}


async def part_b(urls: list[str], headers: dict[str, str], run_ids: list[str], args: argparse.Namespace,
                 pids: list[int]) -> dict[str, float]:
    import httpx

    before = sum(rss_kib(p) for p in pids)
    delays: list[float] = []
    opened = asyncio.Event()
    counter = {"open": 0}
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=0)
    clients = [httpx.AsyncClient(base_url=u, headers=headers, limits=limits, timeout=None) for u in urls]

    async def follow(i: int, run_id: str) -> None:
        client = clients[i % len(clients)]
        async with client.stream("GET", f"/runs/{run_id}/events") as res:
            listening = time.time()
            counter["open"] += 1
            if counter["open"] == args.streams:
                opened.set()
            async for line in res.aiter_lines():
                if line.startswith("data: ") and '"created_at"' in line:
                    import json

                    doc = json.loads(line[6:])
                    committed = datetime.fromisoformat(doc["created_at"]).timestamp()
                    # Only events committed while this client listened and every stream was open: the
                    # backlog a stream reads when it opens is a catch-up, not a delivery.
                    if opened.is_set() and committed > listening:
                        delays.append((time.time() - committed) * 1000)

    tasks = [asyncio.create_task(follow(i, run_ids[i // args.followers])) for i in range(args.streams)]
    await asyncio.wait_for(opened.wait(), 120)
    await asyncio.sleep(2)
    during = sum(rss_kib(p) for p in pids)
    await asyncio.gather(*tasks)
    for c in clients:
        await c.aclose()
    return {"streams": args.streams, "kib_per_stream": (during - before) / args.streams, "events": len(delays),
            "median": statistics.median(delays), "p99": pct(delays, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--followers", type=int, default=10, help="(b) streams per run")
    ap.add_argument("--step-sleep", type=float, default=0.2, help="(b) seconds each countdown step sleeps")
    ap.add_argument("--steps", type=int, default=4, help="(b) steps of each followed run")
    ap.add_argument("--redis-db", type=int, default=0)
    ap.add_argument("--parts", default="ab")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))

    os.environ.setdefault("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
    os.environ.setdefault("STEPLOG_BROKER_URL", "redis://localhost:6379/0")
    from workers.fleet import ApiProc
    from benchkit import BenchFleet, scratch_database, servers, worker_env

    from checkpoint import access

    settings = servers()
    broker, scratch = empty_redis(settings.broker_url, args.redis_db)
    log_dir = Path(tempfile.mkdtemp(prefix="steplog-bench-api-"))
    print(f"Postgres {settings.database_url.split('@')[-1]}, Redis {broker}; logs in {log_dir}; "
          f"{os.cpu_count()} cores, {loadavg()}", flush=True)
    rows: list[tuple[str, str, str, str]] = []
    with scratch_database(settings.database_url) as db:
        env = {**worker_env(db, broker, STEPLOG_REDIS_URL=broker), "STEPLOG_LOG_LEVEL": "WARNING"}
        os.environ.update({k: v for k, v in env.items() if k.startswith("STEPLOG_")})
        fleet = BenchFleet(env, log_dir)
        replicas = [ApiProc(env, log_dir), ApiProc(env, log_dir)]
        try:
            for r in replicas:
                r.wait_up()
            _, token = access.create(fleet.engine, tenant="bench", role="operator", name="bench", created_by="bench")
            headers = {"Authorization": f"Bearer {token}"}
            urls = [r.url for r in replicas]
            fleet.start(2, "--concurrency=1")
            if "a" in args.parts:
                print("part (a) ...", flush=True)
                run_id = fleet.app.steplog.submit("countdown", {"steps": 10}, submitted_by="bench", tenant="bench")
                fleet.wait_all([run_id])
                pids = [r.proc.pid for r in replicas]
                cpu_before, own_before = sum(cpu_seconds(p) for p in pids), time.process_time()
                a = asyncio.run(part_a(urls, headers, run_id, args))
                api_cpu = (sum(cpu_seconds(p) for p in pids) - cpu_before) / a["n"] * 1000
                gen_cpu = (time.process_time() - own_before) / a["n"] * 1000
                rows.append((f"(a) GET /runs/{{id}}, {args.clients} clients, 2 replicas", f"{a['n']} requests, "
                             f"{a['errors']} errors", "-", "-"))
                rows.append(("(a) requests/s served", f"{a['rps']:.0f} (offered {args.rate:.0f})", "500",
                             "yes" if a["rps"] >= 0.98 * 500 and args.rate >= 500 else "NO"))
                rows.append(("(a) API CPU per request (both replicas)", f"{api_cpu:.2f} ms", "-", "-"))
                rows.append(("(a) load generator CPU per request", f"{gen_cpu:.2f} ms", "-", "-"))
                rows.append(("(a) latency median", f"{a['median']:.1f} ms", "-", "-"))
                rows.append(("(a) latency p99", f"{a['p99']:.1f} ms", "<= 25 ms", "yes" if a["p99"] <= 25 else "NO"))
            if "b" in args.parts:
                print("part (b) ...", flush=True)
                n_runs = -(-args.streams // args.followers)
                run_ids = [fleet.app.steplog.submit("countdown", {"steps": args.steps, "sleep": args.step_sleep},
                                                    submitted_by="bench", tenant="bench") for _ in range(n_runs)]
                b = asyncio.run(part_b(urls, headers, run_ids, args, [r.proc.pid for r in replicas]))
                rows.append((f"(b) {b['streams']} open event streams ({n_runs} runs)", f"{b['events']} events read", "-", "-"))
                rows.append(("(b) API memory per open stream", f"{b['kib_per_stream']:.1f} KiB", "-", "-"))
                rows.append(("(b) commit -> client, median", f"{b['median']:.1f} ms", "-", "-"))
                rows.append(("(b) commit -> client, p99", f"{b['p99']:.1f} ms", "<= 100 ms", "yes" if b["p99"] <= 100 else "NO"))
        finally:
            for r in replicas:
                r.stop()
            fleet.close()
            scratch.flushdb()
            scratch.close()
    print(f"\nsteplog API; {loadavg()}")
    print(f"{'measure':48} {'figure':>30}   {'target':10} met?")
    for measure, figure, target, met in rows:
        print(f"{measure:48} {figure:>30}   {target:10} {met}")


if __name__ == "__main__":
    main()
