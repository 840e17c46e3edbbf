"""A client's side of a session: open one, send it a message, wait for that message's reply.

Used by ``steplog say`` / ``steplog chat``, the tests and the benchmark. A message is a ``message``
signal (stored first; its key, the client message id, makes a resend harmless); its reply is the turn
row that the message's turn committed (:mod:`checkpoint.turns`), found by that key. The live stream in
Redis only says when to look, and carries reply tokens as a model streams them: if it is lost, the
reply is still read from Postgres, a little later.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from checkpoint import runs, turns
from checkpoint.errors import BadInput, RunNotFound, SteplogError
from checkpoint.signals import RunFinished
from checkpoint.statuses import TERMINAL_STATUSES
from checkpoint.turns import Turn
from tasks.agents.session import MAX_MESSAGE, MESSAGE

POLL_SECONDS = 0.5  # longest wait on the live stream before looking in Postgres again
MARK_SLACK_MS = 2000  # how far before sending a client starts reading the live stream (clock skew)


class NotASession(BadInput):
    """The run exists but is not a session (its workflow is not a chat agent).
    (Sending to such a run is refused by :func:`checkpoint.signals.send` with the same words.)"""


class SessionEnded(SteplogError):
    """The session failed or was cancelled: it answers no more messages."""


class NoReply(SteplogError):
    """No reply within the time the caller gave; the message is stored and will still be answered."""


@dataclass(frozen=True)
class Sent:
    session_id: str
    key: str
    status: str  # delivered, buffered or duplicate (checkpoint.signals.SignalOutcome)
    mark: str  # the live stream's last id before the message was sent: follow from here


class Conversations:
    """``runtime``: the process's :class:`workers.process.ProcessRuntime` (engine, registry, settings)."""

    def __init__(self, runtime: Any, cache: Any = None) -> None:
        self.runtime = runtime
        self.cache = cache  # checkpoint.session_cache.SessionCache, or None without Redis

    def open(self, agent: str, *, by: str, title: str | None = None, tenant: str = runs.DEFAULT_TENANT) -> str:
        """A new session of ``tenant`` with chat agent ``agent``; its id."""
        chat = self.runtime.registry.sessions()
        if agent not in chat:
            raise BadInput(f"{agent!r} is not a chat agent; chat agents: {', '.join(chat) or 'none'}")
        return self.runtime.submit(agent, {"title": title} if title else {}, submitted_by=by, tenant=tenant)

    def check(self, session_id: str) -> dict[str, Any]:
        """The session's run row; RunNotFound, NotASession or SessionEnded otherwise."""
        run = runs.get(self.runtime.engine, session_id)
        if run["workflow"] not in self.runtime.registry.sessions():
            raise NotASession(f"run {session_id} is a {run['workflow']!r} run, not a session")
        if run["status"] in TERMINAL_STATUSES:
            raise SessionEnded(f"session {session_id} is {run['status']}: {_reason(run)}")
        return run

    def send(self, session_id: str, text: str, *, by: str, key: str | None = None) -> Sent:
        """Store ``text`` as the session's next message (deduplicated by ``key``) and wake the session."""
        if not isinstance(text, str) or not text.strip():
            raise BadInput("a message needs some text")
        if len(text) > MAX_MESSAGE:
            raise BadInput(f"the message is {len(text)} characters long; at most {MAX_MESSAGE} are taken")
        # Live entries are read from a little before now (stream ids are Redis's clock in ms): the reply's
        # doorbell cannot be missed, and the seconds before it are skipped by key.
        mark = f"{int(time.time() * 1000) - MARK_SLACK_MS}-0"
        try:
            outcome = self.runtime.signal(session_id, MESSAGE, {"text": text.strip()}, key=key or uuid.uuid4().hex,
                                          sender=by, workflows=self.runtime.registry.sessions(), kind="session")
        except RunFinished as exc:
            raise SessionEnded(f"session {session_id} is {exc.status}: {_reason(runs.get(self.runtime.engine, session_id))}") from None
        return Sent(session_id, outcome.key, outcome.status, mark)

    def reply(
        self, sent: Sent, *, timeout: float, on_live: Callable[[dict[str, Any]], None] | None = None,
    ) -> Turn:
        """The reply to ``sent``'s message, waiting up to ``timeout`` seconds. ``on_live`` gets the live
        entries of that message's turn (``delta`` tokens, ``restart``) as they arrive."""
        engine, sid, after = self.runtime.engine, sent.session_id, sent.mark
        deadline = time.monotonic() + timeout
        while True:
            turn = turns.by_key(engine, sid, sent.key)
            if turn is not None:
                return turn
            run = runs.get(engine, sid)
            if run["status"] in TERMINAL_STATUSES:
                raise SessionEnded(f"session {sid} is {run['status']} before it answered: {_reason(run)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoReply(f"no reply from session {sid} within {timeout:g} s; the message is stored (key "
                              f"{sent.key}) and will be answered: ask again with --message-id {sent.key}")
            started = time.monotonic()
            if on_live is None and self.cache is not None:  # only the reply matters: its own doorbell
                rung = self.cache.await_reply(sid, sent.key, block_ms=max(1, int(min(left, POLL_SECONDS) * 1000)))
                if rung is not None and isinstance(rung.get("turn"), dict):
                    return Turn.from_json(rung["turn"])
                if rung is None and time.monotonic() - started < 0.05:
                    time.sleep(min(0.2, max(left, 0)))  # Redis unavailable: poll Postgres
                continue
            entries = self._follow(sid, after, min(left, POLL_SECONDS))
            for entry_id, entry in entries:
                after = entry_id
                if entry.get("key") != sent.key:
                    continue
                if entry.get("type") == "reply":
                    if isinstance(entry.get("turn"), dict):  # announced after its commit: the committed turn
                        return Turn.from_json(entry["turn"])
                    break  # read it from Postgres
                if on_live is not None:
                    on_live(entry)
            if not entries and time.monotonic() - started < 0.05:
                time.sleep(min(0.2, max(left, 0)))  # no live stream (Redis down): poll Postgres

    def _follow(self, sid: str, after: str, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        if self.cache is None:
            return []
        return self.cache.follow(sid, after, block_ms=max(1, int(seconds * 1000)))


def _reason(run: dict[str, Any]) -> str:
    error = run.get("error") or {}
    return str(error.get("message") or "no reason recorded") if isinstance(error, dict) else str(error)


__all__ = ["Conversations", "NoReply", "NotASession", "RunNotFound", "Sent", "SessionEnded"]
