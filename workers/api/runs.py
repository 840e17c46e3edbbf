"""Runs over HTTP: submit, list, show, cancel, follow live (SSE), and the waits: signals, approvals and
the inbox of runs waiting for a person."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from checkpoint import access, fanout, flow, runs
from checkpoint.errors import RunNotFound
from checkpoint.statuses import RUN_STATUSES, TERMINAL_STATUSES
from tasks.approvals import SIGNAL as APPROVAL
from workers.api.auth import allowed, tenant_of, visible_run
from workers.cli.render import children_json, event_json, iso, parent_json, run_json, run_summary_json

router = APIRouter()

KEEPALIVE_SECONDS = 15.0


class NewRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=9, description="0-9: steps of higher priority runs are taken first.")


class SignalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Any = None
    key: str | None = Field(None, min_length=1, max_length=200)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=2000)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


def _api(request: Request) -> Any:
    return request.app.state.api


def _outcome(run_id: str, outcome: Any) -> dict[str, Any]:
    return {"run_id": run_id, "key": outcome.key, "status": outcome.status, "seq": outcome.delivered_seq}


@router.post("/runs", status_code=201)
def submit(body: NewRun, request: Request, who: access.Principal = Depends(allowed("submit"))) -> dict[str, str]:
    """A ``traceparent`` header (W3C trace context) is stored with the run: its steps' spans continue it."""
    api = _api(request)
    run_id = api.runtime.submit(body.workflow, body.input, submitted_by=who.name, tenant=tenant_of(who),
                                traceparent=request.headers.get("traceparent"), priority=body.priority)
    return {"run_id": run_id}


@router.get("/runs")
def list_runs(
    request: Request,
    status: str | None = Query(None, description=f"one of {', '.join(RUN_STATUSES)}"),
    limit: int = Query(50, ge=1, le=1000),
    q: str | None = Query(None, max_length=200, description="a run id prefix, or a workflow name"),
    who: access.Principal = Depends(allowed("read")),
) -> list[dict[str, Any]]:
    if status is not None and status not in RUN_STATUSES:
        from checkpoint.errors import BadInput

        raise BadInput(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    rows = runs.recent(_api(request).engine, status=status, limit=limit, tenant=who.tenant, q=q)
    return [run_summary_json(r) for r in rows]


def show(api: Any, run_id: str, who: access.Principal) -> dict[str, Any]:
    """What `steplog show --json` prints (another tenant's run: RunNotFound)."""
    run, events_, flight = runs.view(api.engine, run_id)
    if not who.sees(run["tenant"]):
        raise RunNotFound(run_id)
    throttle = flow.throttle_of(api.engine, run_id) if run["status"] in ("queued", "running") and not flight else None
    doc = run_json(run, events_, flight, throttle)
    doc["children"] = children_json(fanout.counts(api.engine, run_id))
    doc["parent"] = parent_json(run)
    return doc


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request, who: access.Principal = Depends(allowed("read"))) -> Response:
    """An unchanged run costs one lookup on the event loop; a changed one is read and rendered on a thread."""
    api = _api(request)
    tenant, version = await runs.version(api.reads, run_id)
    if not who.sees(tenant):
        raise RunNotFound(run_id)
    render = lambda: json.dumps(show(api, run_id, who), default=str).encode()  # noqa: E731
    if version is None:  # what `show` says also depends on other rows: read it all
        return Response(await anyio.to_thread.run_sync(render), media_type="application/json")
    etag = f'"{version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    body = api.shown.get(run_id, version)
    if body is None:
        body = await anyio.to_thread.run_sync(render)
        api.shown.put(run_id, version, body)
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: str, request: Request, who: access.Principal = Depends(allowed("cancel"))) -> dict[str, Any]:
    api = _api(request)
    visible_run(api, run_id, who)
    outcome = runs.cancel(api.engine, run_id, by=who.name, lease_seconds=api.settings.lease_seconds)
    return {"run_id": run_id, "status": outcome.status}


