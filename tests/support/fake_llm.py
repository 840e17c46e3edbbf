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

Streaming: a request with ``"stream": true`` answered by a 200 chat-completions body gets it as
server-sent ``chat.completion.chunk`` events, as OpenAI sends them: the role, the text in small
pieces, each tool call's id and name then its arguments in pieces, the finish reason, the usage
in a last chunk without choices when the request asked ``stream_options.include_usage``, then
``data: [DONE]``. :func:`stream_chunks` gives those chunks; a :class:`Reply` may stall between
chunks (``chunk_delay``), stall part way (``stall_after``) or cut the stream short (``cut_after``); :func:`stream_error` is an error
event inside a 200 stream. Error replies (429, 401, ...) are sent as plain JSON either way.
"""

from __future__ import annotations

import dataclasses
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
    # Streamed answers only: seconds to wait before each chunk after the first; the number of
    # chunks after which the server stalls for ``stall`` seconds; the number of chunks after which
    # the connection is closed without the rest (or [DONE]).
    chunk_delay: float = 0.0
    stall_after: int | None = None
    stall: float = 30.0
    cut_after: int | None = None


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
    def streamed(self) -> bool:
        """Whether the request asked for a streamed answer."""
        return isinstance(self.body, dict) and self.body.get("stream") is True

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


def stream_chunks(body: dict[str, Any], *, include_usage: bool = True, piece: int = 4) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events that stream the chat-completions answer ``body``:
    text in pieces of ``piece`` characters, tool-call arguments in pieces of ``2 * piece``."""
    head = {"id": body.get("id"), "object": "chat.completion.chunk", "created": body.get("created"),
            "model": body.get("model")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    out = [chunk({"role": message.get("role", "assistant"), "content": ""})]
    for key in ("reasoning_content", "content"):
        value = message.get(key)
        if isinstance(value, str):
            out += [chunk({key: value[i:i + piece]}) for i in range(0, len(value), piece)]
    for index, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        out.append(chunk({"tool_calls": [{"index": index, "id": call.get("id"), "type": "function",
                                          "function": {"name": fn.get("name"), "arguments": ""}}]}))
        if isinstance(args, str):
            step = 2 * piece
            out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i:i + step]}}]})
                    for i in range(0, len(args), step)]
        elif args is not None:  # an arguments object, sent whole (as Ollama does)
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": args}}]}))
    out.append(chunk({}, choice.get("finish_reason", "stop")))
    if include_usage and body.get("usage") is not None:
        out.append({**head, "choices": [], "usage": body["usage"]})
    return out


def stream_error(message: str, *, after: dict[str, Any] | None = None) -> Reply:
    """A 200 stream that sends the start of ``after`` (a chat-completions body, two chunks of it),
    then an error event, as vLLM and LiteLLM report a failure once streaming has begun."""
    events = stream_chunks(after)[:2] if after is not None else []
    events.append({"error": {"message": message, "type": "fake", "code": 500}})
    return Reply(body=_sse(events), headers={"Content-Type": "text/event-stream"})


def _sse(events: Sequence[dict[str, Any]], *, done: bool = True) -> bytes:
    data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return data + (b"data: [DONE]\n\n" if done else b"")


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
        self._limits: tuple[int, int, float] | None = None
        #: Chat requests served under :meth:`enforce`: (arrival, tokens); and how many got a 429.
        self.served: list[tuple[float, int]] = []
        self.rejected = 0

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

    def enforce(self, rpm: int, tpm: int, window: float = 60.0) -> FakeLLM:
        """Act as a provider with limits: at most ``rpm`` chat requests and ``tpm`` tokens (the request
        body's bytes / 4, plus the reply's completion tokens) per sliding ``window`` seconds; past them, a
        429 with Retry-After. Each 200 answer's ``usage`` is then the tokens counted."""
        with self._lock:
            self._limits = (rpm, tpm, window)
        return self

    def _admit(self, request: RecordedRequest, completion: int) -> tuple[bool, float, int]:
        """Under :meth:`enforce` (lock held): whether this request is within the limits, else how long
        until it would be; and its prompt tokens."""
        rpm, tpm, window = self._limits
        prompt = len(request.raw) // 4
        now = request.at
        recent = [(at, n) for at, n in self.served if at > now - window]
        used = sum(n for _, n in recent)
        if len(recent) + 1 > rpm or used + prompt + completion > tpm:
            self.rejected += 1
            return False, max(recent[0][0] + window - now, 0.01) if recent else window, prompt
        self.served.append((now, prompt + completion))
        return True, 0.0, prompt

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
        if self._limits is not None and isinstance(reply, Reply) and reply.status == 200 \
                and isinstance(reply.body, dict) and "choices" in reply.body:
            completion = int((reply.body.get("usage") or {}).get("completion_tokens") or 20)
            with self._lock:
                ok, wait, prompt = self._admit(request, completion)
            if ok:
                usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
                reply = dataclasses.replace(reply, body={**reply.body, "usage": usage})
            else:
                reply = error(429, "rate limit reached (fake provider)", retry_after=round(wait, 3))
        if not isinstance(reply, Reply):
            reply = Reply(500, {"error": {"message": f"fake_llm: bad scripted reply {reply!r}"}})
        if reply.delay:
            time.sleep(reply.delay)
        if request.streamed and reply.status == 200 and isinstance(reply.body, dict) and "choices" in reply.body:
            options = request.body.get("stream_options") or {}
            self._send_stream(h, reply, stream_chunks(reply.body, include_usage=bool(options.get("include_usage"))))
            return
        payload = reply.body
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = payload or b"", "application/json"
        try:
            h.send_response(reply.status)
            if not any(k.lower() == "content-type" for k in reply.headers):
                h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _send_stream(self, h: BaseHTTPRequestHandler, reply: Reply, events: list[dict[str, Any]]) -> None:
        """Server-sent events, one write per chunk; the connection closes at the end."""
        h.close_connection = True
        cut = reply.cut_after is not None and reply.cut_after < len(events)
        if cut:
            events = events[: reply.cut_after]
        try:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Cache-Control", "no-cache")
            h.send_header("Connection", "close")
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            for i, event in enumerate(events):
                if i and reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                if i and i == reply.stall_after:
                    time.sleep(reply.stall)
                h.wfile.write(_sse([event], done=False))
                h.wfile.flush()
            if not cut:
                h.wfile.write(b"data: [DONE]\n\n")
                h.wfile.flush()
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
