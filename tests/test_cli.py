"""The CLI contract operators script against: flags, exit codes and `--json` shapes."""

from __future__ import annotations

import json
from datetime import datetime

from tests.harness import cli, cli_json, count_runs


def test_submit_show_runs_json_shapes(fleet):
    env = fleet.env
    fleet.start()
    first = cli_json(env, "submit", "countdown", "--input", '{"steps": 2}', "--json")
    assert list(first) == ["run_id"]
    plain = cli(env, "submit", "countdown", "--input", '{"steps": 1, "sleep": 0}')
    assert plain.returncode == 0
    second_id = plain.stdout.strip()
    for run_id in (first["run_id"], second_id):
        fleet.wait_finished(run_id)

    doc = cli_json(env, "show", first["run_id"], "--json")
    assert {"run_id", "workflow", "status", "input", "result", "error", "events", "in_flight"} <= set(doc)
    assert doc["run_id"] == first["run_id"] and doc["workflow"] == "countdown"
    assert doc["status"] == "succeeded" and doc["result"] == {"steps_run": 2} and doc["error"] is None
    assert doc["input"] == {"steps": 2, "sleep": 0.0}
    assert doc["in_flight"] is None
    assert [e["seq"] for e in doc["events"]] == [1, 2, 3]
    for e in doc["events"]:
        assert {"seq", "type", "worker", "pid", "attempt", "created_at"} <= set(e)
        assert datetime.fromisoformat(e["created_at"]).tzinfo is not None
    assert doc["events"][1]["worker"] == "w1@test"

    listed = cli_json(env, "runs", "--json")
    assert [r["run_id"] for r in listed] == [second_id, first["run_id"]]  # newest first
    assert all(set(r) == {"run_id", "workflow", "status", "created_at", "updated_at"} for r in listed)
    assert [r["run_id"] for r in cli_json(env, "runs", "--json", "--limit", "1")] == [second_id]
    assert cli_json(env, "runs", "--json", "--status", "failed") == []

    human = cli(env, "show", first["run_id"])
    assert human.returncode == 0 and "succeeded" in human.stdout and "w1@test" in human.stdout


def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(steplog_env):
    env = steplog_env
    assert cli(env, "db", "upgrade").returncode == 0
    cases = [
        (["submit", "nope"], "unknown workflow 'nope'"),
        (["submit", "countdown", "--input", "{not json"], "--input is not valid JSON"),
        (["submit", "countdown", "--input", "[1]"], "must be a JSON object"),
        (["submit", "countdown", "--input", '{"steps": "many"}'], "steps"),
        (["submit", "countdown", "--input", '{"steps": 3, "speed": 1}'], "speed"),
        (["submit", "countdown"], "steps: Field required"),
        (["runs", "--status", "sleeping"], "--status must be one of"),
    ]
    for args, message in cases:
        res = cli(env, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
    assert count_runs(env) == 0


def test_unknown_run_exits_1(steplog_env):
    env = steplog_env
    assert cli(env, "db", "upgrade").returncode == 0
    for command in ("show", "cancel"):
        res = cli(env, command, "no-such-run")
        assert res.returncode == 1
        assert "no run with id 'no-such-run'" in res.stderr


def test_bad_settings_fail_naming_the_variable(steplog_env):
    env = {**steplog_env, "STEPLOG_LEASE_SECONDS": "soon", "STEPLOG_BROKER_URL": "http://nope"}
    res = cli(env, "runs")
    assert res.returncode == 2
    assert "STEPLOG_LEASE_SECONDS" in res.stderr and "STEPLOG_BROKER_URL" in res.stderr
    worker = cli({**steplog_env, "STEPLOG_DATABASE_URL": "mysql://x"}, "worker")
    assert worker.returncode == 2 and "STEPLOG_DATABASE_URL" in worker.stderr
    store = cli({**steplog_env, "STEPLOG_ARTIFACTS_URL": "ftp://x"}, "worker")
    assert store.returncode == 2 and "STEPLOG_ARTIFACTS_URL" in store.stderr


def test_missing_schema_is_a_clear_error(steplog_env, template_database):
    from tests.conftest import PG_URL, _admin, _with_database

    with _admin() as conn:
        conn.execute('DROP DATABASE IF EXISTS "steplog_t_empty"')
        conn.execute('CREATE DATABASE "steplog_t_empty"')
    try:
        env = {**steplog_env, "STEPLOG_DATABASE_URL": _with_database(PG_URL, "steplog_t_empty")}
        res = cli(env, "runs", "--json")
        assert res.returncode == 1 and "steplog db upgrade" in res.stderr
        assert cli(env, "db", "upgrade").returncode == 0
        assert json.loads(cli(env, "runs", "--json").stdout) == []
    finally:
        with _admin() as conn:
            conn.execute('DROP DATABASE IF EXISTS "steplog_t_empty" WITH (FORCE)')
