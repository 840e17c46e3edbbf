"""Who a request acts as, and what it may see: a bearer token (or the console's cookie) resolves to a
:class:`checkpoint.access.Principal`; a run of another tenant is answered 404, never 403, so even its
existence does not leak."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
from fastapi import Depends, HTTPException, Request

from checkpoint import access, runs
from checkpoint.errors import RunNotFound

COOKIE = "steplog_token"


def principal(request: Request) -> access.Principal:
    """The request's principal; 401 without a valid token (unless the API runs ``--unauthenticated``)."""
    api = request.app.state.api
    if api.unauthenticated:
        return LOCAL
    token = _token(request)
    return _or_refuse(api.tokens.resolve(token) if token else None)


async def principal_of(request: Request) -> access.Principal:
    """:func:`principal` for route dependencies: a cached token costs no thread hop; only a lookup in
    Postgres goes to a worker thread."""
    api = request.app.state.api
    if api.unauthenticated:
        return LOCAL
    token = _token(request)
    found = api.tokens.cached(token) if token else None
    if found is None and token:
        found = await anyio.to_thread.run_sync(api.tokens.resolve, token)
    return _or_refuse(found)


LOCAL = access.Principal("local", None, "admin")


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # the console's cookie: a write must come from the console's own pages
    token = request.cookies.get(COOKIE, "")
    origin = request.headers.get("origin")
    if token and request.method not in ("GET", "HEAD") and origin and origin != _own_origin(request):
        raise HTTPException(403, "a cross-site request may not use the console's sign-in")
    return token


def _or_refuse(found: access.Principal | None) -> access.Principal:
    if found is None:
        raise HTTPException(401, "a valid token is needed: Authorization: Bearer TOKEN (steplog tokens create)",
                            headers={"WWW-Authenticate": "Bearer"})
    return found


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


class TokenCache:
    """Tokens resolved in the last ``seconds`` (0: none kept): a request with a known token costs no query.
    A revoked token is refused by every replica within that time."""

    def __init__(self, runtime: Any, seconds: float) -> None:
        self.runtime, self.seconds = runtime, seconds
        self._known: dict[str, tuple[float, access.Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> access.Principal | None:
        """The token's principal if it was resolved within ``seconds``; None means: ask :meth:`resolve`."""
        hit = self._known.get(token) if self.seconds > 0 else None
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def resolve(self, token: str) -> access.Principal | None:
        hit = self.cached(token)
        if hit is not None:
            return hit
        now = time.monotonic()
        found = access.resolve(self.runtime.engine, token)
        if self.seconds > 0 and found is not None:
            with self._lock:
                if len(self._known) > 10_000:  # bounded: forget everything rather than grow
                    self._known.clear()
                self._known[token] = (now + self.seconds, found)
        return found


def allowed(action: str) -> Any:
    """A dependency: the principal, if its role may do ``action`` (403 otherwise)."""

    async def check(who: access.Principal = Depends(principal_of)) -> access.Principal:
        if not who.may(action):
            raise HTTPException(403, f"role {who.role!r} may not {action}")
        return who

    return check


def visible_run(api: Any, run_id: str, who: access.Principal) -> dict[str, Any]:
    """The run, if it exists and belongs to the principal's tenant; RunNotFound (404) otherwise."""
    run = runs.get(api.engine, run_id)
    if not who.sees(run["tenant"]):
        raise RunNotFound(run_id)
    return run


def tenant_of(who: access.Principal) -> str:
    """The tenant a principal's new runs belong to."""
    return who.tenant or runs.DEFAULT_TENANT
