"""Large payloads go to the artifact store: event rows stay small, the next step reads them intact."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import text

from tests.support.harness import assert_contiguous

PAGE = ("steplog keeps every step's cost bounded. " * 5000)[: 200 * 1024]  # 200 KiB of text


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_200_kib_tool_result_becomes_an_artifact_and_comes_back_intact(fast_env, tmp_path):
    from tests.support.harness import Fleet

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**fast_env, "STEPLOG_NET_ALLOW": f"127.0.0.1:{server.server_port}"}
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        run_id = fleet.submit("big_fetch", {"url": f"http://127.0.0.1:{server.server_port}/page"})
        run = fleet.wait_finished(run_id, timeout=60)
        assert run["status"] == "succeeded", run["error"]
        assert run["result"] == {"sha256": hashlib.sha256(PAGE.encode()).hexdigest(), "size": len(PAGE)}
        assert_contiguous(fleet.events(run_id))
        with fleet.engine.connect() as conn:
            sizes = conn.execute(text(
                "SELECT seq, length(state::text) + length(payload::text) FROM events WHERE run_id = :r"), dict(r=run_id)).all()
            ledger = conn.execute(text(
                "SELECT result, result_artifact FROM tool_ledger WHERE run_id = :r AND tool = 'fetch_url'"), dict(r=run_id)).one()
        assert all(size < 16 * 1024 for _, size in sizes), sizes  # STEPLOG_INLINE_LIMIT default
        assert ledger.result is None and ledger.result_artifact["size"] > 200 * 1024
        stored = list((tmp_path / "artifacts").rglob("*"))
        assert any(p.is_file() and p.stat().st_size >= 200 * 1024 for p in stored)
    finally:
        fleet.close()
        server.shutdown()
