"""`steplog chaos --faults partition`: a worker on a host of its own, whose link chaos cuts and restores.

The host is a Linux network namespace (:mod:`workers.partition`) reaching Postgres, Redis and
RabbitMQ only through a relay in the chaos process. Its worker is started like the fleet's first local
worker (same interpreter, environment and working directory), with the service URLs pointed at the
relay. Cutting the link stalls every connection of that worker at once: its heartbeats stop counting,
its steps are taken over elsewhere, and when the link comes back its late commits are refused.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from workers.partition import Host, Network, relay_urls

URL_SETTINGS = ("STEPLOG_DATABASE_URL", "STEPLOG_BROKER_URL", "STEPLOG_REDIS_URL")


class PartitionedWorker:
    """One worker on a test host of its own; :meth:`close` removes the worker, host and relay."""

    def __init__(self, settings: Any, template: Any, log_dir: Path) -> None:
        """``template``: a local worker (:class:`workers.cli.chaos_procs.WorkerTarget`) to start like: its
        interpreter (its argv[0], a venv's python), environment and working directory."""
        self.network = Network()
        self.relay = self.proc = None
        try:
            self.host: Host = self.network.host()
            urls = [settings.database_url, settings.broker_url, settings.redis_url]
            given = [(name, url) for name, url in zip(URL_SETTINGS, urls) if url]
            self.relay, relayed = relay_urls(self.network.service_ip, [url for _, url in given])
            env = {**template.environ, **{name: url for (name, _), url in zip(given, relayed)}}
            self.node = f"partition-{self.network.tag}@{self.host.ns}"
            log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = log_dir / f"{self.node.replace('@', '-')}.log"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [*self.host.prefix, template.program, "-m", "workers", "worker", f"--hostname={self.node}"],
                    env=env, cwd=template.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            self.close()
            raise

    def pids(self) -> list[int]:
        """The worker's processes (the worker and any pool children)."""
        try:
            p = psutil.Process(self.proc.pid)
            return [p.pid, *(c.pid for c in p.children(recursive=True))]
        except psutil.Error:
            return []

    def wait_ready(self, registered, timeout: float) -> bool:
        """Until ``registered(node)`` (its liveness row is there) or it exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if registered(self.node):
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.pids():
                try:
                    psutil.Process(pid).kill()
                except psutil.Error:
                    pass
            self.proc.wait(timeout=10)
        if self.relay is not None:
            self.relay.close()
        self.network.close()
