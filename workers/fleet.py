"""Local worker processes for the demo, chaos, benchmarks and tests: start, signal, kill, wait.

Each worker runs in its own process group, so a kill takes the worker and its pool children and
nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, text

from workers.local.procs import wait_until

ROOT = Path(__file__).resolve().parent.parent


class WorkerProc:
    """One `steplog worker` subprocess, logging to a file."""

    def __init__(self, env: dict[str, str], name: str, log_dir: Path, *extra: str, host: str = "local",
                 prefix: Sequence[str] = ()) -> None:
        """``prefix``: an argv to run the worker under (e.g. ``ip netns exec NS`` for another test host)."""
        self.name = name
        self.node = f"{name}@{host}"
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "workers", "worker", f"--hostname={self.node}", *extra],
            env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, engine: Engine, timeout: float = 60) -> None:
        """Until the worker has registered its liveness row (it is then consuming)."""

        def registered() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker {self.node} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with engine.connect() as conn:
                return conn.execute(text("SELECT 1 FROM worker_procs WHERE worker = :n"), dict(n=self.node)).first() is not None

        if not wait_until(registered, timeout, interval=0.05):
            raise RuntimeError(f"worker {self.node} did not start within {timeout}s; log: {self.log_path}")


class ApiProc:
    """One `steplog api` subprocess on a free loopback port, logging to a file; up once /healthz is 200."""

    def __init__(self, env: dict[str, str], log_dir: Path, *extra: str) -> None:
        from workers.local.procs import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(Path(log_dir) / f"api-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "workers", "api", "--port", str(self.port), *extra],
                                     env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 60) -> ApiProc:
        if not wait_until(self._up, timeout=timeout):
            raise TimeoutError(f"the API on port {self.port} did not answer /healthz within {timeout:.0f} s")
        return self

    def _up(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            raise RuntimeError(f"the API on port {self.port} exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