@router.post("/runs/{run_id}/signals/{name}")
def signal(run_id: str, name: str, body: SignalBody, request: Request,
           who: access.Principal = Depends(allowed("signal"))) -> dict[str, Any]:
    api = _api(request)
    visible_run(api, run_id, who)
    return _outcome(run_id, api.runtime.signal(run_id, name, body.data, key=body.key, sender=who.name))


def decide_for(api: Any, run_id: str, who: access.Principal, *, approved: bool, text: str | None) -> Any:
    """Approve or reject a waiting tool call of a run the principal sees, recorded under its name (the
    API's routes and the console's buttons)."""
    visible_run(api, run_id, who)
    return api.runtime.decide(run_id, approved=approved, by=who.name, text=text)


@router.post("/runs/{run_id}/approve")
def approve(run_id: str, body: Decision, request: Request,
            who: access.Principal = Depends(allowed("approve"))) -> dict[str, Any]:
    return _outcome(run_id, decide_for(_api(request), run_id, who, approved=True, text=body.note))


@router.post("/runs/{run_id}/reject")
def reject(run_id: str, body: Rejection, request: Request,
           who: access.Principal = Depends(allowed("approve"))) -> dict[str, Any]:
    return _outcome(run_id, decide_for(_api(request), run_id, who, approved=False, text=body.reason))


def inbox(api: Any, who: access.Principal, limit: int = 100) -> list[dict[str, Any]]:
    rows = runs.waiting_for(api.engine, APPROVAL, tenant=who.tenant, limit=limit)
    return [{"run_id": r["run_id"], "workflow": r["workflow"], "since": iso(r["wait_since"]),
             "timeout_at": iso(r["wait_until"]), "approval": (r["payload"] or {}).get("approval")} for r in rows]


@router.get("/approvals")
def approvals(request: Request, limit: int = Query(100, ge=1, le=1000),
              who: access.Principal = Depends(allowed("read"))) -> list[dict[str, Any]]:
    """Runs waiting for a person: the tool, its exact arguments and the key the call will use."""
    return inbox(_api(request), who, limit)


@router.get("/limits")
def limits(request: Request, who: access.Principal = Depends(allowed("admin"))) -> dict[str, Any]:
    """As `steplog limits --json`: every concurrency key (of every tenant, hence admins only) and rate limit."""
    from workers.limits import snapshot

    api = _api(request)
    return snapshot(api.engine, api.settings.redis_url)


@router.get("/runs/{run_id}/events")
async def events(
    run_id: str, request: Request, who: access.Principal = Depends(allowed("read")),
    last_event_id: str | None = Header(None), after: int | None = Query(None, ge=0),
) -> StreamingResponse:
    """Server-sent events: one per event of the run (``id`` is its seq), from Postgres, woken by the
    run's progress stream in Redis; resume with ``Last-Event-ID`` (or ``?after=SEQ``). Ends after the
    run's last event (an ``end`` event)."""
    api = _api(request)
    await anyio.to_thread.run_sync(visible_run, api, run_id, who)
    start = after if after is not None else _seq(last_event_id)
    return StreamingResponse(_stream(api, run_id, start, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _seq(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


async def _stream(api: Any, run_id: str, seen: int, request: Request):
    api.metrics.streams.inc()
    try:
        async with api.hub.follow(run_id) as follower:
            quiet = 0.0
            while True:
                run, new = await api.hub.read(run_id, seen, lambda after: _read(api, run_id, after))
                for e in new:
                    seen = e["seq"]
                    doc = {**event_json(e), "run_id": run_id}
                    yield f"id: {seen}\nevent: {e['type']}\ndata: {json.dumps(doc, default=str)}\n\n"
                if new:
                    quiet = 0.0
                if run["status"] in TERMINAL_STATUSES and not new:
                    yield f"event: end\ndata: {json.dumps({'run_id': run_id, 'status': run['status']})}\n\n"
                    return
                if await request.is_disconnected():
                    return
                began = time.monotonic()
                await follower.wait()
                quiet += time.monotonic() - began
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
    finally:
        api.metrics.streams.dec()


def _read(api: Any, run_id: str, after: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # The run row first: a terminal status commits with the last event, so the events read after it
    # include that event.
    run = runs.get(api.engine, run_id)
    return run, runs.events(api.engine, run_id, after=after)
