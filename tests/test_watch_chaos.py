"""`steplog watch` and `steplog chaos` against real workers, Postgres and Redis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.harness import ROOT, assert_contiguous, cli, cli_json, wait_for
from workers.cli import chaos_procs

pytestmark = pytest.mark.slow


def _argv(command: str) -> list[str]:
    """`python -m workers COMMAND` once workers.cli mounts it, else the command module's own entry point."""
    from workers.cli.main import app

    mounted = {c.name or c.callback.__name__ for c in app.registered_commands}
    return ["-m", "workers", command] if command in mounted else ["-m", f"workers.{command}_cmd"]


def steplog(env, command: str, *args: str, timeout: float = 120, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, *_argv(command), *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )


def expected_lines(env, run_id: str) -> list[dict]:
    return [{**e, "run_id": run_id} for e in cli_json(env, "show", run_id, "--json")["events"]]


def test_watch_of_finished_runs_prints_every_event_and_the_outcome(fleet):
    env = fleet.env
    fleet.start()
    ok = fleet.submit("countdown", {"steps": 3})
    bad = fleet.submit("always_fails", {})
    fleet.wait_finished(ok)
    fleet.wait_finished(bad)

    res = steplog(env, "watch", ok, "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines == expected_lines(env, ok)
    assert [e["seq"] for e in lines] == [1, 2, 3, 4]

    human = steplog(env, "watch", ok)
    assert human.returncode == 0, human.stderr
    assert "succeeded" in human.stdout and "3/3 steps" in human.stdout and "w1@test" in human.stdout

    failed = steplog(env, "watch", bad)
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "ValueError" in failed.stdout

    missing = steplog(env, "watch", "no-such-run", "--json")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "no run with id 'no-such-run'" in missing.stderr
    assert missing.stderr == cli(env, "show", "no-such-run").stderr


def test_watch_json_follows_a_running_run_to_its_end(fleet):
    env = fleet.env
    run_id = fleet.submit("countdown", {"steps": 8, "sleep": 0.1})  # no worker yet: the run cannot end
    watcher = subprocess.Popen(
        [sys.executable, *_argv("watch"), run_id, "--json", "--interval", "0.05"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = json.loads(watcher.stdout.readline())  # streamed while the run is still queued
        assert first["seq"] == 1 and first["type"] == "submitted"
        assert fleet.run(run_id)["status"] == "queued"
        fleet.start()
        rest, stderr = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, stderr
    lines = [first, *(json.loads(line) for line in rest.splitlines())]
    assert fleet.run(run_id)["status"] == "succeeded"
    assert lines == expected_lines(env, run_id)  # each event once, in seq order, through the last
    assert lines[-1]["type"] == "succeeded"


def test_worker_command_lines_are_recognised():
    py = sys.executable
    assert chaos_procs.is_worker_cmdline([py, "-m", "workers", "worker", "--hostname=w1@x"])
    assert chaos_procs.is_worker_cmdline([py, "/venv/bin/steplog", "worker", "-c", "2"])
    assert chaos_procs.is_worker_cmdline(["celery", "-A", "workers.app", "worker"])
    assert not chaos_procs.is_worker_cmdline(["celery", "-A", "other.app", "worker"])
    assert not chaos_procs.is_worker_cmdline([py, "-m", "workers", "show", "worker"])
    assert not chaos_procs.is_worker_cmdline(["grep", "-m", "workers", "worker"])
    assert not chaos_procs.is_worker_cmdline(["less", "steplog", "worker"])


@pytest.fixture
def bystanders(fast_env, template_database):
    """Processes chaos must leave alone: one that looks like a worker of another database, and one of
    this database that is no worker."""
    from tests.support.servers import PG_URL, with_database

    sleep = "import time; time.sleep(300)"
    other = {**fast_env, "STEPLOG_DATABASE_URL": with_database(PG_URL, template_database)}
    procs = [
        subprocess.Popen([sys.executable, "-c", sleep, "-m", "workers", "worker"], env=other, start_new_session=True),
        subprocess.Popen([sys.executable, "-c", sleep], env=fast_env, start_new_session=True),
    ]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _chaos_on_countdown_runs(fleet, *chaos_args: str, steps: int = 15):
    """Two workers, four countdown runs (of ``steps``) under way, then `steplog chaos ARGS --json` (which must exit 0);
    every run must end succeeded without a gap. Returns the run ids, chaos's result and the workers of
    this database still running before the restarted ones are killed."""
    env = fleet.env
    fleet.start()
    fleet.start()
    run_ids = [fleet.submit("countdown", {"steps": steps, "sleep": 0.3}) for _ in range(4)]
    wait_for(lambda: sum(len(fleet.events(r)) for r in run_ids) > 4, what="runs to progress")
    try:
        res = steplog(env, "chaos", *chaos_args, "--json")
        assert res.returncode == 0, res.stderr
        for run_id in run_ids:
            run = fleet.wait_finished(run_id, timeout=120)
            assert run["status"] == "succeeded" and run["result"] == {"steps_run": steps}
            assert_contiguous(fleet.events(run_id))
        survivors = chaos_procs.find_workers(env["STEPLOG_DATABASE_URL"])
    finally:
        for target in chaos_procs.find_workers(env["STEPLOG_DATABASE_URL"]):  # the restarted workers
            chaos_procs.kill(target)
    return run_ids, res, survivors


def test_chaos_kills_and_restarts_workers_and_every_interrupted_step_resumes(fleet, bystanders):
    env = fleet.env
    nobody = steplog(env, "chaos", "--kill-every", "1", "--duration", "1")
    assert nobody.returncode == 1 and "no steplog worker of this database" in nobody.stderr

    run_ids, res, _ = _chaos_on_countdown_runs(fleet, "--kill-every", "2", "--duration", "7", "--restart", "--seed", "7")
    summary = json.loads(res.stdout)

    kills = summary["kills"]
    assert len(kills) == 3
    assert all(k["restarted_pid"] and k["worker"].endswith("@test") for k in kills)
    assert all(p.poll() is None for p in bystanders)  # neither another fleet nor a non-worker was touched

    interrupted = {(s["run_id"], s["seq"], s["attempt"]) for k in kills for s in k["interrupted"]}
    assert summary["interrupted"] == len(interrupted) >= 1
    assert summary["resumed"] == summary["interrupted"]
    # The counts match the log: the killed processes' lost attempts are exactly the interrupted steps,
    # and each of those steps was committed by a later attempt.
    killed = {pid for k in kills for pid in k["pids"]}
    lost = {
        (r, a["seq"], a["attempt"]) for r in run_ids for a in fleet.attempts(r)
        if a["outcome"] == "lost" and a["pid"] in killed
    }
    assert interrupted == lost
    for run_id, seq, attempt in interrupted:
        assert fleet.events(run_id)[seq - 1]["attempt"] > attempt


def test_chaos_refuses_faults_this_machine_cannot_make_before_touching_anything(fleet):
    env = fleet.env
    for faults, says in [("kill,flood", "unknown fault"), ("pg-restart", "only the Postgres it runs itself")]:
        res = steplog(env, "chaos", "--faults", faults, "--every", "1", "--duration", "1")
        assert res.returncode == 2, res.stderr
        assert says in res.stderr, res.stderr
    # A partition needs root (CI is root: the refusal is shown as user nobody, through setpriv).
    nobody: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return
        nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    res = steplog(env, "chaos", "--faults", "kill,partition", "--every", "1", "--duration", "1", prefix=nobody)
    assert res.returncode == 2, res.stderr
    assert "--faults partition:" in res.stderr and "needs root" in res.stderr and "run steplog chaos as root" in res.stderr


def test_chaos_kills_stops_and_wipes_the_broker_and_checks_the_invariants(fleet):
    _, res, survivors = _chaos_on_countdown_runs(
        fleet, "--faults", "kill,stop,broker-wipe", "--every", "2", "--duration", "6", "--restart", "--seed", "3")
    summary = json.loads(res.stdout)
    workers = fleet.workers

    faults = summary["faults"]
    assert [f["fault"] for f in faults] == ["kill", "stop", "broker-wipe"]
    kill, stop, wipe = faults
    assert summary["kills"] == [kill] and kill["restarted_pid"]
    assert stop["seconds"] == pytest.approx(3.6) and stop["worker"].endswith("@test")
    assert wipe["queued"] >= 0
    # The stopped worker was let go, not killed: it was still running when chaos ended.
    assert stop["pid"] in {t.pid for t in survivors}
    assert kill["pid"] not in {t.pid for t in survivors} and all(w.pid != kill["pid"] or not w.alive() for w in workers)
    assert summary["resumed"] == summary["interrupted"]
    interrupted = {(s["run_id"], s["seq"], s["attempt"]) for f in faults for s in f.get("interrupted", ())}
    assert summary["interrupted"] == len(interrupted)
    for run_id, seq, attempt in interrupted:
        assert fleet.events(run_id)[seq - 1]["attempt"] > attempt

    invariants = summary["invariants"]
    assert invariants == {"runs": 4, "unsettled": [], "gaps": [], "duplicates": [], "tool_calls": 0,
                          "split_keys": [], "ok": True}
    assert "invariants held: 4 of 4 runs complete, no gap, no duplicate, one key per side effect (0 tool calls)" \
        in res.stderr
    assert "3 faults (1 kill, 1 stop, 1 broker-wipe)" in res.stderr
    assert "wiped the broker's Redis database" in res.stderr


def test_chaos_cuts_a_host_off_while_it_holds_a_lease_and_it_rejoins(fleet):
    from workers.partition import cannot_make_hosts

    if reason := cannot_make_hosts():
        pytest.skip(f"a partition: {reason}; CI runs as root")
    _, res, _ = _chaos_on_countdown_runs(
        fleet, "--faults", "partition", "--every", "1", "--duration", "1", "--seed", "5", steps=30)
    summary = json.loads(res.stdout)
    (cut,) = summary["faults"]
    assert cut["fault"] == "partition" and cut["seconds"] == pytest.approx(3.6)
    assert cut["worker"].startswith("partition-") and cut["host"] in cut["worker"]
    # Cut while it held a lease: that step was taken over elsewhere, and the cut-off attempt never committed.
    assert cut["interrupted"], res.stderr
    for s in cut["interrupted"]:
        events = fleet.events(s["run_id"])
        assert events[s["seq"] - 1]["attempt"] > s["attempt"] and events[s["seq"] - 1]["worker"] != cut["worker"]
    assert summary["resumed"] == summary["interrupted"] == len(cut["interrupted"])
    assert cut["rejoined_steps"] > 0  # back on the network, it took work again
    assert summary["invariants"]["ok"] and summary["invariants"]["runs"] == 4
    assert f"started worker {cut['worker']} on host {cut['host']}" in res.stderr
    assert f"cut off host {cut['host']}" in res.stderr and f"removed host {cut['host']}" in res.stderr
    assert "invariants held: 4 of 4 runs complete, no gap, no duplicate" in res.stderr
    # Nothing of the host is left behind.
    assert cut["host"] not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_watch_view_of_research_events_sums_tokens_and_marks_replays_and_retries():
    from datetime import datetime, timedelta, timezone

    from rich.console import Console

    from workers.cli.watch_view import WatchState, watch_view

    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    run = {"run_id": "r1", "workflow": "research", "status": "running", "input": {"question": "q", "max_steps": 8},
           "result": None, "error": None, "created_at": t0, "updated_at": t0}

    def event(seq, payload, worker="w1@h", attempt=1):
        return {"seq": seq, "type": "step", "payload": payload, "worker": worker, "pid": 10, "attempt": attempt,
                "created_at": t0 + timedelta(seconds=seq)}

    events = [
        {**event(1, {"input": {}}), "type": "submitted", "attempt": 0},
        event(2, {"kind": "reason", "tool": "search_corpus", "usage": {"total_tokens": 120}}),
        event(3, {"kind": "tool", "tool": "search_corpus", "replayed": True}, worker="w2@h", attempt=2),
        event(4, {"kind": "reason", "usage": {"total_tokens": 80, "prompt_tokens": 60}}),
        event(5, {"usage": "not a dict"}),
    ]
    state = WatchState(run)
    state.update(run, events[:3], None)
    state.update(run, events[2:], {"seq": 6, "worker": "w2@h", "pid": 11, "attempt": 1})  # seq 3 again: once only
    assert (state.steps_done, state.tokens, state.last_seq) == (4, 200, 5)

    console = Console(width=140, record=True)
    console.print(watch_view(state, now=t0 + timedelta(seconds=9)))
    screen = console.export_text()
    assert "4/8 steps" in screen and "200" in screen and "9.0s" in screen
    assert "step 6 on w2@h (pid 11, attempt 1)" in screen
    assert "tool search_corpus (replayed)" in screen and "reason search_corpus" in screen
