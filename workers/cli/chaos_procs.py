"""This machine's steplog worker processes of one fleet: find them, kill them, start them again.

A fleet is the set of workers sharing a Postgres database, so a process counts only when its own
environment points at the same database as the caller (parallel fleets on one machine are never
touched). Only processes whose command line runs a steplog worker are ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from workers.local import DEFAULT_HOME
from workers.local.procs import gone, wait_until

CELERY_APPS = ("workers.app", "workers.app:app")


def is_worker_cmdline(argv: list[str]) -> bool:
    """``python -m workers worker``, ``steplog worker`` or ``celery -A workers.app worker``."""
    names = [os.path.basename(a) for a in argv]
    python = bool(names) and names[0].startswith("python")
    for i in range(len(argv) - 1):
        if python and argv[i] == "-m" and argv[i + 1] == "workers" and argv[i + 2 : i + 3] == ["worker"]:
            return True
        # The console script, run directly or by its interpreter (how /proc shows it).
        if names[i] == "steplog" and argv[i + 1] == "worker" and (i == 0 or (i == 1 and python)):
            return True
    celery = names[:1] == ["celery"] or (python and "celery" in names[1:2]) or (
        python and any(argv[i : i + 2] == ["-m", "celery"] for i in range(len(argv)))
    )
    return celery and "worker" in argv and _celery_app(argv) in CELERY_APPS


def _celery_app(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("-A", "--app") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--app="):
            return a.removeprefix("--app=")
        if a.startswith("-A") and len(a) > 2:
            return a[2:]
    return None


def normalize_db_url(url: str) -> str | None:
    """One spelling per database: the driver part dropped (postgres://, postgresql+psycopg://, ...)."""
    try:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    except (ArgumentError, ValueError):
        return None


def database_of(environ: dict[str, str], cwd: str) -> str | None:
    """The database a process with this environment and working directory uses, as steplog resolves it:
    STEPLOG_DATABASE_URL, else the local services of its STEPLOG_HOME (relative to its cwd)."""
    explicit = environ.get("STEPLOG_DATABASE_URL")
    if explicit:
        return normalize_db_url(explicit)
    from workers.local.errors import ServiceError
    from workers.local.servers import LocalServices

    home = Path(cwd, os.path.expanduser(environ.get("STEPLOG_HOME", DEFAULT_HOME)))
    try:
        return normalize_db_url(LocalServices(home).urls().database_url)
    except (ServiceError, OSError):
        return None


@dataclass
class WorkerTarget:
    """A worker's main process, read before any kill so it can be started again as it was."""

    pid: int
    exe: str
    cmdline: list[str]
    environ: dict[str, str]
    cwd: str
    create_time: float

    @property
    def program(self) -> str:
        """The file its argv[0] named, found as its shell found it: against its cwd or its PATH."""
        first = self.cmdline[0]
        if os.sep in first:
            return os.path.join(self.cwd, first)  # an absolute argv[0] stays as it is
        return shutil.which(first, path=self.environ.get("PATH")) or self.exe

    @property
    def hostname(self) -> str | None:
        """The node name its command line asks for (``--hostname=x`` / ``-n x``), if any."""
        for i, a in enumerate(self.cmdline):
            if a.startswith("--hostname="):
                return a.removeprefix("--hostname=")
            if a in ("--hostname", "-n") and i + 1 < len(self.cmdline):
                return self.cmdline[i + 1]
        return None

    def process(self) -> psutil.Process | None:
        """The same process (not a later one with a recycled pid), if it still runs."""
        try:
            p = psutil.Process(self.pid)
            if p.create_time() == self.create_time and p.status() != psutil.STATUS_ZOMBIE:
                return p
        except psutil.Error:
            pass
        return None

    def group(self) -> list[psutil.Process]:
        """The main process and all its descendants (prefork pool children)."""
        p = self.process()
        if p is None:
            return []
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]


def find_workers(database_url: str) -> list[WorkerTarget]:
    """Main processes of the steplog workers on this machine that use ``database_url``."""
    want = normalize_db_url(database_url)
    found: dict[int, WorkerTarget] = {}
    parents: dict[int, int] = {}
    for p in psutil.process_iter(["pid", "ppid", "cmdline", "status", "create_time"]):
        info = p.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if not info["cmdline"] or not is_worker_cmdline(info["cmdline"]):
            continue
        try:
            environ, cwd, exe = p.environ(), p.cwd(), p.exe()
        except psutil.Error:  # gone, or another user's process
            continue
        if database_of(environ, cwd) != want:
            continue
        found[info["pid"]] = WorkerTarget(info["pid"], exe, info["cmdline"], environ, cwd, info["create_time"])
        parents[info["pid"]] = info["ppid"]
    # Prefork pool children run the same command line; only the main process of each worker counts.
    return sorted((t for pid, t in found.items() if parents[pid] not in found), key=lambda t: t.pid)


def kill(target: WorkerTarget, timeout: float = 10.0) -> list[int]:
    """SIGKILL the worker and its pool children; return their pids once all are dead."""
    procs = target.group()
    if not procs:
        return []
    pids = {p.pid for p in procs}
    try:
        pgid = os.getpgid(target.pid)
    except ProcessLookupError:
        return []
    members = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid}
    if pgid == target.pid and members <= pids:
        os.killpg(pgid, signal.SIGKILL)
    else:
        # The group holds other processes (say, the shell or test that started the worker): kill the
        # worker's own processes one by one, the main one first so it forks no new pool child.
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
    if not wait_until(lambda: all(gone(p) for p in procs), timeout, interval=0.02):
        raise RuntimeError(f"worker pid {target.pid} still alive {timeout}s after SIGKILL")
    return sorted(pids)


def pause(target: WorkerTarget) -> list[psutil.Process]:
    """SIGSTOP the worker and its pool children (frozen mid-whatever, holding its leases and its
    connections: a zombie once its leases are taken over); return them, for :func:`resume`."""
    procs = target.group()
    for p in procs:
        try:
            p.send_signal(signal.SIGSTOP)
        except psutil.NoSuchProcess:
            pass
    return procs


def resume(procs: list[psutil.Process]) -> None:
    """SIGCONT processes :func:`pause` stopped (those still there)."""
    for p in procs:
        try:
            p.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def restart(target: WorkerTarget, log_dir: Path) -> subprocess.Popen:
    """Start the worker again with its command line, environment and working directory, in a new
    session (its own process group), logging to ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    name = (target.hostname or "worker").replace("/", "_")
    log_path = log_dir / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{target.pid}.log"
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            target.cmdline, executable=target.program, env=target.environ, cwd=target.cwd, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
