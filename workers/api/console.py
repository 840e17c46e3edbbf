"""The web console, served by `steplog api` at ``/``: server-rendered pages (Jinja2), no build step.

Sign in with a token (kept in an HttpOnly, SameSite=Strict cookie); runs with filters and search; a
run's page (timeline with takeovers marked, the step in flight and its lease, what it waits for, the
tool ledger, artifacts, the report rendered from Markdown) kept live by the run's event stream; the
approvals inbox; chat with streaming replies; a link to Flower when ``STEPLOG_FLOWER_URL`` is set.
Every action goes through the same functions as the JSON API, with the same roles and tenants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt

from checkpoint import access, runs, turns
from checkpoint.artifacts import ArtifactPointer, is_pointer_json
from checkpoint.statuses import RUN_STATUSES
from tools.audit import ledger_rows
from workers.api import auth
from workers.api.runs import decide_for, inbox, show
from workers.cli.render import event_name, iso

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


class _SignIn(Exception):
    """No valid session cookie: the page redirects to the sign-in form."""


def viewer(request: Request) -> access.Principal:
    try:
        return auth.principal(request)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise _SignIn from None
        raise


def _page(request: Request, name: str, who: access.Principal, **context: Any) -> HTMLResponse:
    api = request.app.state.api
    return templates.TemplateResponse(request, name, {"who": who, "flower_url": api.settings.flower_url, **context})


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode(errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def install(app: Any) -> None:
    @app.exception_handler(_SignIn)
    async def to_signin(request: Request, exc: _SignIn) -> RedirectResponse:
        return RedirectResponse("/ui/signin", status_code=303)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/runs", status_code=303)


@router.get("/ui/signin", response_class=HTMLResponse)
def signin_form(request: Request, error: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "signin.html", {"who": None, "error": error, "flower_url": None})


@router.post("/ui/signin")
async def signin(request: Request) -> Response:
    token = (await _form(request)).get("token", "").strip()
    api = request.app.state.api
    if await anyio.to_thread.run_sync(access.resolve, api.engine, token) is None:
        return RedirectResponse("/ui/signin?error=" + quote("that token is unknown or revoked"), status_code=303)
    res = RedirectResponse("/ui/runs", status_code=303)
    res.set_cookie(auth.COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return res


@router.post("/ui/signout")
def signout() -> Response:
    res = RedirectResponse("/ui/signin", status_code=303)
    res.delete_cookie(auth.COOKIE)
    return res


@router.get("/ui/runs", response_class=HTMLResponse)
def runs_page(request: Request, status: str | None = None, q: str | None = None,
              who: access.Principal = Depends(viewer)) -> HTMLResponse:
    status = status if status in RUN_STATUSES else None
    rows = runs.recent(request.app.state.api.engine, status=status, limit=200, tenant=who.tenant, q=(q or "").strip() or None)
    return _page(request, "runs.html", who, rows=rows, status=status, q=q or "", statuses=RUN_STATUSES, iso=iso)


def _run_view(request: Request, run_id: str, who: access.Principal) -> dict[str, Any]:
    api = request.app.state.api
    doc = show(api, run_id, who)
    attempts = runs.attempts(api.engine, run_id)
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_seq.setdefault(a["seq"], []).append(a)
    timeline = []
    for e in doc["events"]:
        tries = by_seq.get(e["seq"], [])
        lost = [a for a in tries if a["outcome"] in ("lost", "timed_out", "failed")]
        done = next((a for a in tries if a["outcome"] == "committed"), None)
        timeline.append({**e, "name": event_name(e), "lost": lost, "ms": done["step_ms"] if done else None})
    result = doc["result"] if isinstance(doc["result"], dict) else {}
    report = result.get("report") if isinstance(result.get("report"), str) else None
    return {"doc": doc, "timeline": timeline, "ledger": ledger_rows(api.engine, run_id),
            "artifacts": _pointers(doc), "report_html": _markdown.render(report) if report else None}


def _pointers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Artifact pointers in the run's result and events (what the run page links to)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(value: Any) -> None:
        if is_pointer_json(value):
            p = value.get("$artifact", value)
            found.setdefault(p["sha256"], p)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc["result"])
    for e in doc["events"]:
        walk(e["payload"])
    return list(found.values())


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: str, request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    return _page(request, "run.html", who, **_run_view(request, run_id, who))


@router.get("/ui/runs/{run_id}/live", response_class=HTMLResponse)
def run_live(run_id: str, request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    """The live part of the run page, fetched again whenever the run's event stream says it moved."""
    return _page(request, "run_live.html", who, **_run_view(request, run_id, who))


