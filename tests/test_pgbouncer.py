"""The fleet through a real PgBouncer 1.18 in transaction pooling mode: no startup ``options``, no
prepared statements (``STEPLOG_PREPARED_STATEMENTS=false``). The kill tests of tests/test_resume.py and
a research run, unchanged, with every worker's and the CLI's connection going through the pooler.

Without pgbouncer installed these skip, except under CI (`CI` set), where .ci/run installs it.
"""

from __future__ import annotations

import os

import pytest

import tests.test_research as research
import tests.test_resume as resume
from tests.support.harness import Fleet
from tests.support.pgbouncer import binary, pgbouncer, through


@pytest.fixture
def bouncer(tmp_path):
    if binary() is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (required under CI)")
        pytest.skip("pgbouncer is not installed")
    with pgbouncer(tmp_path / "pgbouncer") as port:
        yield port


def _behind(env: dict[str, str], port: int) -> dict[str, str]:
    return {**env, "STEPLOG_DATABASE_URL": through(env["STEPLOG_DATABASE_URL"], port),
            "STEPLOG_PREPARED_STATEMENTS": "false"}


@pytest.fixture
def bouncer_fleet(fast_env, bouncer, tmp_path):
    fleet = Fleet(_behind(fast_env, bouncer), tmp_path)
    yield fleet
    fleet.close()  # before the pooler stops (fixtures end in reverse order)


@pytest.mark.slow
@pytest.mark.parametrize("test", [
    resume.test_sigkilled_step_resumes_on_a_running_worker,
    resume.test_zombie_worker_cannot_append_after_takeover,
    resume.test_step_that_kills_its_process_every_time_fails_after_the_attempt_limit,
], ids=lambda t: t.__name__.removeprefix("test_"))
def test_kill_tests_through_pgbouncer(test, bouncer_fleet):
    test(bouncer_fleet)


@pytest.mark.slow
def test_research_run_through_pgbouncer(corpus_database_url, fast_env, bouncer, tmp_path):
    env = _behind({**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url}, bouncer)
    research.test_offline_research_run_cites_the_module_through_real_workers(env, tmp_path)
