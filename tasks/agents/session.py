"""A chat agent's run is a session: it answers each ``message`` signal with one turn, then waits.

A turn is: the step woken by the message rebuilds the conversation's context and reasons; tool steps
and reasoning steps follow as in any agent run; the step that has the answer commits the ``reply``
event, the turn's row (:mod:`checkpoint.turns`) and the wait for the next message, in one transaction.
Messages sent during a turn are buffered in Postgres and consumed by that wait in the order they were
stored, each making its own turn; a resent message (same key) is one signal, so one turn.

The context of a turn comes through the three tiers, fetched at its start and written back at its end:
- hot: the last ``window`` turns in Redis (:mod:`checkpoint.session_cache`), with a TTL;
- warm: the same turns from Postgres when Redis does not hold them all (expired, wiped), plus the
  session's memory: a line per turn older than the window, kept in the checkpoint and written as a
  searchable summary every ``SUMMARY_EVERY`` turns;
- cold: large tool results, stored as artifacts and referenced by pointer (as in any agent run).

While a turn runs, its recent turns live in the checkpoint (``conversation``); the wait for the next
message drops them, so a waiting session's checkpoint stays small however long it gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from checkpoint import turns
from checkpoint.summary import summary_write
from checkpoint.turns import Turn
from tasks.workflow import StepContext, Wait

log = logging.getLogger(__name__)

MESSAGE = "message"  # the signal a session waits for
LISTEN = "listen"  # the phase of a session between turns
WINDOW = 6  # recent turns a turn sees whole
MEMORY_LINES = 40  # lines of older turns kept in the checkpoint's memory
SUMMARY_EVERY = 10  # turns between two searchable summaries of the memory
MAX_MESSAGE = 20_000  # characters of one message


def start_state() -> dict[str, Any]:
    return {"phase": LISTEN, "turn": 0, "message": None, "conversation": [], "memory": [], "steps_total": 0}


def message_text(data: Any) -> tuple[str | None, str | None]:
    """The text of a message signal's data, or why there is none (a bad signal gets a reply, not a crash)."""
    if isinstance(data, dict) and isinstance(data.get("text"), str) and data["text"].strip():
        text = data["text"].strip()
        if len(text) > MAX_MESSAGE:
            return None, f"the message is {len(text)} characters long; at most {MAX_MESSAGE} are taken"
        return text, None
    return None, 'a message is {"text": "..."} with non-empty text; this one was ' + repr(data)[:200]


def listen(state: dict[str, Any], payload: dict[str, Any] | None = None) -> Wait:
    """Wait for the next message (a message sent already is taken at once)."""
    return Wait(MESSAGE, state=state, payload=payload or {"kind": "listen", "turn": state["turn"]})


def begin(ctx: StepContext, state: dict[str, Any], *, window: int = WINDOW) -> bool:
    """Start a turn in ``state`` if a message woke this step (False: nothing to answer yet)."""
    wake = ctx.wake
    if wake is None or wake.kind != "signal" or wake.name != MESSAGE:
        return False
    text, problem = message_text(wake.data)
    state["turn"] += 1
    state["message"] = {"text": text or "", "key": wake.key, "sent_at": wake.at, "problem": problem}
    state.update(steps_used=0, pending=None, observations=[], summary=[], notes=[], answer=None,
                 corrections=0, last_error=None, phase="reason")
    state["conversation"] = [t.to_json() for t in recall(ctx, through=state["turn"] - 1, window=window)]
    return True


def recall(ctx: StepContext, *, through: int, window: int = WINDOW) -> list[Turn]:
    """The last ``window`` turns up to ``through``: from Redis when it holds them all, else from Postgres
    (and put back in Redis)."""
    if through < 1:
        return []
    cache = getattr(ctx.services, "sessions", None)
    want = min(window, through)
    if cache is not None:
        hot = cache.recent(ctx.run_id, through=through, want=want)
        if hot is not None:
            return hot
    warm = turns.recent(ctx.services.engine, ctx.run_id, through=through, limit=want)
    if cache is not None:
        cache.remember(ctx.run_id, warm)
    return warm


def live(ctx: StepContext, state: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """``on_delta``/``on_restart`` for a streaming model: reply tokens go to the session's live stream,
    tagged with the message they answer (nothing without Redis)."""
    cache = getattr(ctx.services, "sessions", None)
    if cache is None:
        return {}
    tag = {"turn": state["turn"], "key": state["message"]["key"], "attempt": ctx.attempt}
    return {"on_delta": lambda text: cache.announce(ctx.run_id, {"type": "delta", **tag, "text": text}),
            "on_restart": lambda: cache.announce(ctx.run_id, {"type": "restart", **tag})}


def cited(answer: dict[str, Any]) -> list[str]:
    """The document ids an answer cites, in order, each once."""
    ids: dict[str, None] = {}
    for c in answer.get("citations") or []:
        doc = c.get("doc_id") if isinstance(c, dict) else c
        if isinstance(doc, str) and doc:
            ids.setdefault(doc, None)
    return list(ids)


def reply(run: Any, payload: dict[str, Any], writes: Sequence[Callable], *, window: int = WINDOW) -> Wait:
    """End the turn: the ``reply`` event, the turn's row and the wait for the next message, one commit.
    ``run``: the :class:`tasks.agents.loop.AgentRun` whose state has the answer."""
    ctx, state = run.ctx, run.state
    message, answer = state["message"], state["answer"]
    turn = Turn(state["turn"], message["key"], message["text"] or f"({message['problem']})", answer["markdown"],
                cited(answer), ctx.seq)
    writes = [*writes, turns.write(ctx.run_id, turn, sent_at=message.get("sent_at"))]
    conversation = state["conversation"]
    if len(conversation) >= window:  # the oldest turn leaves the window: keep a line of it
        state["memory"] = [*state["memory"], memory_line(Turn.from_json(conversation[0]))][-MEMORY_LINES:]
        if turn.turn % SUMMARY_EVERY == 0:
            writes.append(summary_write(ctx.run_id, ctx.seq, "\n".join(state["memory"])))
    state["steps_total"] += state["steps_used"]
    state.update(phase=LISTEN, message=None, conversation=[], pending=None, observations=[], summary=[],
                 notes=[], answer=None, steps_used=0)
    cache = getattr(ctx.services, "sessions", None)
    after: list[Callable[[], Any]] = []
    if cache is not None:
        # The doorbell first (a client waits on it), with the turn as committed: it is only rung after the commit.
        after = [lambda: cache.ring(ctx.run_id, turn), lambda: cache.push(ctx.run_id, turn)]
    event = {**payload, "kind": "reply", "turn": turn.turn, "message_key": turn.message_key, "reply": turn.reply,
             "citations": turn.citations, "truncated": answer["truncated"]}
    return Wait(MESSAGE, state=state, payload=event, writes=writes, event="reply", after=after)


def memory_line(t: Turn) -> str:
    cites = ", ".join(f"[{c}]" for c in t.citations[:4]) or "no sources"
    return f"turn {t.turn}: asked {t.message[:160]!r}; answered citing {cites}"
