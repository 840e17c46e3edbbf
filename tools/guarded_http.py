"""One HTTP exchange for a network tool: guarded, bounded in size and time, errors classified.

Redirects are followed here, by hand, so the network guard sees every hop. Transport failures and
HTTP 429/5xx become :class:`TransientToolError` (retried by the runtime); other 3xx/4xx become
:class:`PermanentToolError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tools.config import ToolConfig
from tools.errors import PermanentToolError, TransientToolError
from tools.netguard import Resolver, check_url, resolve

# The server answered "not now" without acting on the request.
_REJECTED_UNAPPLIED = {429, 503}


@dataclass(frozen=True)
class HttpResult:
    """A successful (2xx) response: its final URL, status, content type and (possibly cut) body."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


def exchange(
    method: str,
    url: str,
    config: ToolConfig,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    follow_redirects: bool = False,
    accept: Callable[[str], bool] | None = None,
    resolver: Resolver = resolve,
) -> HttpResult:
    """Send one request (following up to ``config.max_redirects`` redirects when asked).

    ``accept(content_type)`` may refuse a body before it is read.
    """
    deadline = time.monotonic() + config.fetch_timeout_seconds
    current = httpx.URL(url) if isinstance(url, str) else url
    with httpx.Client(timeout=config.fetch_timeout_seconds, follow_redirects=False, trust_env=False) as client:
        for _hop in range(config.max_redirects + 1):
            target = check_url(current, config.net_allow, resolver=resolver)
            request = client.build_request(
                method, target.connect_url, headers={**(headers or {}), **target.headers},
                content=content, extensions=target.extensions,
            )
            try:
                response = client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise TransientToolError(f"cannot connect to {current.host}: {exc}", maybe_applied=False) from exc
            except httpx.TimeoutException as exc:
                raise TransientToolError(f"{method} {current} timed out: {exc!r}") from exc
            except httpx.TransportError as exc:
                raise TransientToolError(f"{method} {current} failed: {exc!r}") from exc
            try:
                status = response.status_code
                if response.is_redirect and follow_redirects:
                    current = current.join(response.headers["location"])
                    if status == 303:
                        method, content = "GET", None
                    continue
                if status == 429 or status >= 500:
                    raise TransientToolError(
                        f"{method} {current} answered HTTP {status}",
                        maybe_applied=status not in _REJECTED_UNAPPLIED, status=status,
                    )
                if status >= 300:
                    where = f" (to {response.headers.get('location')})" if response.is_redirect else ""
                    raise PermanentToolError(f"{method} {current} answered HTTP {status}{where}", status=status)
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if accept is not None and not accept(content_type):
                    raise PermanentToolError(f"{current} has content type {content_type or 'none'!r}, not text")
                body, truncated = _read(response, config.fetch_max_bytes, deadline)
                return HttpResult(str(current), status, content_type, response.charset_encoding, body, truncated)
            except httpx.TransportError as exc:
                raise TransientToolError(f"reading {current} failed: {exc!r}") from exc
            finally:
                response.close()
    raise PermanentToolError(f"more than {config.max_redirects} redirects from {url}")


def _read(response: httpx.Response, limit: int, deadline: float) -> tuple[bytes, bool]:
    """Read up to ``limit`` bytes; a body still dripping at the deadline is a timeout."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise TransientToolError(f"reading {response.request.url} took longer than the timeout")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False
