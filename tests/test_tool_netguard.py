"""fetch_url and the network guard: public addresses only, checked after DNS and on every redirect."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from sqlalchemy import create_engine

from tools.config import ToolConfig
from tools.errors import NetworkRefused, ToolConfigError, ToolInputError
from tools.netguard import check_url, parse_allow, refusal
from tools.registry import builtin_registry
from tools.runtime import ToolRuntime
from tests.support.toolsupport import make_run


@pytest.fixture
def fetch(database_url, server):
    """fetch_url through the runtime, with the test server's host:port on the allow-list."""
    engine = create_engine(database_url)
    run_id = make_run(engine, f"run-{uuid.uuid4().hex[:8]}")
    seqs = iter(range(2, 1000))

    def call(url, **config):
        cfg = ToolConfig(**{"net_allow": server.allow, "retries": 0, **config})
        return ToolRuntime(engine, builtin_registry(), cfg, run_id=run_id, seq=next(seqs)).call("fetch_url", {"url": url})

    yield call
    engine.dispose()


def test_allow_listed_local_server_is_fetched(fetch, server):
    out = fetch(f"{server.base}/page")
    assert out.ok, out.error
    assert out.result["text"] == "<html><h1>hello tools</h1></html>"
    assert out.result["content_type"] == "text/html" and out.result["status"] == 200
    assert fetch(f"{server.base}/json").result["text"] == '{"answer": 42}'


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://192.168.0.10:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://localhost/",  # refused after DNS resolution: it resolves to loopback
    ],
)
def test_non_public_addresses_are_refused(fetch, url):
    out = fetch(url)
    assert out.status == "failed" and out.error["type"] == "NetworkRefused", out.error
    assert "STEPLOG_NET_ALLOW" in out.error["message"]


def test_allow_list_is_per_port(fetch, server):
    out = fetch(f"http://127.0.0.1:{server.server_port + 1}/page" if server.server_port < 65535 else "http://127.0.0.1:1/")
    assert out.error["type"] == "NetworkRefused"


@pytest.mark.parametrize("target", ["http://10.0.0.7/secret", "http://169.254.169.254/", "http://localhost:{port}/page"])
def test_redirect_to_a_refused_address_is_refused(fetch, server, target):
    to = target.format(port=server.server_port)
    out = fetch(f"{server.base}/redirect?to={to}")
    assert out.error["type"] == "NetworkRefused", out.error
    assert server.hits["/redirect"] == 1 and server.hits["/page"] == 0


def test_redirect_within_the_allow_list_is_followed(fetch, server):
    out = fetch(f"{server.base}/redirect?to=/json")
    assert out.ok and out.result["url"] == f"{server.base}/json"


def test_size_limit_content_type_and_status(fetch, server):
    big = fetch(f"{server.base}/big", fetch_max_bytes=100)
    assert big.ok and big.result["truncated"] is True and len(big.result["text"]) == 100
    binary = fetch(f"{server.base}/binary")
    assert binary.error["type"] == "PermanentToolError" and "application/octet-stream" in binary.error["message"]
    missing = fetch(f"{server.base}/nope")
    assert missing.error["status"] == 404
    bad = fetch("ftp://example.com/x")
    assert bad.error["type"] == "ToolInputError" and bad.error["field"] == "url"


def test_dns_answers_are_checked_and_pinned():
    # A public-looking name that resolves to a private address is refused...
    with pytest.raises(NetworkRefused, match=r"intranet.example \(10.9.8.7\)"):
        check_url("http://intranet.example/", parse_allow(""), resolver=lambda host, port: ["10.9.8.7"])
    # ...and one with any refused address among its answers too.
    with pytest.raises(NetworkRefused):
        check_url("http://mixed.example/", parse_allow(""), resolver=lambda h, p: ["93.184.216.34", "127.0.0.1"])
    # A public answer: the request goes to that very address, with the name kept for Host and TLS.
    target = check_url("https://site.example/a?b=1", parse_allow(""), resolver=lambda h, p: ["93.184.216.34"])
    assert str(target.connect_url) == "https://93.184.216.34/a?b=1"
    assert target.headers == {"Host": "site.example"} and target.extensions == {"sni_hostname": "site.example"}


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a00:1", "2002:7f00:1::1", "100.100.100.200", "224.0.0.1", "fe80::1", "100.64.1.1", "::"],
)
def test_addresses_hidden_in_ipv6_and_special_ranges_are_refused(address):
    assert refusal(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass():
    assert refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert refusal(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None


def test_allow_list_parsing():
    allow = parse_allow(" Example.COM , 127.0.0.1:8080, [::1]:9000, fd00::1 ,")
    assert allow.permits("example.com", 443) and allow.permits("example.com.", 80)
    assert allow.permits("127.0.0.1", 8080) and not allow.permits("127.0.0.1", 8081)
    assert allow.permits("::1", 9000) and allow.permits("fd00:0::1", 1)
    for bad in ("http://x.com", "x.com:0", "x.com:http", "[::1", "host/path"):
        with pytest.raises(ToolConfigError, match="STEPLOG_NET_ALLOW entry"):
            parse_allow(bad)
    with pytest.raises(ToolInputError):
        check_url("http://user:pw@example.com/", allow)
