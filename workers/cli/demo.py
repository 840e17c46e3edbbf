"""`steplog demo`: a research run through real workers, one SIGKILLed mid-run, the run resuming; then a
conversation whose second turn loses its worker to a SIGKILL and still gets one reply.

Every phase prints as it happens; everything the demo started (workers, Flower) is stopped on exit
or Ctrl-C, and the local services too unless `--keep`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from workers.cli.common import ctx

if TYPE_CHECKING:
    import subprocess

    from workers.fleet import WorkerProc

out = Console(soft_wrap=True)
FINISHED = ("succeeded", "failed", "cancelled")
QUESTION = "How do I run a subprocess with a timeout?"
CONVERSATION = (QUESTION, "and which exception tells me it expired?")
DEMO_APPROVAL_DELAY = 1.0  # seconds a parked run waits before the demo approves it


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLOG_")}
    for name in ("database_url", "broker_url", "redis_url", "artifacts_url", "home"):
        value = getattr(settings, name, None)
        if value:
            env[f"STEPLOG_{name.upper()}"] = str(value)
    for k, v in os.environ.items():
        if k.startswith("STEPLOG_") and k not in env:
            env[k] = v
    env["STEPLOG_LOG_LEVEL"] = "WARNING"
    return env


class Demo:
    def __init__(self, ctx, workers: int, log_dir: Path) -> None:
        self.ctx, self.engine, self.log_dir = ctx, ctx.engine, log_dir
        self.env = _env(ctx.settings)
        self.procs: list[WorkerProc] = []
        self.flower: subprocess.Popen | None = None
        self.n_workers = workers

    def phase(self, text: str) -> None:
        """One line of the story; ``text`` is markup, with any data in it escaped."""
        out.print(f"[bold cyan]==>[/bold cyan] {text}")

    def start_workers(self) -> None:
        import socket

        from workers.fleet import WorkerProc

        self.phase(f"starting {self.n_workers} worker processes (logs in {escape(str(self.log_dir))})")
        for i in range(self.n_workers):
            self.procs.append(WorkerProc(self.env, f"demo{i + 1}", self.log_dir, host=socket.gethostname()))
        with out.status("waiting for the workers to connect to Postgres and the broker"):
            for w in self.procs:
                w.wait_ready(self.engine)
                out.print(f"    {w.node} ready (pid {w.pid})", markup=False)

    def start_flower(self) -> None:
        import secrets
        import subprocess
        import sys

        from workers.fleet import ROOT
        from workers.local.procs import free_port

        port, password = free_port(), secrets.token_urlsafe(12)
        env = {**self.env, "STEPLOG_FLOWER_USER": "steplog", "STEPLOG_FLOWER_PASSWORD": password}
        log = open(self.log_dir / "flower.log", "ab")
        self.flower = subprocess.Popen(
            [sys.executable, "-m", "workers", "flower", f"--port={port}"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.phase(f"Flower on http://127.0.0.1:{port}/tasks  user steplog  password {escape(password)}  (shown once)")

    def submit(self, workflow: str, data: dict[str, Any]) -> str:
        run_id = self.ctx.celery.steplog.submit(workflow, data, submitted_by="demo")
        self.phase(escape(f"submitted {workflow} run {run_id}"))
        return run_id

    def follow(self, run_id: str, *, kill_at_seq: int) -> dict[str, Any]:
        """Print each event as it lands; SIGKILL the worker running step ``kill_at_seq``; approve each
        tool call the run waits on, a moment after it parks (as an operator would)."""
        import signal

        from checkpoint import runs

        seen, killed, last_note, approve_at = 0, None, time.monotonic(), None
        while True:
            for e in runs.events(self.engine, run_id, after=seen):
                seen = e["seq"]
                asked = e["payload"].get("approval") if e["type"] == "waiting" else None
                if asked:
                    self.phase(escape(f"run parked: {asked['tool']} waits for approval (key {asked['key'][:16]}...); "
                                      "no worker, lease or message held while it waits"))
                    approve_at = time.monotonic() + DEMO_APPROVAL_DELAY
                elif e["type"] == "signal":
                    self.phase(escape(f"approved by {e['payload'].get('sender')}: the call runs once, with that key"))
                resumed = killed and e["seq"] == killed[1]
                style = "bold green" if resumed else ""
                what = " ".join(str(e["payload"].get(k)) for k in ("kind", "tool") if e["payload"].get(k))
                out.print(
                    f"    step {e['seq']:>3} {e['type']:<10} {what:<22} by {e['worker'] or '-':<22} "
                    f"attempt {e['attempt']}" + ("   <- resumed here after the kill" if resumed else ""),
                    style=style, markup=False, highlight=False,
                )
                last_note = time.monotonic()
            run = runs.get(self.engine, run_id)
            if run["status"] in FINISHED:
                return run
            if approve_at is not None and time.monotonic() >= approve_at:
                out.print(f"    $ steplog approve {run_id}", style="bold", markup=False, highlight=False)
                self.ctx.celery.steplog.decide(run_id, approved=True, by="demo", text="looks right")
                approve_at = None
            if killed is None:
                flight = runs.in_flight(self.engine, run_id)
                if flight and flight["seq"] >= kill_at_seq:
                    victim = next((w for w in self.procs if w.node == flight["worker"] and w.alive()), None)
                    if victim is not None:
                        victim.signal(signal.SIGKILL)
                        if self._committed(run_id, flight):
                            # The step finished in the instant before the kill: try the next one.
                            self.phase(escape(f"killed {victim.node} just after it finished step {flight['seq']}; "
                                              "trying again"))
                            self._replace(victim)
                            kill_at_seq = flight["seq"] + 1
                        else:
                            killed = (victim.node, flight["seq"])
                            self.phase(
                                f"[bold red]SIGKILL[/bold red] {escape(victim.node)} (pid {victim.pid}) in the middle"
                                f" of step {flight['seq']}; its lease lapses and another worker takes the step over"
                            )
                        last_note = time.monotonic()
            if time.monotonic() - last_note > 1.0 and run["status"] != "waiting":
                flight = runs.in_flight(self.engine, run_id)
                where = f"step {flight['seq']} on {flight['worker']}" if flight else "waiting for a worker"
                out.print(f"    ... {where}", style="dim", markup=False)
                last_note = time.monotonic()
            time.sleep(0.1)

    def _committed(self, run_id: str, flight: dict[str, Any]) -> bool:
        from checkpoint import runs

        return any(a["seq"] == flight["seq"] and a["attempt"] == flight["attempt"] and a["outcome"] == "committed"
                   for a in runs.attempts(self.engine, run_id))

    def _replace(self, victim: WorkerProc) -> None:
        from workers.fleet import WorkerProc

        victim.proc.wait()
        self.procs[self.procs.index(victim)] = fresh = WorkerProc(self.env, victim.name, self.log_dir, host=victim.node.split("@")[1])
        fresh.wait_ready(self.engine)

    def converse(self) -> bool:
        """A short conversation with the chat agent. Its second turn starts on a worker that SIGKILLs
        itself mid-turn (after the model's decision is recorded, before its step commits); another
        worker takes the step over, and the turn ends with exactly one reply."""
        import socket

        from workers.fleet import WorkerProc

        talk = self.ctx.celery.steplog.conversations
        sid = talk.open("chat", by="demo")
        self.phase(escape(f"a conversation: session {sid} with the chat agent; any worker serves any turn"))
        first = self._turn(talk, sid, CONVERSATION[0])
        self.phase("stopping the workers; starting one that is SIGKILLed in the middle of the next turn")
        for w in self.procs:
            w.stop()
        doomed = WorkerProc({**self.env, "STEPLOG_FAULT_AFTER_DECISION": "1"}, "doomed", self.log_dir,
                            host=socket.gethostname())
        self.procs = [doomed]
        doomed.wait_ready(self.engine)
        out.print(f"you> {CONVERSATION[1]}", style="bold", markup=False, highlight=False)
        sent = talk.send(sid, CONVERSATION[1], by="demo")
        deadline = time.monotonic() + 30
        while doomed.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.phase(f"[bold red]SIGKILL[/bold red] {escape(doomed.node)} died mid-turn (its decision was recorded, its "
                   "step never committed); starting another worker, which takes the step over")
        self.procs.append(WorkerProc(self.env, "demo-next", self.log_dir, host=socket.gethostname()))
        self.procs[-1].wait_ready(self.engine)
        second = talk.reply(sent, timeout=60)
        out.print(f"agent> {second.reply}", markup=False, highlight=False)
        replies = [e for e in self._events(sid) if e["type"] == "reply" and e["payload"].get("turn") == second.turn]
        self.phase(escape(f"turn {second.turn}: {len(replies)} reply event, committed by {replies[0]['worker']}; "
                          f"it cites {', '.join(second.citations) or 'nothing'} (the follow-up's 'it' is the "
                          f"subprocess's timeout from turn {first.turn})"))
        self.phase(escape(f"the conversation: steplog show {sid}; go on with it: steplog chat --session {sid}"))
        return len(replies) == 1

    def _turn(self, talk: Any, sid: str, text: str) -> Any:
        out.print(f"you> {text}", style="bold", markup=False, highlight=False)
        turn = talk.reply(talk.send(sid, text, by="demo"), timeout=60)
        out.print(f"agent> {turn.reply}", markup=False, highlight=False)
        return turn

    def _events(self, run_id: str) -> list[dict[str, Any]]:
        from checkpoint import runs

        return runs.events(self.engine, run_id)

    def ensure_corpus(self) -> None:
        from tools.corpus import build_stdlib, corpus_exists

        if corpus_exists(self.engine, "stdlib"):
            self.phase("the stdlib corpus is built")
            return
        self.phase("building the research corpus from this Python's standard library (a few seconds, once)")
        with out.status("reading module, class and function docstrings and indexing them"):
            stats = build_stdlib(self.engine)
        out.print(f"    {stats.documents} documents, {stats.passages} passages")

    def stop(self) -> None:
        import signal

        for w in self.procs:
            w.stop()
        if self.flower and self.flower.poll() is None:
            os.killpg(self.flower.pid, signal.SIGKILL)
            self.flower.wait()


def demo(
    max_steps: Annotated[int, typer.Option("--max-steps", min=4, help="Step budget of the research run.")] = 40,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the local services running afterwards.")] = False,
    workers: Annotated[int, typer.Option(min=2, help="Worker processes to start.")] = 3,
) -> None:
    """A research run through real workers; the one running a step is SIGKILLed mid-run and the run resumes;
    its report waits for an approval, which the demo gives. Then a conversation with the chat agent, one
    of whose turns loses its worker to a SIGKILL and still gets exactly one reply."""
    settings = ctx.settings  # starts the local services when no STEPLOG_*_URL is set
    local = os.environ.get("STEPLOG_DATABASE_URL") is None
    log_dir = Path(settings.home).resolve() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    d = Demo(ctx, workers, log_dir)
    d.phase(escape(f"Postgres {settings.database_url.rsplit('@', 1)[-1]}, broker {settings.broker_url}")
            + (" (the project's own local services)" if local else ""))
    code = 1
    try:
        d.ensure_corpus()
        d.start_workers()
        d.start_flower()
        run_id = d.submit("research", {"question": QUESTION, "max_steps": max_steps, "approve": True})
        run = d.follow(run_id, kill_at_seq=max(3, max_steps // 3))
        d.phase(escape(f"run {run_id} {run['status']}"))
        if run["status"] == "succeeded":
            out.print(run["result"]["report"], markup=False, highlight=False)
            art = run["result"].get("report_artifact") or {}
            uri = (art.get("$artifact") or art).get("uri")
            d.phase(escape(f"report artifact: {uri}") if uri else "report saved in Postgres (steplog report)")
        else:
            out.print(f"    {run['error']}", markup=False)
        out.print(f"    history: steplog show {run_id}   report: steplog report {run_id}   tools: steplog tools {run_id}",
                  markup=False)
        talked = d.converse()
        code = 0 if run["status"] == "succeeded" and talked else 1
    except KeyboardInterrupt:
        d.phase("interrupted; cleaning up")
    finally:
        d.stop()
        if local and not keep:
            from workers.local.servers import LocalServices

            LocalServices(Path(settings.home)).down()
            d.phase("stopped the local services (use --keep to leave them running)")
    raise typer.Exit(code)
