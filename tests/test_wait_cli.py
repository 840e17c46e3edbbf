"""The CLI of durable waits as scripts use it (subprocesses): `steplog signal | approve | reject`,
`steplog schedule add | list | remove`, and what `show` / `runs` say of a waiting run. Exit codes: 0
done, 1 the run is unknown / finished / waits for no approval, 2 bad input; an error writes nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.support.harness import Fleet, cli, cli_json, wait_for

pytestmark = pytest.mark.slow


def _waiting(fleet: Fleet, run_id: str) -> dict:
    return wait_for(lambda: (r := fleet.run(run_id))["status"] == "waiting" and r, timeout=60,
                    what=f"run {run_id} to wait")


def _counts(fleet: Fleet) -> dict[str, int]:
    with fleet.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("signals", "schedules", "schedule_fires", "runs", "events", "outbox")}


def test_every_error_has_its_exit_code_and_writes_nothing(fleet: Fleet) -> None:
    env = fleet.env
    fleet.start()
    done = fleet.submit("countdown", {"steps": 1})
    parked = fleet.submit("waiter", {"signal": "go"})
    assert fleet.wait_finished(done, timeout=60)["status"] == "succeeded"
    _waiting(fleet, parked)
    added = cli(env, "schedule", "add", "nightly", "countdown", "--cron", "0 3 * * *", "--input", '{"steps": 1}')
    assert added.returncode == 0, added.stderr
    before, parked_events = _counts(fleet), fleet.events(parked)

    cron, steps = ("--cron", "* * * * *"), ("--input", '{"steps": 1}')
    cases = [
        # (arguments, exit code, what stderr says)
        (("signal", "no-such-run", "go"), 1, ["no run with id 'no-such-run'"]),
        (("signal", done, "go", "--data", "{}"), 1, [f"run {done} is succeeded", "takes no more signals"]),
        (("signal", parked, "go", "--data", "{not json"), 2, ["--data is not valid JSON"]),
        (("signal", parked, "go", "--data", json.dumps("x" * 20_000)), 2, ["signal data is 20002 bytes of JSON"]),
        (("approve", parked), 1, [f"run {parked} waits for signal 'go', not for an approval", "nothing approved"]),
        (("reject", parked, "--reason", "too risky"), 1,
         ["waits for signal 'go', not for an approval", "nothing rejected"]),
        (("approve", done, "--json"), 1, [f"run {done} is succeeded and waits for no approval"]),
        (("approve", "no-such-run"), 1, ["no run with id 'no-such-run'"]),
        (("reject", parked), 2, ["Missing option", "--reason"]),
        (("reject", parked, "--reason", "   "), 2, ["--reason must not be empty"]),
        (("schedule", "add", "s1", "countdown", "--cron", "not a cron"), 2,
         ["--cron: 'not a cron' is not a cron expression"]),
        (("schedule", "add", "s2", "countdown", *cron, *steps, "--timezone", "Mars/Olympus"), 2,
         ["unknown time zone 'Mars/Olympus'"]),
        (("schedule", "add", "s3", "no_such_workflow", *cron), 2, ["unknown workflow 'no_such_workflow'"]),
        (("schedule", "add", "s4", "countdown", *cron, "--input", "[1]"), 2, ["--input must be a JSON object"]),
        (("schedule", "add", "s5", "countdown", *cron, *steps, "--overlap", "sometimes"), 2,
         ["--overlap must be one of"]),
        (("schedule", "add", "nightly", "countdown", *cron, *steps), 1, ["'nightly' exists already"]),
        (("schedule", "remove", "no-such-schedule"), 1, ["no schedule named 'no-such-schedule'"]),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: cli(env, *case[0]), cases))
    for (args, code, says), res in zip(cases, results):
        assert res.returncode == code, (args, res.returncode, res.stdout, res.stderr)
        for words in says:
            assert words in res.stderr, (args, res.stderr)
        assert res.stdout == "", (args, res.stdout)  # no half-printed outcome, not even with --json
        assert "Traceback" not in res.stderr, (args, res.stderr)

    # Nothing was written: no signal, schedule, run, event or dispatch; the parked run parks on.
    assert _counts(fleet) == before
    assert fleet.events(parked) == parked_events and fleet.run(parked)["status"] == "waiting"
    assert [s["name"] for s in cli_json(env, "schedule", "list", "--json")] == ["nightly"]


def test_json_shapes_of_signal_show_runs_and_schedules(fleet: Fleet) -> None:
    env = fleet.env
    worker = fleet.start()
    timed = fleet.submit("waiter", {"signal": "go", "timeout": 3600})
    untimed = fleet.submit("waiter", {"signal": "go"})
    _waiting(fleet, timed)
    _waiting(fleet, untimed)

    # show --json: what a waiting run waits for, since when, until when.
    shown = cli_json(env, "show", timed, "--json")
    assert shown["status"] == "waiting" and shown["in_flight"] is None
    waiting = shown["waiting"]
    assert set(waiting) == {"signal", "since", "timeout_at"} and waiting["signal"] == "go"
    since, timeout_at = datetime.fromisoformat(waiting["since"]), datetime.fromisoformat(waiting["timeout_at"])
    assert since.tzinfo is not None and 3590 < (timeout_at - since).total_seconds() < 3610
    assert shown["events"][-1]["type"] == "waiting"
    assert cli_json(env, "show", untimed, "--json")["waiting"]["timeout_at"] is None

    listed = cli_json(env, "runs", "--status", "waiting", "--json")
    assert sorted(r["run_id"] for r in listed) == sorted([timed, untimed])
    assert {r["status"] for r in listed} == {"waiting"} and {r["workflow"] for r in listed} == {"waiter"}

    # A signal the run does not wait for is buffered; the same key again is a duplicate, exit 0.
    buffered = cli_json(env, "signal", untimed, "later", "--key", "b1", "--json")
    assert set(buffered) == {"run_id", "key", "status", "seq", "message"}
    assert (buffered["run_id"], buffered["key"], buffered["status"]) == (untimed, "b1", "buffered")
    assert buffered["seq"] is None
    again = cli_json(env, "signal", untimed, "later", "--key", "b1", "--json")
    assert (again["status"], again["key"], again["seq"]) == ("duplicate", "b1", None)
    assert "already stored" in again["message"]

    # Delivered: the run resumes at once; seq is its `signal` event.
    sent = cli_json(env, "signal", timed, "go", "--data", '{"n": 1}', "--json")
    assert set(sent) == {"run_id", "key", "status", "seq", "message"}
    assert sent["status"] == "delivered" and sent["run_id"] == timed and sent["key"]  # a key made up for it
    assert "delivered" in sent["message"]
    run = fleet.wait_finished(timed, timeout=60)
    assert run["status"] == "succeeded" and run["result"]["data"] == {"n": 1} and run["result"]["key"] == sent["key"]
    signal_event = fleet.events(timed)[sent["seq"] - 1]
    assert signal_event["seq"] == sent["seq"] and signal_event["type"] == "signal"
    finished = cli_json(env, "show", timed, "--json")
    assert finished["status"] == "succeeded" and finished["waiting"] is None

    # The same key twice while the woken run has not run on yet (no worker now): delivered once.
    worker.kill()
    first = cli_json(env, "signal", untimed, "go", "--key", "k2", "--data", '"first"', "--json")
    assert first["status"] == "delivered"
    twice = cli(env, "signal", untimed, "go", "--key", "k2", "--data", '"second"', "--json")
    assert twice.returncode == 0, twice.stderr
    dup = json.loads(twice.stdout)
    assert (dup["status"], dup["key"], dup["seq"]) == ("duplicate", "k2", first["seq"])
    assert "already delivered" in dup["message"]
    assert [e["type"] for e in fleet.events(untimed)].count("signal") == 1
    assert cli_json(env, "runs", "--status", "waiting", "--json") == []
    with fleet.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signals WHERE run_id = :r"), dict(r=untimed)).scalar_one() == 2

    # schedule add --json / list --json / remove.
    added = cli_json(env, "schedule", "add", "nightly", "countdown", "--cron", "0 3 * * *", "--input", '{"steps": 2}',
                     "--timezone", "Europe/Berlin", "--overlap", "allow", "--catch-up", "none", "--json")
    assert set(added) == {"name", "next_fire_at"} and added["name"] == "nightly"
    first_tick = datetime.fromisoformat(added["next_fire_at"])
    assert first_tick > datetime.now(timezone.utc)
    assert first_tick.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    (entry,) = cli_json(env, "schedule", "list", "--json")
    assert {"name", "cron", "timezone", "workflow", "input", "overlap", "catch_up", "next_fire_at",
            "runs"} <= set(entry)
    assert (entry["name"], entry["cron"], entry["timezone"], entry["workflow"], entry["overlap"], entry["catch_up"],
            entry["runs"]) == ("nightly", "0 3 * * *", "Europe/Berlin", "countdown", "allow", "none", 0)
    assert entry["input"]["steps"] == 2 and datetime.fromisoformat(entry["next_fire_at"]) == first_tick
    removed = cli(env, "schedule", "remove", "nightly")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert cli_json(env, "schedule", "list", "--json") == []



def test_resending_a_delivered_signal_after_the_run_finished_is_a_duplicate(
    celery_session_worker, celery_session_app, session_env
) -> None:
    """A script that retries `steplog signal --key K` (say its first call timed out on its side) must
    be told "already delivered", exit 0, however fast the woken run finished meanwhile: approvals do
    this (`steplog approve` twice), and the module promises it for signals too."""
    from tests.support.harness import Runs

    steps = Runs(celery_session_app)
    run_id = steps.submit("waiter", {"signal": "go"})
    wait_for(lambda: steps.run(run_id)["status"] == "waiting", timeout=30, what="the run to wait")
    first = cli_json(session_env, "signal", run_id, "go", "--key", "once", "--json")
    assert first["status"] == "delivered"
    assert steps.wait_finished(run_id, timeout=30)["status"] == "succeeded"
    again = cli(session_env, "signal", run_id, "go", "--key", "once", "--json")
    assert again.returncode == 0, again.stderr  # was 1, "is succeeded: it takes no more signals" (fixed in a75d482)
    dup = json.loads(again.stdout)
    assert (dup["status"], dup["key"], dup["seq"]) == ("duplicate", "once", first["seq"])
    assert "already delivered" in dup["message"]
    # A new key to the finished run is still refused, and writes nothing.
    late = cli(session_env, "signal", run_id, "go", "--key", "new", "--json")
    assert late.returncode == 1 and "is succeeded: it takes no more signals" in late.stderr and late.stdout == ""
    with steps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signals WHERE run_id = :r"), dict(r=run_id)).scalar_one() == 1
