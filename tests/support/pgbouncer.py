"""A real PgBouncer (Debian's package) in transaction pooling mode, in front of the tests' Postgres.

Its config, auth file and log live in a directory of the test's; it listens on a port of its own and
passes every database name through (``*``), so a test's own database works behind it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.harness import wait_for
from tests.support.servers import PG_URL
from workers.local.procs import free_port


def binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.path.exists(p)), None)


@contextmanager
def pgbouncer(directory: Path, *, pool_size: int = 20) -> Iterator[int]:
    """Start PgBouncer (transaction mode) in ``directory``; yields its port; stopped on exit."""
    exe = binary()
    assert exe, "pgbouncer is not installed (apt-get install pgbouncer)"
    target = make_url(PG_URL)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    users = directory / "users.txt"
    users.write_text(f'"{target.username}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={target.host or '127.0.0.1'} port={target.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\n"
        f"max_client_conn = 1000\ndefault_pool_size = {pool_size}\n"
        # It refuses to run as root; as root it needs a user to become (the files must stay readable).
        + ("user = postgres\n" if os.geteuid() == 0 else "")
    )
    for path in (directory, users, config):
        path.chmod(0o755 if path.is_dir() else 0o644)
    log = (directory / "pgbouncer.log").open("wb")
    proc = subprocess.Popen([exe, str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "listening on 127.0.0.1" in (directory / "pgbouncer.log").read_text()
                 or proc.poll() is not None, timeout=15, what="pgbouncer to listen")
        assert proc.poll() is None, (directory / "pgbouncer.log").read_text()
        yield port
    finally:
        proc.send_signal(signal.SIGINT)  # closes its server connections, so the test's database can be dropped
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def through(url: str, port: int) -> str:
    """``url`` (a database on the tests' Postgres) reached through PgBouncer on ``port``."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
