"""Fixtures against real servers: a migrated template database cloned per test, a Redis database
number per test, an environment for worker subprocesses, and steplog's own Celery app with one
in-process worker for the session (pytest-celery's classic ``celery_session_app`` and
``celery_session_worker``, configured here).

The servers: tests/support/servers.py.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support.fake_llm import fake_llm  # noqa: F401  (fixture: a scripted OpenAI-compatible server)
from tests.support.harness import Fleet
from tests.support.inprocess import SESSION_WORKER, StepWorker
from tests.support.s3server import s3_server  # noqa: F401  (fixture: a real S3 server for the session)
from tests.support.servers import PG_URL, REDIS_URL, admin, redis_with_db, with_database
from tests.support.toolsupport import LocalHTTPServer, make_run
from workers.app import create_app
from workers.celeryconfig import celery_config as celery_config_of
from workers.migrate import upgrade
from workers.settings import Settings, settings_from_env


def _create(name: str, template: str | None = None) -> str:
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _clone(template: str, prefix: str) -> str:
    """A new database copied from ``template``, named ``prefix`` and a random suffix."""
    return _create(f"{prefix}{uuid.uuid4().hex[:12]}", template)


def _drop(name: str) -> None:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    name = f"steplog_tpl_{os.getpid()}"
    _drop(name)
    _create(name)
    url = with_database(PG_URL, name)
    upgrade(url)
    yield name
    _drop(name)


@pytest.fixture
def new_database(template_database: str) -> Iterator[Callable[[], str]]:
    """Makes fresh, fully migrated databases for this test alone (URLs), as many as it asks for."""
    names: list[str] = []

    def make() -> str:
        names.append(_clone(template_database, "steplog_t_"))
        return with_database(PG_URL, names[-1])

    yield make
    for name in names:
        _drop(name)


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A fresh, fully migrated database for this test alone."""
    return new_database()


@pytest.fixture(scope="session")
def stdlib_corpus(template_database: str):
    """A migrated database with the stdlib corpus, built once per session and never connected to
    afterwards (so it can be cloned): (name, build stats)."""
    from sqlalchemy import create_engine

    from tools.corpus import build_stdlib

    name = f"steplog_corpus_tpl_{os.getpid()}"
    _drop(name)
    _create(name, template_database)
    engine = create_engine(with_database(PG_URL, name))
    stats = build_stdlib(engine)
    engine.dispose()
    yield name, stats
    _drop(name)


@pytest.fixture(scope="session")
def shared_corpus_url(stdlib_corpus) -> Iterator[str]:
    """One session database with the stdlib corpus, for tests that only read it."""
    name = _clone(stdlib_corpus[0], "steplog_corpus_")
    yield with_database(PG_URL, name)
    _drop(name)


@pytest.fixture
def corpus_database_url(stdlib_corpus) -> Iterator[str]:
    """A fresh database of this test's own, migrated, with the stdlib corpus (a clone: fast)."""
    name = _clone(stdlib_corpus[0], "steplog_t_")
    yield with_database(PG_URL, name)
    _drop(name)


@pytest.fixture
def engine(database_url: str):
    """A SQLAlchemy engine on this test's database."""
    from sqlalchemy import create_engine

    eng = create_engine(database_url, pool_size=2)
    yield eng
    eng.dispose()


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    """A local HTTP server for tool tests (webhook, pages, faults; see LocalHTTPServer)."""
    with LocalHTTPServer() as srv:
        yield srv


@pytest.fixture
def run_id(engine) -> str:
    """A run row to hang tool-ledger rows on."""
    return make_run(engine, f"run-{uuid.uuid4().hex[:8]}")


# Unacked-message keys are per Redis database, so each test gets its own number (1..14); the last
# (15) is the in-process session worker's.
SESSION_REDIS_DB = 15
_redis_numbers = itertools.cycle(range(1, SESSION_REDIS_DB))


