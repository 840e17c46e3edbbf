"""`steplog api`: the HTTP API and the web console, one stateless process of as many as you like.

Nothing is kept between requests: runs, sessions and tokens live in Postgres, every write goes through
the same paths as the CLI's (``app.steplog``: submit, signal, decide, conversations), and a live view
is woken by the runs' progress streams in Redis. Any request can land on any replica.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from checkpoint.aio import AsyncReads
from workers.api import console, errors, runs, sessions
from workers.api.auth import TokenCache
from workers.api.hub import Hub
from workers.api.metrics import Measured, Metrics
from workers.api.shown import ShownRuns
from workers.settings import Settings

log = logging.getLogger("steplog.api")

API_POOL = 16


@dataclass
class Api:
    """What every request of one process uses: settings, the steplog runtime, the progress hub."""

    settings: Settings
    celery: Any
    unauthenticated: bool
    hub: Hub
    metrics: Metrics
    tokens: Any = None  # TokenCache
    shown: ShownRuns = field(default_factory=ShownRuns)
    reads: Any = None  # checkpoint.aio.AsyncReads, opened with the server's event loop

    @property
    def runtime(self) -> Any:
        return self.celery.steplog

    @property
    def engine(self) -> Any:
        return self.celery.steplog.engine


def create_api(settings: Settings, *, unauthenticated: bool = False) -> FastAPI:
    from workers.app import create_app

    celery = create_app(settings)
    celery.steplog.pool_size = API_POOL  # requests run on the server's threads, up to 40 at once
    hub = Hub(settings.redis_url or None)
    state = Api(settings, celery, unauthenticated, hub, Metrics(celery.steplog.engine),
                TokenCache(celery.steplog, settings.api_token_cache_seconds))

    state.reads = AsyncReads(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.reads.open()
        yield
        await state.reads.close()
        await hub.close()
        celery.steplog.stop()

    app = FastAPI(title="steplog", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.api = state
    errors.install(app)
    console.install(app)
    app.include_router(runs.router)
    app.include_router(sessions.router)
    app.include_router(console.router)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Postgres and the broker answer."""
        checks = {"postgres": _check(lambda: _select_one(state.engine)),
                  "broker": _check(lambda: _broker(celery))}
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        return Response(state.metrics.scrape(), media_type="text/plain; version=0.0.4")

    app.add_middleware(Measured, metrics=state.metrics)
    app.add_middleware(errors.BodyLimit, limit=settings.api_max_body_bytes)
    return app


def _check(probe: Any) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:
        return f"failing: {type(exc).__name__}: {str(exc)[:200]}"


def _select_one(engine: Any) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _broker(celery: Any) -> None:
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