@router.get("/ui/runs/{run_id}/artifacts/{sha256}")
def artifact(run_id: str, sha256: str, request: Request, who: access.Principal = Depends(viewer)) -> Response:
    """An artifact the run references (and only one it references), from the artifact store."""
    api = request.app.state.api
    pointer = next((p for p in _pointers(show(api, run_id, who)) if p["sha256"] == sha256), None)
    if pointer is None:
        raise HTTPException(404, f"run {run_id} references no artifact {sha256[:16]}")
    from workers import wiring

    data = wiring.artifact_store(api.settings).get(ArtifactPointer.from_dict(pointer))
    return Response(data, media_type=pointer.get("media_type") or "application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{sha256[:16]}"'})


@router.post("/ui/runs/{run_id}/{verdict}")
async def decide(run_id: str, verdict: str, request: Request, who: access.Principal = Depends(viewer)) -> Response:
    """Approve or reject from the console (a form), then back to where it was sent from."""
    if verdict not in ("approve", "reject"):
        raise HTTPException(404, "not found")
    if not who.may("approve"):
        raise HTTPException(403, f"role {who.role!r} may not approve")
    form = await _form(request)
    text = form.get("note" if verdict == "approve" else "reason", "").strip() or None
    if verdict == "reject" and not text:
        raise HTTPException(422, "a rejection needs a reason")
    api = request.app.state.api

    await anyio.to_thread.run_sync(lambda: decide_for(api, run_id, who, approved=verdict == "approve", text=text))
    back = form.get("back", "")
    return RedirectResponse(back if back.startswith("/ui/") else f"/ui/runs/{run_id}", status_code=303)


@router.get("/ui/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    return _page(request, "approvals.html", who, waiting=inbox(request.app.state.api, who))


@router.get("/ui/limits", response_class=HTMLResponse)
def limits_page(request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    """What `steplog limits` shows: keys span tenants, so admins only."""
    if not who.may("admin"):
        raise HTTPException(403, f"role {who.role!r} may not see the fleet's limits")
    from workers.limits import snapshot

    api = request.app.state.api
    return _page(request, "limits.html", who, limits=snapshot(api.engine, api.settings.redis_url))


@router.get("/ui/chat", response_class=HTMLResponse)
def chat_index(request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    api = request.app.state.api
    rows = turns.sessions(api.engine, api.runtime.registry.sessions(), limit=100, tenant=who.tenant)
    return _page(request, "chat_index.html", who, sessions=rows, agents=api.runtime.registry.sessions(), iso=iso)


@router.post("/ui/chat")
async def chat_new(request: Request, who: access.Principal = Depends(viewer)) -> Response:
    if not who.may("submit"):
        raise HTTPException(403, f"role {who.role!r} may not open a session")
    agent = (await _form(request)).get("agent", "chat")
    api = request.app.state.api
    sid = await anyio.to_thread.run_sync(
        lambda: api.runtime.conversations.open(agent, by=who.name, tenant=auth.tenant_of(who)))
    return RedirectResponse(f"/ui/chat/{sid}", status_code=303)


@router.get("/ui/chat/{session_id}", response_class=HTMLResponse)
def chat_page(session_id: str, request: Request, who: access.Principal = Depends(viewer)) -> HTMLResponse:
    api = request.app.state.api
    run = auth.visible_run(api, session_id, who)
    talk = turns.recent(api.engine, session_id, through=2**31 - 1, limit=200)
    return _page(request, "chat.html", who, session_id=session_id, run=run, turns=talk,
                 may_talk=who.may("signal"), render=_markdown.render)
