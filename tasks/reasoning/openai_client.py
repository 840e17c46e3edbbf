"""One chat-completions request to an OpenAI-compatible endpoint, with bounded retries.

Rate limits (429), timeouts, connection errors and 5xx are retried with exponential backoff and
full jitter (honouring ``Retry-After``), bounded by count and by total time; any other 4xx fails at
once. The API key lives in a :class:`~pydantic.SecretStr`, goes only into the Authorization header,
and is scrubbed from every error message (some servers echo it back in their 401 body).
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay
from tenacity import wait_random_exponential

from tasks.reasoning.errors import LLMEndpointError

log = logging.getLogger(__name__)

# As the OpenAI SDK: request timeout, lock conflict, rate limit and server errors may pass.
_RETRY_STATUS = {408, 409, 429}
_MAX_DETAIL = 500


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not (internal to the retry loop)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ChatResponse:
    """The endpoint's JSON answer and how long it took."""

    body: dict[str, Any]
    latency_s: float  # the successful request alone
    elapsed_s: float  # all attempts and waits
    attempts: int


class ChatClient:
    """POSTs to ``{base_url}/chat/completions``. Holds no connection between calls (fork-safe)."""

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

    def complete(self, body: dict[str, Any]) -> ChatResponse:
        """Send ``body``; the endpoint's JSON object, or :class:`LLMEndpointError`."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        payload = json.dumps(body, ensure_ascii=False).encode()
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1) | stop_before_delay(self.retry_seconds),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            with httpx.Client(headers=headers, follow_redirects=False) as client:
                for attempt in retrying:
                    with attempt:
                        timeout = self.timeout
                        if attempt.retry_state.attempt_number > 1:
                            # A retry ends near the time budget (but gets at least a second).
                            remaining = self.retry_seconds - (time.monotonic() - started)
                            timeout = min(timeout, max(remaining, 1.0))
                        t0 = time.monotonic()
                        answer = self._post_once(client, payload, timeout)
                        latency = time.monotonic() - t0
        except _Transient as exc:
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
        )

    def _post_once(self, client: httpx.Client, payload: bytes, timeout: float) -> dict[str, Any]:
        try:
            response = client.post(self.endpoint, content=payload, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within {timeout:.1f} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in _RETRY_STATUS or status >= 500:
            raise _Transient(
                f"HTTP {status}: {self._scrub(_detail(response))}", status=status, retry_after=_retry_after(response)
            )
        if status >= 400:
            raise LLMEndpointError(self._refusal(response), status=status, retryable=False)
        if status != 200:
            raise LLMEndpointError(
                f"LLM endpoint {self.endpoint} answered HTTP {status}, not 200", status=status, retryable=False
            )
        try:
            answer = response.json()
        except ValueError as exc:
            # A proxy cut the body short or answered HTML: the model never saw a problem to correct.
            raise _Transient(
                f"answered HTTP 200 with a body that is not JSON: {self._scrub(_snippet(response.text))}"
            ) from exc
        if not isinstance(answer, dict):
            raise _Transient(f"answered HTTP 200 with JSON that is not an object: {self._scrub(_snippet(response.text))}")
        if "error" in answer and not answer.get("choices"):
            # LiteLLM and some gateways report upstream failures inside a 200.
            raise LLMEndpointError(
                f"LLM endpoint {self.base_url} reported an error: {self._scrub(_error_text(answer))}",
                status=status,
                retryable=True,
            )
        return answer

    def _refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        detail = self._scrub(_detail(response))
        if status in (401, 403):
            what = "rejected the API key" if self._api_key else "requires an API key (none is set)"
            return f"LLM endpoint {self.base_url} {what} (HTTP {status}): {detail}"
        if status == 404:
            return (
                f"LLM endpoint {self.endpoint} answered HTTP 404 (a wrong base URL, or an unknown model): {detail}"
            )
        return f"LLM endpoint {self.base_url} refused the request (HTTP {status}): {detail}"

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


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` (OpenAI), ``Retry-After`` seconds or date."""
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
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


def _detail(response: httpx.Response) -> str:
    """The server's own words about a failure: OpenAI's ``error.message``, Ollama's ``error``,
    FastAPI's ``detail``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase
    if isinstance(body, dict):
        text = _error_text(body)
        if text:
            return text
    return _snippet(response.text)


def _error_text(body: dict[str, Any]) -> str:
    err = body.get("error", body.get("detail"))
    if isinstance(err, dict):
        err = err.get("message") or err.get("msg") or json.dumps(err)
    return _snippet(str(err)) if err else ""


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
