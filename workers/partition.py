"""Hosts as Linux network namespaces, and a network partition between them (root only).

`steplog chaos --faults partition` and the partition test put workers on hosts of their own this way.
A :class:`Host` is a namespace joined to the root namespace by a veth pair, with a default route
through it. The services may listen on loopback only, so a :class:`Relay` in the calling process
listens on a service address (added to the root namespace's loopback: reachable from every host,
whichever link is down) and relays each port to the service's real address. Cutting a host's link
(`ip link set ... down`) partitions it from everything; healing it brings its stalled connections back.

Every address used is made here (10.200-249.x.y, chosen at random per network) and removed by
:meth:`Network.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from checkpoint.errors import SteplogError

#: Ports of URLs that name none.
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671,
                 "http": 80, "https": 443}


class HostError(SteplogError, RuntimeError):
    """A host or its link could not be made (not root, no `ip`, an address taken)."""


def cannot_make_hosts() -> str | None:
    """Why this process cannot make hosts here, or None when it can."""
    if os.geteuid() != 0:
        return "it needs root (it makes network namespaces, veth links and addresses)"
    if shutil.which("ip") is None:
        return "it needs iproute2's `ip` command"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise HostError(f"{' '.join(argv)}: {res.stderr.strip()}")


class Network:
    """A service address plus any number of hosts, all removed by :meth:`close`."""

    def __init__(self) -> None:
        reason = cannot_make_hosts()
        if reason:
            raise HostError(f"cannot make network hosts: {reason}")
        self.tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.net = f"10.{200 + random.randrange(50)}"
        self.service_ip = f"{self.net}.0.1"
        self.hosts: list[Host] = []
        _ip("addr", "add", f"{self.service_ip}/32", "dev", "lo")

    def host(self) -> Host:
        try:
            h = Host(self, len(self.hosts) + 1)
        except HostError:
            Host.remove_named(self, len(self.hosts) + 1)  # half made: undo what was made
            raise
        self.hosts.append(h)
        return h

    def close(self) -> None:
        for h in self.hosts:
            h.remove()
        subprocess.run(["ip", "addr", "del", f"{self.service_ip}/32", "dev", "lo"], capture_output=True)


class Host:
    """One namespace and its link to the root namespace."""

    def __init__(self, net: Network, index: int) -> None:
        self.ns, self.veth, self.peer = self.names(net, index)
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

    @staticmethod
    def names(net: Network, index: int) -> tuple[str, str, str]:
        """The namespace, the root side of the link and the host side (interface names: at most 15 chars)."""
        return f"sln{net.tag}{index}", f"slv{net.tag}{index}", f"slp{net.tag}{index}"

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        _ip("link", "set", self.veth, "down")

    def heal(self) -> None:
        _ip("link", "set", self.veth, "up")
        # The route through the link went with it.
        subprocess.run([*self.prefix, "ip", "route", "replace", "default", "via", self.outer_ip], capture_output=True)

    def remove(self) -> None:
        self.remove_named_parts(self.ns, self.veth)

    @classmethod
    def remove_named(cls, net: Network, index: int) -> None:
        ns, veth, _ = cls.names(net, index)
        cls.remove_named_parts(ns, veth)

    @staticmethod
    def remove_named_parts(ns: str, veth: str) -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)


class Relay:
    """Relays TCP from ``listen_ip``:port to each port's target (host, port), in a thread of its own."""

    def __init__(self, listen_ip: str, targets: dict[int, tuple[str, int]]) -> None:
        self.listen_ip, self.targets = listen_ip, dict(targets)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="steplog-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise HostError("the relay did not start")
        if self._error is not None:
            raise HostError(f"the relay could not listen on {listen_ip}: {self._error}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._servers = [self.loop.run_until_complete(asyncio.start_server(self._relay(*t), self.listen_ip, p))
                             for p, t in self.targets.items()]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
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

    def _relay(self, host: str, port: int):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
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
        if self._error is None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        self._thread.join(10)


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def relay_urls(listen_ip: str, urls: Sequence[str]) -> tuple[Relay, list[str]]:
    """A relay on ``listen_ip`` to the server of each URL, and each URL as a host reaches it through
    the relay (same scheme, user and path; a free port). One relayed port per server."""
    targets: dict[tuple[str, int], int] = {}
    rewritten = []
    for url in urls:
        parts = urlsplit(url)
        if not parts.hostname:
            raise HostError(f"cannot relay {url!r}: it names no host")
        target = (parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0], 0))
        if not target[1]:
            raise HostError(f"cannot relay {url!r}: it names no port")
        if target not in targets:  # a port of its own (the server's may be bound on every address)
            targets[target] = _free_port(listen_ip)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (f"{userinfo}@" if userinfo else "") + f"{listen_ip}:{targets[target]}"
        rewritten.append(urlunsplit(parts._replace(netloc=netloc)))
    relay = Relay(listen_ip, {port: target for target, port in targets.items()})
    return relay, rewritten