@contextmanager
def _flushed_redis(db: int) -> Iterator[str]:
    """Redis database ``db``, empty before and after."""
    url = redis_with_db(REDIS_URL, db)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with _flushed_redis(next(_redis_numbers)) as url:
        yield url


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """The Redis broker for this test: the test's own Redis database."""
    return redis_url


def _steplog_env(database_url: str, broker_url: str, redis_url: str, files: Path) -> dict[str, str]:
    """This process's environment without its STEPLOG_* variables, then steplog on these servers, with
    its files under ``files``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLOG_")}
    env.update(
        STEPLOG_DATABASE_URL=database_url,
        STEPLOG_BROKER_URL=broker_url,
        STEPLOG_REDIS_URL=redis_url,
        STEPLOG_ARTIFACTS_URL=(files / "artifacts").as_uri(),
        STEPLOG_HOME=str(files / "home"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _fast(env: dict[str, str]) -> dict[str, str]:
    """Worker settings for quick tests: short retry backoff, the test workflows loaded."""
    return {
        **env,
        "STEPLOG_WORKFLOW_MODULES": "tests.support.workflows",
        "STEPLOG_RETRY_BACKOFF_SECONDS": "0.05",
        "STEPLOG_REDISPATCH_SECONDS": "3",
        "STEPLOG_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def steplog_env(database_url: str, broker_url: str, redis_url: str, tmp_path) -> dict[str, str]:
    """Environment for CLI and worker subprocesses of this test: its own database, Redis db and files."""
    return _steplog_env(database_url, broker_url, redis_url, tmp_path)


@pytest.fixture
def fast_env(steplog_env: dict[str, str]) -> dict[str, str]:
    """Worker settings for quick tests: short retry backoff, the test workflows loaded."""
    return _fast(steplog_env)


@pytest.fixture
def fleet(fast_env: dict[str, str], tmp_path) -> Iterator[Fleet]:
    f = Fleet(fast_env, tmp_path)
    yield f
    f.close()


# -- steplog's Celery app and one in-process worker for the session (pytest-celery's classic fixtures) --
#
# pytest-celery 1.x's own `celery_setup` / `celery_worker` start Docker containers; the classic
# session fixtures run a worker thread in this process instead, here on steplog's own app: a database
# cloned from the template and a Redis database of the session's own. Never use `celery_worker`.


@pytest.fixture(scope="session")
def session_env(template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of the in-process session worker: a database and a Redis database of its own."""
    name = _clone(template_database, "steplog_s_")
    with _flushed_redis(SESSION_REDIS_DB) as url:
        yield _fast(_steplog_env(with_database(PG_URL, name), url, url, tmp_path_factory.mktemp("session")))
    _drop(name)


@pytest.fixture(scope="session")
def session_settings(session_env: dict[str, str]) -> Settings:
    return settings_from_env(session_env)


@pytest.fixture(scope="session")
def celery_config(session_settings: Settings) -> dict[str, Any]:
    """Celery configuration of the test apps: steplog's own."""
    return celery_config_of(session_settings)


@pytest.fixture(scope="session")
def celery_session_app(session_settings: Settings, celery_config: dict[str, Any]) -> Iterator[Celery]:
    """steplog's app for the session (with its runtime, ``app.steplog``), not a bare test app."""
    app = create_app(session_settings)
    assert {k: app.conf[k] for k in celery_config} == celery_config
    # The embedded worker would set up Celery's logging: the root logger's level (caplog would see no
    # warning after it), handlers, CELERY_LOG_* variables inherited by subprocesses. pytest's process.
    app.log.setup = lambda *args, **kwargs: False
    yield app
    app.steplog.stop()
    app.close()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "solo"  # as `steplog worker` runs by default: steps in the worker's own thread


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    # No ping task: steplog keeps no results. StepWorker sends worker_ready, as `celery worker` does.
    return {"hostname": SESSION_WORKER, "WorkController": StepWorker, "perform_ping_check": False}
