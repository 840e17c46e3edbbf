"""The CLI contract operators script against: flags, exit codes and `--json` shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

from tests.support.harness import ROOT, cli, cli_json, count_runs


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
    from tests.support.servers import PG_URL, admin, with_database

    with admin() as conn:
        conn.execute('DROP DATABASE IF EXISTS "steplog_t_empty"')
        conn.execute('CREATE DATABASE "steplog_t_empty"')
    try:
        env = {**steplog_env, "STEPLOG_DATABASE_URL": with_database(PG_URL, "steplog_t_empty")}
        res = cli(env, "runs", "--json")
        assert res.returncode == 1 and "steplog db upgrade" in res.stderr
        assert cli(env, "db", "upgrade").returncode == 0
        assert json.loads(cli(env, "runs", "--json").stdout) == []
    finally:
        with admin() as conn:
            conn.execute('DROP DATABASE IF EXISTS "steplog_t_empty" WITH (FORCE)')


# -- startup cost: what a command imports (never a wall-clock time) -------------------------------------

HEAVY = ("celery", "kombu", "sqlalchemy", "alembic", "boto3", "botocore", "psycopg", "httpx", "workers.local.servers")


def _imported(env: dict[str, str], *args: str) -> set[str]:
    """The modules `python -m workers ARGS` imports (from -X importtime), after checking it succeeded."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "workers", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}


def _heavy(modules: set[str], *allowed: str) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY if h not in allowed))


def test_help_imports_nothing_heavy():
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLOG_")}
    modules = _imported(env, "--help")
    assert "workers.cli.main" in modules
    assert _heavy(modules) == []


def test_show_and_runs_read_without_sqlalchemy_or_celery(steplog_env):
    env = steplog_env
    run_id = cli_json(env, "submit", "countdown", "--input", '{"steps": 1}', "--json")["run_id"]
    for args in (["runs"], ["runs", "--json"], ["show", run_id], ["show", run_id, "--json"]):
        assert _heavy(_imported(env, *args), "psycopg") == [], args


def test_the_read_path_runs_the_event_logs_queries_as_sqlalchemy_compiles_them():
    from checkpoint.queries import EVENT_LOG, for_driver, parse
    from workers.cli import pg

    for path in [EVENT_LOG, *ROOT.glob("checkpoint/*.sql"), *ROOT.glob("tools/**/*.sql"), *ROOT.glob("workers/*.sql")]:
        compiled = for_driver(path)
        assert {name: pg.driver_sql(body) for name, body in parse(path.read_text()).items()} == compiled, path
    assert pg.libpq_url("postgresql+psycopg://u:p%40ss@h:5433/db?sslmode=disable") == (
        "postgresql://u:p%40ss@h:5433/db?sslmode=disable"
    )


def test_the_read_path_returns_what_checkpoint_runs_returns(steplog_env, engine):
    from checkpoint import runs
    from workers.cli import pg

    env = steplog_env
    run_id = cli_json(env, "submit", "countdown", "--input", '{"steps": 2}', "--json")["run_id"]
    with pg.connect(env["STEPLOG_DATABASE_URL"]) as conn:
        assert pg.get_run(conn, run_id) == runs.get(engine, run_id)
        assert pg.events(conn, run_id) == runs.events(engine, run_id) != []
        assert pg.events(conn, run_id, after=1) == runs.events(engine, run_id, after=1)
        assert pg.in_flight(conn, run_id) == runs.in_flight(engine, run_id)
        assert pg.recent(conn, limit=5) == runs.recent(engine, limit=5)
        assert pg.recent(conn, status="queued") == runs.recent(engine, status="queued")


def test_the_schema_check_compares_with_alembics_head(database_url):
    from alembic.script import ScriptDirectory

    from workers.cli import pg
    from workers.migrate import alembic_config

    assert pg.schema_head() == ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert pg.schema_is_current(database_url)
    with pg.connect(database_url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert not pg.schema_is_current(database_url)
    with pg.connect(database_url) as conn:
        conn.execute("DROP TABLE alembic_version")
    assert not pg.schema_is_current(database_url)


# -- what people read: at 80 columns, piped, nothing cut and nothing read as markup ----------------------


def narrow(env: dict[str, str], *args: str) -> str:
    """`steplog ARGS` as a user at an 80-column terminal piping it somewhere sees it."""
    res = cli({**env, "COLUMNS": "80"}, *args)
    assert res.returncode == 0, res.stderr
    assert max(map(len, res.stdout.splitlines()), default=0) <= 80
    return res.stdout


def test_runs_shows_whole_run_ids_at_80_columns(steplog_env):
    env = steplog_env
    ids = [cli_json(env, "submit", "countdown", "--input", '{"steps": 1}', "--json")["run_id"] for _ in range(2)]
    shown = narrow(env, "runs")
    for run_id in ids:
        assert len(run_id) == 32 and run_id in shown
    assert "…" not in shown


def test_show_and_tools_of_a_research_run_at_80_columns(fast_env, corpus_database_url, tmp_path):
    from tests.support.harness import Fleet

    env = {**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url}
    fleet = Fleet(env, tmp_path)
    try:
        fleet.start()
        run_id = cli_json(env, "research", "How do I run a subprocess with a timeout?", "--json")["run_id"]
        assert fleet.wait_finished(run_id, timeout=120)["status"] == "succeeded"
    finally:
        fleet.close()
    doc = cli_json(env, "show", run_id, "--json")
    shown = narrow(env, "show", run_id)
    # The report in brief: its title, its citations as written ([doc_id], not eaten as markup), and
    # where the whole of it is; not the report itself, nor a dict's repr.
    assert "How do I run a subprocess with a timeout?" in shown and "[subprocess.run]" in shown
    assert all(f"[{c['doc_id']}]" in shown for c in doc["result"]["citations"])
    assert f"steplog report {run_id}" in shown
    assert "## Sources" not in shown and "\\n" not in shown and "'report'" not in shown
    assert run_id in shown and "tool search_corpus" in shown
    ledger = cli_json(env, "tools", run_id, "--json")
    listed = narrow(env, "tools", run_id)
    assert "…" not in listed
    for row in ledger:
        assert row["tool"] in listed and len(row["key"]) == 64 and row["key"] in listed
    assert {"search_corpus", "read_document", "publish_report"} <= {row["tool"] for row in ledger}
