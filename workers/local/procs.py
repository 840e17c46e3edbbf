"""Small process and port helpers shared by the local services, the demo, chaos and the tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers do: a port a stopped server left in TIME_WAIT is free for them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first) if first.isdigit() else None


def process_named(pid: int | None, names: Iterable[str]) -> psutil.Process | None:
    """The live process ``pid`` if it is one of ``names`` (a pid file can outlive its process and its
    number be reused by an unrelated one)."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if any(n in name for n in names) else None


def gone(proc: psutil.Process) -> bool:
    """Whether ``proc`` has exited (a zombie counts as exited)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait until ``proc`` has exited. A zombie counts as exited: the server is no child of ours, and
    whoever adopts it (PID 1 in a container) may be slow to reap it."""
    return wait_until(lambda: gone(proc), timeout)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text[-lines:])


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Call ``check`` until it returns something true (then True) or ``timeout`` seconds pass (then False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
