"""One chat-completions request to an OpenAI-compatible endpoint through the official ``openai`` SDK,
with bounded retries, plain or streamed.

The SDK sends the request (``OpenAI(base_url=..., api_key=..., timeout=..., max_retries=0)``) and we
keep what it lacks:

* **One retry loop, ours.** The SDK's own retries are off (``max_retries=0``): ours retry rate
  limits (429), 408/409, timeouts, connection errors, 5xx and 200 answers whose body is not JSON,
  with exponential backoff and full jitter, honouring ``Retry-After``/``retry-after-ms``, bounded by
  count (``max_retries``) *and* by total time (``retry_seconds``: a wait that would pass the budget
  ends the call instead). The SDK has no time budget, ignores ``Retry-After`` above 60 s, and
  cannot retry a 200 with a broken body. Any other 4xx fails at once (a bad key says so).
* **The key stays secret.** It lives in a :class:`~pydantic.SecretStr` and goes only into the
  Authorization header. Every SDK exception is turned into :class:`LLMEndpointError` with a message
  of our own, scrubbed of the key (some servers echo it back in their 401 body), and the SDK
  exception is neither chained nor kept as context: it carries the request and its headers.
* **No key means no Authorization header** (Ollama, vLLM without ``--api-key``): the SDK insists on
  a key string, so it gets a placeholder, and the header is omitted from every request. Ambient
  ``OPENAI_API_KEY``/``OPENAI_ORG_ID``/``OPENAI_PROJECT_ID`` are never picked up: the endpoint is
  configured here, not by whatever the process environment holds.
* **The raw JSON answer**, not the SDK's model of it: ``reply.py`` parses it, tolerating what
  servers actually send (Ollama's argument objects, ``reasoning_content``, errors inside a 200).
* **Streaming** (:meth:`ChatClient.stream`): text deltas go to a callback as they arrive, and the
  chunks are assembled into the same JSON answer the plain call returns (content, tool calls,
  finish reason, usage with ``stream_options.include_usage``).

A client holds no connection between calls (a fresh SDK client per call: fork-safe in prefork
workers).
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from tasks.reasoning import budget
from tasks.reasoning.errors import LLMEndpointError

log = logging.getLogger(__name__)

# As the OpenAI SDK: request timeout, lock conflict, rate limit and server errors may pass.
_RETRY_STATUS = {408, 409, 429}
_MAX_DETAIL = 500
# The SDK requires a key string; with no key configured it gets this one and the header is omitted.
_NO_KEY = "no-key-configured"
# Request fields the SDK's ``create`` takes as arguments; every other field travels in ``extra_body``.
_SDK_FIELDS = ("model", "messages", "tools", "tool_choice")
_STREAM_FIELDS = ("stream", "stream_options")

Delta = Callable[[str], None]


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not (internal to the retry loop)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChatResponse:
    """The endpoint's JSON answer (assembled from the chunks when streamed) and how long it took."""

    body: dict[str, Any]
    latency_s: float  # the successful request alone
    elapsed_s: float  # all attempts and waits
    attempts: int
    streamed: bool = False


