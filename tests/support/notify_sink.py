"""A webhook sink that can hold a call mid-flight: it records the first POST to a chosen path (the
effect happens, as with :class:`~tests.support.toolsupport.LocalHTTPServer`), then keeps the caller
waiting for its answer until the test releases it, so a test can kill the caller between the effect
and the answer."""

from __future__ import annotations

import json
import threading

from tests.support.toolsupport import LocalHTTPServer, _Handler


class _HoldingHandler(_Handler):
    server: HoldingSink

    def do_POST(self) -> None:
        srv = self.server
        with srv.lock:
            hold = srv.hold_path == self.path
            if hold:
                srv.hold_path = None  # only the first call to the path is held
        if not hold:
            return super().do_POST()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Idempotency-Key")
        with srv.lock:
            srv.hits[self.path] += 1
            srv.requests.append((key, json.loads(body)))
            srv.applied.setdefault(key or f"nokey-{len(srv.requests)}", json.loads(body))
        srv.arrived.set()
        srv.release.wait(60)
        try:
            self._reply(200, b'{"duplicate": false}', "application/json")
        except OSError:
            pass  # the caller is gone: it never learns that the call took effect


class HoldingSink(LocalHTTPServer):
    """:class:`LocalHTTPServer` whose first POST to ``hold(path)`` takes effect, sets ``arrived``, and
    is answered only after ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _HoldingHandler
        self.hold_path: str | None = None
        self.arrived = threading.Event()
        self.release = threading.Event()

    def hold(self, path: str) -> None:
        with self.lock:
            self.hold_path = path

    def __exit__(self, *exc) -> None:
        self.release.set()
        super().__exit__(*exc)
