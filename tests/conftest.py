"""Fixtures against real servers: a migrated template database cloned per test, a Redis database
number per test, and an environment for worker subprocesses.

The servers come from ``STEPLOG_DATABASE_URL`` / ``STEPLOG_BROKER_URL`` / ``STEPLOG_REDIS_URL`` (the
test command points them at the project's local services when they are unset).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.fake_llm import fake_llm  # noqa: F401  (fixture: a scripted OpenAI-compatible server)
from tests.s3server import s3_server  # noqa: F401  (fixture: a real S3 server for the session)
from workers.migrate import upgrade

PG_URL = os.environ.get("STEPLOG_DATABASE_URL", "postgresql+psycopg://postgres@localhost:5432/postgres")
BROKER_URL = os.environ.get("STEPLOG_BROKER_URL", "redis://localhost:6379/0")
REDIS_URL = os.environ.get("STEPLOG_REDIS_URL") or (
    BROKER_URL if BROKER_URL.startswith("redis") else "redis://localhost:6379/0"
)
AMQP_URL = os.environ.get("STEPLOG_TEST_AMQP_URL", "amqp://guest:guest@localhost:5672//")


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _admin() -> psycopg.Connection:
    return psycopg.connect(_libpq(PG_URL), autocommit=True)


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    name = f"steplog_tpl_{os.getpid()}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(PG_URL, name)
    upgrade(url)
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test alone."""
    name = f"steplog_t_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _with_database(PG_URL, name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def stdlib_corpus(template_database: str):
    """A migrated database with the stdlib corpus, built once per session and never connected to
    afterwards (so it can be cloned): (name, build stats)."""
    from sqlalchemy import create_engine

    from tools.corpus import build_stdlib

    name = f"steplog_corpus_tpl_{os.getpid()}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    engine = create_engine(_with_database(PG_URL, name))
    stats = build_stdlib(engine)
    engine.dispose()
    yield name, stats
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clone(template: str, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def shared_corpus_url(stdlib_corpus) -> Iterator[str]:
    """One session database with the stdlib corpus, for tests that only read it."""
    name = _clone(stdlib_corpus[0], "steplog_corpus_")
    yield _with_database(PG_URL, name)
    _drop(name)


@pytest.fixture
def corpus_database_url(stdlib_corpus) -> Iterator[str]:
    """A fresh database of this test's own, migrated, with the stdlib corpus (a clone: fast)."""
    name = _clone(stdlib_corpus[0], "steplog_t_")
    yield _with_database(PG_URL, name)
    _drop(name)


@pytest.fixture
def engine(database_url: str):
    """A SQLAlchemy engine on this test's database."""
    from sqlalchemy import create_engine

    eng = create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def run_id(engine) -> str:
    """A run row to hang tool-ledger rows on."""
    from tests.toolsupport import make_run

    return make_run(engine, f"run-{uuid.uuid4().hex[:8]}")


# Unacked-message keys are per Redis database, so each test gets its own number (1..15).
_redis_numbers = itertools.cycle(range(1, 16))


def _redis_with_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url
    return f"{base}/{db}"


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = _redis_with_db(REDIS_URL, next(_redis_numbers))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """The Redis broker for this test: the test's own Redis database."""
    return redis_url


@pytest.fixture
def steplog_env(database_url: str, broker_url: str, redis_url: str, tmp_path) -> dict[str, str]:
    """Environment for CLI and worker subprocesses of this test: its own database, Redis db and files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLOG_")}
    env.update(
        STEPLOG_DATABASE_URL=database_url,
        STEPLOG_BROKER_URL=broker_url,
        STEPLOG_REDIS_URL=redis_url,
        STEPLOG_ARTIFACTS_URL=(tmp_path / "artifacts").as_uri(),
        STEPLOG_HOME=str(tmp_path / "home"),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def fast_env(steplog_env: dict[str, str]) -> dict[str, str]:
    """Worker settings for quick tests: short retry backoff, the test workflows loaded."""
    env = dict(steplog_env)
    env.update(
        STEPLOG_WORKFLOW_MODULES="tests.workflows",
        STEPLOG_RETRY_BACKOFF_SECONDS="0.05",
        STEPLOG_REDISPATCH_SECONDS="3",
        STEPLOG_LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def fleet(fast_env: dict[str, str], tmp_path) -> Iterator["Fleet"]:
    from tests.harness import Fleet

    f = Fleet(fast_env, tmp_path)
    yield f
    f.close()
