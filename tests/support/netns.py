"""Test hosts as Linux network namespaces, made and removed by the test itself (root only).

Each :class:`Host` is a namespace joined to the root namespace by a veth pair, with a default route
through it. The servers (Postgres, Redis, a webhook sink) listen on loopback only, so a
:class:`Forwarder` in the test process listens on a service address (on the root namespace's
loopback, reachable from every host) and relays to them. Cutting a host's link (`ip link set ... down`)
partitions it from everything; healing it brings its stalled connections back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterable

import pytest


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


def require_root() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network-namespace hosts need root and iproute2 (`ip netns`); CI runs as root")


class Network:
    """A service address plus any number of hosts, all removed by :meth:`close`."""

    def __init__(self) -> None:
        require_root()
        self.tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.net = f"10.{200 + random.randrange(50)}"
        self.service_ip = f"{self.net}.0.1"
        self.hosts: list[Host] = []
        try:  # on the root namespace's loopback: reachable from every host, whichever link is down
            _ip("addr", "add", f"{self.service_ip}/32", "dev", "lo")
        except RuntimeError as exc:
            pytest.skip(f"cannot add a test address here: {exc}")

    def host(self) -> Host:
        h = Host(self, len(self.hosts) + 1)
        self.hosts.append(h)
        return h

    def close(self) -> None:
        for h in self.hosts:
            h.remove()
        subprocess.run(["ip", "addr", "del", f"{self.service_ip}/32", "dev", "lo"], capture_output=True)


class Host:
    def __init__(self, net: Network, index: int) -> None:
        self.ns = f"sln{net.tag}{index}"
        self.veth = f"slv{net.tag}{index}"
        self.peer = f"slp{net.tag}{index}"
        self.outer_ip, self.inner_ip = f"{net.net}.{index}.1", f"{net.net}.{index}.2"
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        _ip("link", "set", self.peer, "netns", self.ns)
        _ip("addr", "add", f"{self.outer_ip}/30", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("addr", "add", f"{self.inner_ip}/30", "dev", self.peer, ns=self.ns)
        _ip("link", "set", self.peer, "up", ns=self.ns)
        _ip("link", "set", "lo", "up", ns=self.ns)
        _ip("route", "add", "default", "via", self.outer_ip, ns=self.ns)

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        _ip("link", "set", self.veth, "down")

    def heal(self) -> None:
        _ip("link", "set", self.veth, "up")
        # The route through the link went with it.
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "route", "replace", "default", "via", self.outer_ip],
                       capture_output=True)

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)


class Forwarder:
    """Relays TCP from ``listen_ip``:port to 127.0.0.1:port for each port, in a thread of its own."""

    def __init__(self, listen_ip: str, ports: Iterable[int]) -> None:
        self.listen_ip, self.ports = listen_ip, list(ports)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._servers = [self.loop.run_until_complete(asyncio.start_server(self._relay(p), self.listen_ip, p))
                         for p in self.ports]
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _shutdown(self) -> None:
        for s in self._servers:
            s.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loop.stop()

    def _relay(self, port: int):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        return handle

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        self._thread.join(10)
