"""Conversations over HTTP: open a session, send it a message and get the reply (as JSON, or streamed
as server-sent events with ``Accept: text/event-stream``), read a session. Any replica serves any
message: the session lives in Postgres, and a message is a signal to it."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from checkpoint import access, turns
from tasks.agents.session import MAX_MESSAGE
from workers.api.auth import allowed, tenant_of, visible_run
from workers.cli.render import iso
from workers.conversation import NotASession

router = APIRouter()


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field("chat", min_length=1, max_length=200)
    title: str | None = Field(None, max_length=200)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_MESSAGE)
    message_id: str | None = Field(None, min_length=1, max_length=200)


def _api(request: Request) -> Any:
    return request.app.state.api


def _session(api: Any, session_id: str, who: access.Principal) -> dict[str, Any]:
    run = visible_run(api, session_id, who)
    if run["workflow"] not in api.runtime.registry.sessions():
        raise NotASession(f"run {session_id} is a {run['workflow']!r} run, not a session")
    return run


def turn_json(session_id: str, t: turns.Turn) -> dict[str, Any]:
    return {"session_id": session_id, "turn": t.turn, "reply": t.reply, "citations": t.citations}


@router.post("/sessions", status_code=201)
def open_session(body: NewSession, request: Request, who: access.Principal = Depends(allowed("submit"))) -> dict[str, str]:
    api = _api(request)
    sid = api.runtime.conversations.open(body.agent, by=who.name, title=body.title, tenant=tenant_of(who))
    return {"session_id": sid}


@router.get("/sessions/{session_id}")
def get_session(session_id: str, request: Request, limit: int = Query(200, ge=1, le=1000),
                who: access.Principal = Depends(allowed("read"))) -> dict[str, Any]:
    api = _api(request)
    run = _session(api, session_id, who)
    last = turns.recent(api.engine, session_id, through=2**31 - 1, limit=limit)
    return {"session_id": session_id, "agent": run["workflow"], "status": run["status"], "tenant": run["tenant"],
            "created_at": iso(run["created_at"]), "updated_at": iso(run["updated_at"]),
            "turns": [{"turn": t.turn, "message": t.message, "reply": t.reply, "citations": t.citations,
                       "message_id": t.message_key} for t in last]}


@router.post("/sessions/{session_id}/messages", response_model=None)
def say(session_id: str, body: Message, request: Request, timeout: float = Query(120.0, gt=0, le=600),
        who: access.Principal = Depends(allowed("signal"))) -> dict[str, Any] | StreamingResponse:
    """The reply to the message; with ``Accept: text/event-stream``, ``delta`` events as a model streams
    the reply, then one ``reply`` event (the committed turn)."""
    api = _api(request)
    _session(api, session_id, who)
    talk = api.runtime.conversations
    sent = talk.send(session_id, body.text, by=who.name, key=body.message_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return turn_json(session_id, talk.reply(sent, timeout=timeout))
    return StreamingResponse(_streamed(talk, sent, timeout), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _streamed(talk: Any, sent: Any, timeout: float):
    """Live entries of the message's turn as they come (a thread waits for the reply meanwhile)."""
    out: queue.Queue = queue.Queue()

    def wait() -> None:
        try:
            out.put(("reply", turn_json(sent.session_id, talk.reply(sent, timeout=timeout, on_live=lambda e: out.put(("live", e))))))
        except Exception as exc:  # told to the client as an error event
            out.put(("error", {"error": str(exc)}))

    threading.Thread(target=wait, daemon=True).start()
    while True:
        kind, doc = out.get()
        if kind == "live":
            yield f"event: {doc.get('type', 'delta')}\ndata: {json.dumps(doc)}\n\n"
            continue
        yield f"event: {kind}\ndata: {json.dumps(doc)}\n\n"
        return