class ChatClient:
    """Calls ``{base_url}/chat/completions`` through the ``openai`` SDK."""

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
        retry_seconds: float = 240.0,
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.endpoint = self.base_url + "/chat/completions"
        if api_key is not None and not isinstance(api_key, (str, SecretStr)):
            raise ValueError("api_key must be a string or a SecretStr")
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        self._api_key: SecretStr | None = api_key if api_key is not None and api_key.get_secret_value() else None
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        for name, value in (
            ("retry_seconds", retry_seconds),
            ("backoff_seconds", backoff_seconds),
            ("backoff_max_seconds", backoff_max_seconds),
        ):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, not {max_retries!r}")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.retry_seconds = float(retry_seconds)
        self.backoff_seconds = float(backoff_seconds)
        self.backoff_max_seconds = float(backoff_max_seconds)
        self._jitter = wait_random_exponential(multiplier=self.backoff_seconds, max=self.backoff_max_seconds)

    def __repr__(self) -> str:
        return f"ChatClient(endpoint={self.endpoint!r}, api_key={'set' if self._api_key else 'none'})"

    # --- the two calls ---------------------------------------------------------------------------

    def complete(self, body: Mapping[str, Any]) -> ChatResponse:
        """Send ``body``; the endpoint's JSON object, or :class:`LLMEndpointError`."""
        args, extra = _split(body)

        def once(sdk: openai.OpenAI, timeout: float) -> dict[str, Any]:
            raw = sdk.chat.completions.with_raw_response.create(
                **args, stream=False, extra_body=extra, extra_headers=self._headers(), timeout=timeout
            )
            return self._answer(raw.http_response)

        return self._budgeted(body, once, streamed=False)

    def stream(
        self,
        body: Mapping[str, Any],
        on_delta: Delta | None = None,
        *,
        include_usage: bool = True,
        on_restart: Callable[[], None] | None = None,
    ) -> ChatResponse:
        """Send ``body`` with ``stream: true``; ``on_delta(text)`` gets the answer's text as it
        arrives, and the result is the same JSON answer :meth:`complete` would return.

        ``include_usage`` asks for token usage in a last chunk (``stream_options``; turn it off for
        a server that refuses the option). When an attempt fails after sending text and is retried,
        ``on_restart()`` is called before the new attempt's text. A callback that raises is logged
        and ignored: a live view must not fail the decision.
        """
        args, extra = _split(body)
        sink = _Sink(on_delta, on_restart)

        def once(sdk: openai.OpenAI, timeout: float) -> dict[str, Any]:
            sink.start_attempt()
            chunks = sdk.chat.completions.create(
                **args,
                stream=True,
                **({"stream_options": {"include_usage": True}} if include_usage else {}),
                extra_body=extra,
                extra_headers=self._headers(),
                timeout=timeout,
            )
            assembler = _Assembler()
            with chunks:
                if "json" in chunks.response.headers.get("content-type", ""):
                    # A server that ignores "stream": the whole answer at once, as one delta.
                    chunks.response.read()
                    answer = self._answer(chunks.response)
                    text = assembler.text_of(answer)
                    if text:
                        sink.send(text)
                    return answer
                for chunk in chunks:
                    text = assembler.add(chunk.to_dict(warnings=False))  # as sent: no warning for odd shapes
                    if text:
                        sink.send(text)
            return assembler.body()

        return self._budgeted(body, once, streamed=True)

    # --- the fleet's budget for this endpoint (STEPLOG_LLM_RPM / STEPLOG_LLM_TPM) ------------------

    def _budgeted(self, body: Mapping[str, Any], once: Callable[[openai.OpenAI, float], dict[str, Any]], *,
                  streamed: bool) -> ChatResponse:
        """Reserve the call's request and tokens first (:class:`~checkpoint.errors.Throttled` when there
        is no room), settle them with the answer's usage after."""
        limits = budget.for_endpoint(self.base_url, body.get("model"))
        if limits is None:
            return self._run(once, streamed=streamed)
        reservation = limits.reserve(body)
        response = self._run(once, streamed=streamed, limits=limits)
        limits.settle(reservation, response.body)
        return response

    # --- retries and errors ----------------------------------------------------------------------

    def _run(self, once: Callable[[openai.OpenAI, float], dict[str, Any]], *, streamed: bool,
             limits: budget.Budget | None = None) -> ChatResponse:
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1) | stop_before_delay(self.retry_seconds),
            wait=self._wait,
            # Under a fleet budget a 429 is not waited out here: it blocks the budget for every worker
            # and defers the step (below).
            retry=retry_if_exception(lambda e: isinstance(e, _Transient) and not (limits and e.status == 429)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    timeout = self.timeout
                    if attempt.retry_state.attempt_number > 1:
                        # A retry ends near the time budget (but gets at least a second).
                        remaining = self.retry_seconds - (time.monotonic() - started)
                        timeout = min(timeout, max(remaining, 1.0))
                    t0 = time.monotonic()
                    answer = self._attempt(once, timeout)
                    latency = time.monotonic() - t0
        except _Transient as exc:
            if limits is not None and exc.status == 429:
                raise limits.rate_limited(exc.retry_after) from None
            n = retrying.statistics.get("attempt_number", 1)
            raise LLMEndpointError(
                f"LLM endpoint {self.base_url} kept failing: {self._scrub(str(exc))} "
                f"(gave up after {n} attempt{'s' if n != 1 else ''} in {time.monotonic() - started:.1f} s)",
                status=exc.status,
                retryable=True,
            ) from exc
        return ChatResponse(
            body=answer,
            latency_s=latency,
            elapsed_s=time.monotonic() - started,
            attempts=retrying.statistics.get("attempt_number", 1),
            streamed=streamed,
        )

    def _attempt(self, once: Callable[[openai.OpenAI, float], dict[str, Any]], timeout: float) -> dict[str, Any]:
        """One request. Every SDK failure becomes a :class:`_Transient` or an :class:`LLMEndpointError`
        raised *outside* the ``except`` block: the SDK's exception (with the request's headers) is
        neither the cause nor the context of ours."""
        failure: Exception
        try:
            with self._sdk() as sdk:
                return once(sdk, timeout)
        except (_Transient, LLMEndpointError):
            raise
        except openai.APITimeoutError:
            failure = _Transient(f"no answer within {timeout:.1f} s (timeout)")
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            failure = _Transient(f"connection failed: {type(cause).__name__}: {self._scrub(str(cause))}")
        except openai.APIStatusError as exc:
            failure = self._status_failure(exc.response)
        except openai.APIError as exc:
            # An error event inside a stream (vLLM, LiteLLM report upstream failures so).
            failure = LLMEndpointError(
                f"LLM endpoint {self.base_url} reported an error: {self._scrub(_snippet(exc.message))}",
                retryable=True,
            )
        except openai.OpenAIError as exc:
            failure = LLMEndpointError(
                f"LLM endpoint {self.base_url}: the openai client failed: {type(exc).__name__}: "
                f"{self._scrub(_snippet(str(exc)))}",
                retryable=False,
            )
        except json.JSONDecodeError:
            # A stream event whose data is not JSON: a proxy cut it short.
            failure = _Transient("streamed an event whose data is not JSON")
        raise failure

    def _status_failure(self, response: Any) -> Exception:
        status = response.status_code
        if status in _RETRY_STATUS or status >= 500:
            return _Transient(
                f"HTTP {status}: {self._scrub(_detail(response))}",
                status=status,
                retry_after=_retry_after(response.headers),
            )
        if status >= 400:
            return LLMEndpointError(self._refusal(response), status=status, retryable=False)
        return LLMEndpointError(
            f"LLM endpoint {self.endpoint} answered HTTP {status}, not 200", status=status, retryable=False
        )

    def _answer(self, response: Any) -> dict[str, Any]:
        """The JSON object of a 200 answer."""
        if response.status_code != 200:
            raise LLMEndpointError(
                f"LLM endpoint {self.endpoint} answered HTTP {response.status_code}, not 200",
                status=response.status_code,
                retryable=False,
            )
        try:
            answer = json.loads(response.content)
        except ValueError:
            # A proxy cut the body short or answered HTML: the model never saw a problem to correct.
            raise _Transient(
                f"answered HTTP 200 with a body that is not JSON: {self._scrub(_snippet(response.text))}"
            ) from None
        if not isinstance(answer, dict):
            raise _Transient(f"answered HTTP 200 with JSON that is not an object: {self._scrub(_snippet(response.text))}")
        if "error" in answer and not answer.get("choices"):
            # LiteLLM and some gateways report upstream failures inside a 200.
            raise LLMEndpointError(
                f"LLM endpoint {self.base_url} reported an error: {self._scrub(_error_text(answer))}",
                status=200,
                retryable=True,
            )
        return answer

    def _refusal(self, response: Any) -> str:
        status = response.status_code
        detail = self._scrub(_detail(response))
        if status in (401, 403):
            what = "rejected the API key" if self._api_key else "requires an API key (none is set)"
            return f"LLM endpoint {self.base_url} {what} (HTTP {status}, not retried): {detail}"
        if status == 404:
            return (
                f"LLM endpoint {self.endpoint} answered HTTP 404 (a wrong base URL, or an unknown model): {detail}"
            )
        return f"LLM endpoint {self.base_url} refused the request (HTTP {status}): {detail}"

    # --- the SDK client --------------------------------------------------------------------------

    def _sdk(self) -> openai.OpenAI:
        """A fresh SDK client for one request: no retries of its own, no redirects (the key must not
        follow one), no ambient organization or project, no Authorization header without a key."""
        key = self._api_key.get_secret_value() if self._api_key is not None else _NO_KEY
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=key,
            timeout=self.timeout,
            max_retries=0,
            # The key only here (never in per-request headers, which the SDK logs at debug level),
            # which also overrides an Authorization in the ambient OPENAI_CUSTOM_HEADERS.
            default_headers={**self._headers(), **({"Authorization": f"Bearer {key}"} if self._api_key else {})},
            http_client=openai.DefaultHttpxClient(follow_redirects=False),
        )

    def _headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        if self._api_key is None:
            headers["Authorization"] = openai.Omit()
        return headers

    def _scrub(self, text: str) -> str:
        if self._api_key is not None:
            text = text.replace(self._api_key.get_secret_value(), "**********")
        return text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(self._jitter(state), retry_after)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "LLM request to %s failed (attempt %d): %s; retrying in %.2f s",
            self.base_url, state.attempt_number, self._scrub(str(exc)), delay,
        )


