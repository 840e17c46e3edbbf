"""Support for the tool tests: a real HTTP server on 127.0.0.1 in a thread, and a run row to hang calls on."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine, text


class _Handler(BaseHTTPRequestHandler):
    server: LocalHTTPServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.hits[parts.path] += 1
        if parts.path == "/page":
            self._reply(200, b"<html><h1>hello tools</h1></html>", "text/html; charset=utf-8")
        elif parts.path == "/json":
            self._reply(200, b'{"answer": 42}', "application/json")
        elif parts.path == "/binary":
            self._reply(200, b"\x00\x01\x02", "application/octet-stream")
        elif parts.path == "/big":
            self._reply(200, b"x" * 10_000, "text/plain")
        elif parts.path == "/redirect":
            self._reply(302, b"", headers={"Location": parse_qs(parts.query)["to"][0]})
        elif parts.path.startswith("/status/"):
            self._reply(int(parts.path.rsplit("/", 1)[1]), b"status page")
        else:
            self._reply(404, b"no such page")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/status/"):
            with self.server.lock:
                self.server.hits[self.path] += 1
            return self._reply(int(self.path.rsplit("/", 1)[1]), b"status page")
        key = self.headers.get("Idempotency-Key")
        payload = json.loads(body)
        with self.server.lock:
            self.server.hits[self.path] += 1
            self.server.requests.append((key, payload))
            duplicate = key is not None and key in self.server.applied
            if not duplicate:
                # The effect: what a deduplicating receiver does once per key.
                self.server.applied[key or f"nokey-{len(self.server.requests)}"] = payload
        self._reply(200, json.dumps({"duplicate": duplicate}).encode(), "application/json")


class LocalHTTPServer(ThreadingHTTPServer):
    """Serves /page, /json, /binary, /big, /redirect?to=URL, /status/N and POST webhooks on 127.0.0.1."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str | None, dict]] = []
        self.applied: dict[str, dict] = {}
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def allow(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def keys_by(self, field: str) -> dict[object, set[str | None]]:
        out: dict[object, set[str | None]] = defaultdict(set)
        for key, payload in self.requests:
            out[payload.get(field)].add(key)
        return out

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


def make_run(engine: Engine, run_id: str) -> str:
    """A run row (the ledger refers to runs)."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO runs (run_id, workflow, input) VALUES (:r, 'test', '{}'::jsonb)"), dict(r=run_id)
        )
    return run_id
