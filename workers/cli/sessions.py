"""`steplog say | chat | sessions`: conversations with chat agents, each turn served by any worker.

Exit codes: 0 answered; 1 the session does not exist, has ended, or did not answer within --timeout
(the message is stored and will still be answered: ask again with the same --message-id); 2 bad input
(no text, a run that is not a session, an agent that is not a chat agent). Nothing is sent on an error.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from workers.cli.common import ctx, err, fail, operator, out, print_json

DEFAULT_AGENT = "chat"
TIMEOUT = 120.0


def _session_for(talk: Any, session: str | None, new: bool, agent: str | None, tenant: str = "default") -> str:
    """The session to talk to: a new one of ``agent`` (``--new``), or ``session`` checked to exist."""
    if new:
        sid = talk.open(agent or DEFAULT_AGENT, by=operator(), tenant=tenant)
        err.print(Text(f"session {sid} ({agent or DEFAULT_AGENT})", style="dim"), highlight=False)
        return sid
    if session is None:
        fail("name a session, or start one with --new", 2)
    run = talk.check(session)
    if agent is not None and agent != run["workflow"]:
        fail(f"session {session} talks to {run['workflow']!r}; --agent {agent} applies to new sessions only", 2)
    return session


def say(
    words: Annotated[list[str], typer.Argument(help="SESSION then TEXT, or with --new just TEXT.", show_default=False)],
    new: Annotated[bool, typer.Option("--new", help="Start a new session for this message.")] = False,
    agent: Annotated[str | None, typer.Option("--agent", help=f"Chat agent of a new session (default {DEFAULT_AGENT}).")] = None,
    message_id: Annotated[str | None, typer.Option("--message-id", help="Client message id: sending it again is harmless (one turn, one reply).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"session_id", "turn", "reply", "citations"}.')] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the reply.")] = TIMEOUT,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant of a new session.")] = "default",
) -> None:
    """Send one message to a session, wait for its reply and print it."""
    if new and len(words) != 1:
        fail('with --new give just the text: steplog say --new "text"', 2)
    if not new and len(words) != 2:
        fail('give the session and the text: steplog say SESSION "text" (or --new "text")', 2)
    session, text = (None, words[0]) if new else (words[0], words[1])
    if not text.strip():
        fail("a message needs some text", 2)
    talk = ctx.celery.steplog.conversations
    sid = _session_for(talk, session, new, agent, tenant)
    turn = talk.reply(talk.send(sid, text, by=operator(), key=message_id), timeout=timeout)
    if as_json:
        print_json({"session_id": sid, "turn": turn.turn, "reply": turn.reply, "citations": turn.citations})
    else:
        out.print(turn.reply, markup=False, highlight=False)


def chat(
    session: Annotated[str | None, typer.Option("--session", help="Go on with this session.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new session (the default without --session).")] = False,
    agent: Annotated[str | None, typer.Option("--agent", help=f"Chat agent of a new session (default {DEFAULT_AGENT}).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each reply.")] = TIMEOUT,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant of a new session.")] = "default",
) -> None:
    """A conversation in the terminal: each line you type is a message; replies stream in as they come."""
    if session is not None and new:
        fail("give --session or --new, not both", 2)
    talk = ctx.celery.steplog.conversations
    sid = _session_for(talk, session, session is None, agent, tenant)
    err.print(Text("type a message and press Enter; Ctrl-D ends (the session stays, and waits)", style="dim"))
    while True:
        try:
            line = input("you> ") if sys.stdin.isatty() else sys.stdin.readline()
        except EOFError:
            line = ""
        if line == "":  # end of input
            break
        if not line.strip():
            continue
        shown = _Live()
        turn = talk.reply(talk.send(sid, line.rstrip("\n"), by=operator()), timeout=timeout, on_live=shown)
        shown.finish(turn.reply)
    err.print(Text(f"\nsession {sid} waits for your next message: steplog chat --session {sid}", style="dim"))


class _Live:
    """Prints a reply's tokens as they stream in; at the end, the committed reply if the stream did
    not show exactly it (no model stream, a stream lost, or a retried step)."""

    def __init__(self) -> None:
        self.text = ""
        self.started = False
        self.attempt: Any = None

    def __call__(self, entry: dict[str, Any]) -> None:
        if entry.get("type") == "restart" or (entry.get("type") == "delta" and self.started and entry.get("attempt") != self.attempt):
            if self.text:
                sys.stdout.write(" …\n")  # the step is being retried: its text starts over
            self.text, self.started = "", False
        if entry.get("type") != "delta":
            return
        if not self.started:
            sys.stdout.write("agent> ")
            self.started, self.attempt = True, entry.get("attempt")
        self.text += str(entry.get("text", ""))
        sys.stdout.write(str(entry.get("text", "")))
        sys.stdout.flush()

    def finish(self, reply: str) -> None:
        if self.started and self.text.strip() == reply.strip():
            sys.stdout.write("\n")
        else:
            if self.started:
                sys.stdout.write("\n")
            sys.stdout.write(f"agent> {reply}\n")
        sys.stdout.flush()


def sessions(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sessions (conversations with chat agents), newest first, with their turn counts."""
    from checkpoint import turns
    from workers.cli.render import iso, table, when, whole

    rows = turns.sessions(ctx.engine, ctx.celery.steplog.registry.sessions(), limit=limit)
    docs = [{"session_id": r.run_id, "agent": r.workflow, "status": r.status, "turns": r.turns,
             "created_at": iso(r.created_at), "updated_at": iso(r.updated_at), "last_turn_at": iso(r.last_turn_at)}
            for r in rows]
    if as_json:
        print_json(docs)
        return
    view = table("session", "agent", "status", "turns", "last turn")
    for d in docs:
        view.add_row(whole(d["session_id"]), Text(d["agent"]), Text(d["status"]), str(d["turns"]),
                     when(d["last_turn_at"]) if d["last_turn_at"] else "-")
    out.print(view)