# --- streaming -----------------------------------------------------------------------------------


class _Sink:
    """Delivers text deltas to the caller's callbacks; a callback's failure is logged once, not raised."""

    def __init__(self, on_delta: Delta | None, on_restart: Callable[[], None] | None) -> None:
        self._on_delta = on_delta
        self._on_restart = on_restart
        self._sent = False
        self._broken = False

    def start_attempt(self) -> None:
        if self._sent:
            self._sent = False
            self._call(self._on_restart)

    def send(self, text: str) -> None:
        self._sent = True
        self._call(self._on_delta, text)

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None or self._broken:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a live view must not fail the decision
            self._broken = True
            log.warning("streaming callback failed (%s: %s); no more deltas for this call", type(exc).__name__, exc)


class _Assembler:
    """Builds a ``chat.completion`` JSON answer from ``chat.completion.chunk`` events (choice 0)."""

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._role = "assistant"
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: Any = None
        self._usage: Any = None
        self._chunks = 0

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take one chunk; the text it adds to the answer ("" if none)."""
        self._chunks += 1
        for key in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(key) is not None and key not in self._meta:
                self._meta[key] = chunk[key]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        text = ""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping) or (choice.get("index") or 0) != 0:
                continue
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            if isinstance(delta.get("role"), str):
                self._role = delta["role"]
            if isinstance(delta.get("content"), str):
                text += delta["content"]
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str):
                    self._reasoning.append(delta[key])
            for call in delta.get("tool_calls") or []:
                if isinstance(call, Mapping):
                    self._add_call(call)
        if text:
            self._content.append(text)
        return text

    @staticmethod
    def text_of(answer: Mapping[str, Any]) -> str:
        """The text of a whole (not streamed) answer's first choice."""
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ""
        return content if isinstance(content, str) else ""

    def _add_call(self, call: Mapping[str, Any]) -> None:
        index = call.get("index")
        if not isinstance(index, int):
            index = len(self._calls)  # servers that send whole calls without an index
        slot = self._calls.setdefault(index, {"id": None, "type": "function", "function": {"name": None}})
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        fn = call.get("function")
        if not isinstance(fn, Mapping):
            return
        if fn.get("name") and not slot["function"]["name"]:
            slot["function"]["name"] = fn["name"]  # sent once; some servers repeat it in every delta
        args = fn.get("arguments")
        if isinstance(args, str):
            have = slot["function"].get("arguments")
            slot["function"]["arguments"] = (have if isinstance(have, str) else "") + args
        elif args is not None:
            slot["function"]["arguments"] = args  # Ollama sends the arguments as an object, whole

    def body(self) -> dict[str, Any]:
        if not self._chunks:
            raise _Transient("the stream ended without a single chunk")
        if self._finish is None:
            # Every server ends choice 0 with a finish reason: without one, the stream was cut short.
            raise _Transient(f"the stream ended after {self._chunks} chunks without a finish reason")
        message: dict[str, Any] = {"role": self._role, "content": "".join(self._content) if self._content else None}
        if self._calls:
            message["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        body: dict[str, Any] = {
            "id": self._meta.get("id"),
            "object": "chat.completion",
            "created": self._meta.get("created"),
            "model": self._meta.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish}],
        }
        if self._meta.get("system_fingerprint"):
            body["system_fingerprint"] = self._meta["system_fingerprint"]
        if self._usage is not None:
            body["usage"] = self._usage
        return body


