"""Every error as a clear JSON answer, never a traceback: ``{"error": message}`` (422 adds ``fields``).

404 an unknown run (or another tenant's); 409 what the run's state refuses (a signal to a run that has
ended, an approval for a run that waits for none), or a token name taken; 413 a body over
``STEPLOG_API_MAX_BODY_BYTES``; 422 bad input, naming each bad field; 503 Postgres unreachable; 504 no
reply in time (the message is stored and will be answered); 500 anything else, logged here and told
nowhere.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkpoint.access import TokenExists, TokenNotFound
from checkpoint.errors import BadInput, NotJSONError, RunNotFound, StorageError, SteplogError
from checkpoint.signals import RunFinished
from tasks.approvals import NotAwaitingApproval
from workers.conversation import NoReply, SessionEnded

log = logging.getLogger("steplog.api")

STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RunNotFound, 404), (TokenNotFound, 404), (RunFinished, 409), (SessionEnded, 409), (TokenExists, 409),
    (NotAwaitingApproval, 409), (NoReply, 504), (BadInput, 422), (NotJSONError, 422), (StorageError, 503),
)


def answer(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        listed = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return answer(422, f"invalid request: {listed}", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(SteplogError)
    async def steplog(request: Request, exc: SteplogError) -> JSONResponse:
        for kind, status in STATUS:
            if isinstance(exc, kind):
                return answer(status, str(exc))
        # Any other refusal of the operation: bad input (exit code 2), or the run's state (1).
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return answer(422 if exc.exit_code == 2 else 409, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return answer(500, "internal error; the server's log has the details")


class BodyLimit:
    """413 for a request body over ``limit`` bytes, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = answer(413, f"the request body is over {self.limit} bytes (STEPLOG_API_MAX_BODY_BYTES)")
        await response(scope, _nothing, send)


class _TooLarge(Exception):
    pass


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
