"""A scripted OpenAI-compatible chat-completions server for tests: real HTTP on 127.0.0.1, in a thread.

    def test_x(fake_llm):
        fake_llm.script(tool_call("search_corpus", {"query": "json"}), text("done [json]"))
        reasoner = LLMReasoner(fake_llm.url, "fake-model", None, specs)
        ...
        assert len(fake_llm.requests) == 2

``script(r1, r2, ...)`` answers requests in order; each reply is a chat-completions body (dict, sent
as 200), a :class:`Reply` (any status, headers, raw bytes, a delay), or a function of the
:class:`RecordedRequest` returning one of those. ``script(fn)`` (one function) answers every
request. Once the script runs out the server answers 400 "script exhausted", which a reasoner
reports at once. Every request is recorded, including GET /v1/models, which lists the model
``fake-model``. Worker processes reach the server by its ``url`` like any endpoint.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

import pytest

MODEL = "fake-model"
_ids = count(1)


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer. ``body``: a dict/list (sent as JSON), or str/bytes (sent as is)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received. ``body`` is the parsed JSON, or None when it was not JSON."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes
    body: Any
    at: float  # time.monotonic() on arrival

    @property
    def messages(self) -> list[dict[str, Any]]:
        return (self.body or {}).get("messages", []) if isinstance(self.body, dict) else []

    @property
    def tool_names(self) -> list[str]:
        tools = (self.body or {}).get("tools", []) if isinstance(self.body, dict) else []
        return [t["function"]["name"] for t in tools]


ScriptItem = dict[str, Any] | Reply | Callable[[RecordedRequest], "dict[str, Any] | Reply"]


# --- reply builders ------------------------------------------------------------------------------


def completion(
    message: dict[str, Any], *, finish_reason: str = "stop", usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A chat-completions body with one choice holding ``message``."""
    usage = usage or {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    return {
        "id": f"chatcmpl-fake-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "usage": usage,
    }


def tool_call(
    name: str,
    args: dict[str, Any] | str,
    *,
    call_id: str | None = None,
    content: str | None = None,
    usage: dict[str, int] | None = None,
    more: Sequence[tuple[str, dict[str, Any]]] = (),
) -> dict[str, Any]:
    """A reply calling tool ``name``; ``args`` as a dict (encoded as JSON) or a raw arguments string.
    ``more`` adds further calls to the same reply."""
    calls = [(name, args, call_id or f"call_{next(_ids)}")] + [(n, a, f"call_{next(_ids)}") for n, a in more]
    return completion(
        {
            "content": content,
            "tool_calls": [
                {
                    "id": cid,
                    "type": "function",
                    "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)},
                }
                for n, a, cid in calls
            ],
        },
        finish_reason="tool_calls",
        usage=usage,
    )


def text(content: str, *, usage: dict[str, int] | None = None, finish_reason: str = "stop") -> dict[str, Any]:
    """A plain text reply."""
    return completion({"content": content}, finish_reason=finish_reason, usage=usage)


def error(status: int, message: str = "", *, retry_after: float | None = None) -> Reply:
    """An OpenAI-style error answer."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    body = {"error": {"message": message or f"fake error {status}", "type": "fake", "code": status}}
    return Reply(status=status, body=body, headers=headers)


def malformed() -> Reply:
    """A 200 whose body is cut-off JSON."""
    return Reply(status=200, body=b'{"id": "chatcmpl-broken", "choices": [{"message": ')


# --- the server ----------------------------------------------------------------------------------


class FakeLLM:
    """The server. Start with :meth:`start` (the ``fake_llm`` fixture does), stop with :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: list[ScriptItem] = []
        self._default: ScriptItem | None = None
        self._arrived = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # The test-facing API.

    @property
    def url(self) -> str:
        """The base URL to give a reasoner: ``http://127.0.0.1:<port>/v1``."""
        if self._server is None:
            raise RuntimeError("FakeLLM is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (a copy), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The POSTs to /chat/completions."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/chat/completions")]

    def script(self, *replies: ScriptItem, default: ScriptItem | None = None) -> FakeLLM:
        """Replace the script: ``replies`` in order, then ``default`` for every further request.
        A single callable alone is the default (a function of every request)."""
        if len(replies) == 1 and callable(replies[0]) and default is None:
            replies, default = (), replies[0]
        with self._lock:
            self._queue = list(replies)
            self._default = default
        return self

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests arrived (AssertionError after ``timeout`` seconds)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(f"fake LLM got {len(self._requests)} requests within {timeout} s, wanted {n}")
            return list(self._requests)

    def repeated_requests(self) -> list[RecordedRequest]:
        """Chat requests whose body equals an earlier one's (a decision asked for twice)."""
        seen: set[bytes] = set()
        out = []
        for r in self.chat_requests:
            key = json.dumps(r.body, sort_keys=True).encode() if r.body is not None else r.raw
            if key in seen:
                out.append(r)
            seen.add(key)
        return out

    # Life cycle.

    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Serving.

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            method=h.command,
            path=h.path,
            headers={k.lower(): v for k, v in h.headers.items()},
            raw=raw,
            body=body,
            at=time.monotonic(),
        )
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()
            item = self._next_item(request)
        reply = item(request) if callable(item) else item
        if isinstance(reply, dict):
            reply = Reply(body=reply)
        if not isinstance(reply, Reply):
            reply = Reply(500, {"error": {"message": f"fake_llm: bad scripted reply {reply!r}"}})
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = payload or b"", "application/json"
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _next_item(self, request: RecordedRequest) -> ScriptItem:
        if request.method == "GET" and request.path.rstrip("/").endswith("/models"):
            return Reply(body={"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]})
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return Reply(404, {"error": {"message": f"fake_llm: no route {request.method} {request.path}"}})
        if self._queue:
            return self._queue.pop(0)
        if self._default is not None:
            return self._default
        return Reply(400, {"error": {"message": "fake_llm: script exhausted (no scripted reply left)"}})


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started :class:`FakeLLM`, closed after the test."""
    with FakeLLM() as server:
        yield server
