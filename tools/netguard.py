"""The network guard: a tool may only reach public addresses, checked after DNS resolution.

Every network tool passes each URL it is about to request (the first one and every redirect) through
:func:`check_url`. A host is refused when any address it resolves to is loopback, private, link-local,
a cloud metadata endpoint, multicast, reserved or otherwise not global, including such addresses
hidden inside IPv6 (IPv4-mapped, 6to4, NAT64, Teredo). The request is then pinned to the address
that was checked, so a DNS answer that changes between check and connect (rebinding) cannot slip
through. Hosts on the allow-list (``STEPLOG_NET_ALLOW``: ``host`` or ``host:port`` entries) skip the
address check.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tools.errors import NetworkRefused, PermanentToolError, ToolConfigError, ToolInputError, TransientToolError

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Named for the error message; all of them are also caught by the "not global" test.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


@dataclass(frozen=True)
class Allow:
    """Parsed allow-list: (host, port) pairs; port None allows every port of the host."""

    entries: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)

    def permits(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        return (host, None) in self.entries or (host, port) in self.entries

    def __str__(self) -> str:
        return ",".join(sorted(h if p is None else f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.entries))


def parse_allow(spec: str) -> Allow:
    """Parse ``"host, host:port, [v6]:port, v6"``; :class:`ToolConfigError` names a bad entry."""
    entries: set[tuple[str, int | None]] = set()
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if any(c in entry for c in "/@?# "):
            raise ToolConfigError(f"STEPLOG_NET_ALLOW entry {entry!r}: expected host or host:port, no scheme or path")
        host, port_text = entry, None
        if entry.startswith("["):
            host, sep, rest = entry[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ToolConfigError(f"STEPLOG_NET_ALLOW entry {entry!r}: expected [ipv6] or [ipv6]:port")
            port_text = rest[1:] or None
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
        if not host:
            raise ToolConfigError(f"STEPLOG_NET_ALLOW entry {entry!r}: no host")
        port: int | None = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ToolConfigError(f"STEPLOG_NET_ALLOW entry {entry!r}: port must be 1..65535")
            port = int(port_text)
        entries.add((_normal_host(host), port))
    return Allow(frozenset(entries))


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be reached, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (
            ("IPv4-mapped", ip.ipv4_mapped),
            ("6to4", ip.sixtofour),
            ("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if any(ip in n for n in _NAT64) else None),
        )
        for label, v4 in embedded:
            if v4 is not None:
                inner = refusal(v4)
                return f"{label} {inner}" if inner else None
        if ip.teredo:
            return "Teredo tunnel address"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    for label in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{label}"):
            return label.replace("_", "-") + " address"
    if not ip.is_global:
        return "not a public address"
    return None


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (TCP), via the system resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise PermanentToolError(f"host {host!r} not found") from exc
        raise TransientToolError(f"cannot resolve {host!r}: {exc}", maybe_applied=False) from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked URL, and how to request it: pinned to the checked address unless allow-listed."""

    url: httpx.URL
    connect_url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


def check_url(url: str | httpx.URL, allow: Allow, *, resolver: Resolver = resolve) -> Target:
    """Check ``url`` against the guard; :class:`NetworkRefused` says which address was refused and why."""
    import httpx  # here, not above: settings validate STEPLOG_NET_ALLOW with parse_allow on every CLI start

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ToolInputError("url", f"not a valid URL: {exc}") from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise ToolInputError("url", f"scheme must be http or https, not {parsed.scheme!r}")
    if not parsed.host:
        raise ToolInputError("url", "URL has no host")
    if parsed.userinfo:
        raise ToolInputError("url", "credentials in the URL are not accepted")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    if allow.permits(parsed.host, port):
        return Target(parsed, parsed, {}, {})
    try:
        addresses = [ipaddress.ip_address(parsed.host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(parsed.host, port)]
    if not addresses:
        raise PermanentToolError(f"host {parsed.host!r} has no address")
    for ip in addresses:
        reason = refusal(ip)
        if reason:
            shown = parsed.host if parsed.host == str(ip) else f"{parsed.host} ({ip})"
            raise NetworkRefused(f"refused {shown}: {reason}; add the host to STEPLOG_NET_ALLOW to permit it")
    pinned = addresses[0]
    headers = {"Host": parsed.netloc.decode("ascii")}
    # TLS must still verify the certificate against the name, not the pinned address.
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    return Target(parsed, parsed.copy_with(host=str(pinned)), headers, extensions)