# --- helpers -------------------------------------------------------------------------------------


def _split(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SDK's ``create`` arguments and the rest of the request (sent as is in ``extra_body``)."""
    args = {k: body[k] for k in _SDK_FIELDS if k in body}
    extra = {k: v for k, v in body.items() if k not in _SDK_FIELDS and k not in _STREAM_FIELDS}
    return args, extra


def normalize_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash or a pasted ``/chat/completions``; ValueError if not http(s)."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError("base_url must be an http(s) URL such as http://localhost:11434/v1")
    url = base_url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url {base_url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"base_url must be an http(s) URL such as http://localhost:11434/v1, not {safe_url(url)!r}")
    if parsed.userinfo or parsed.query:
        # Credentials in the URL would end up in logs and records: the key goes in api_key.
        raise ValueError("base_url must not carry credentials or a query string; pass the key as api_key")
    return url


def safe_url(url: str) -> str:
    """``url`` without user info or query (for messages about a URL that may be malformed)."""
    try:
        u = httpx.URL(url)
        return str(u.copy_with(username=None, password=None, query=None))
    except Exception:  # noqa: BLE001 - a message helper must not fail
        return "<unparseable URL>"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` (OpenAI), ``Retry-After`` seconds or date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _detail(response: Any) -> str:
    """The server's own words about a failure: OpenAI's ``error.message``, Ollama's ``error``,
    FastAPI's ``detail``, else the start of the body."""
    try:
        text = response.text
    except Exception:  # noqa: BLE001 - a streamed error body that could not be read
        text = ""
    try:
        body = json.loads(text)
    except ValueError:
        return _snippet(text) or str(getattr(response, "reason_phrase", "") or "")
    if isinstance(body, dict):
        found = _error_text(body)
        if found:
            return found
    return _snippet(text)


def _error_text(body: dict[str, Any]) -> str:
    err = body.get("error", body.get("detail"))
    if isinstance(err, dict):
        err = err.get("message") or err.get("msg") or json.dumps(err)
    return _snippet(str(err)) if err else ""


def _snippet(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
