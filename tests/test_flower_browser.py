"""`steplog flower` seen through a real headless Chromium: a run's steps listed by their readable
names behind basic auth, and nothing without credentials.

Needs Debian's `chromium` and `chromium-driver`: skipped when they are missing, unless CI is set.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from checkpoint import runs
from tests.support.browser import headless
from tests.support.harness import ROOT, wait_for
from workers.local.procs import free_port

pytestmark = pytest.mark.slow

USER, PASSWORD = "operator", "s3cret,with:odd chars"


def _flower_argv() -> list[str]:
    """`steplog flower` once workers.cli mounts it; until then the module's own one-command app."""
    from workers.cli.main import app

    mounted = any(c.name == "flower" or getattr(c.callback, "__name__", "") == "flower" for c in app.registered_commands)
    return [sys.executable, "-m", "workers", "flower"] if mounted else [sys.executable, "-m", "workers.flower_cmd"]


class Flower:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [*_flower_argv(), f"--port={self.port}", *args],
            env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_up(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthcheck", timeout=2).text == "OK"
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, interval=0.2, what="flower to answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def flower(fleet, tmp_path) -> Iterator[Flower]:
    env = dict(fleet.env, STEPLOG_FLOWER_USER=USER, STEPLOG_FLOWER_PASSWORD=PASSWORD)
    f = Flower(env, tmp_path / "flower.log")
    try:
        f.wait_up()
        yield f
    finally:
        f.stop()


@pytest.fixture
def browser(tmp_path) -> Iterator:
    yield from headless(tmp_path / "chromium-profile")


def test_flower_lists_steps_by_readable_name_behind_basic_auth(browser, fleet, flower, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Flower's picture is built from events it sees, so the worker must be visible to it before the run.
    fleet.start()
    wait_for(
        lambda: "w1@test" in httpx.get(f"{flower.url}/workers?json=1", auth=(USER, PASSWORD), timeout=5).text,
        timeout=60, interval=0.3, what="flower to see worker w1@test",
    )
    run_id = fleet.submit("countdown", {"steps": 3, "sleep": 0})
    assert fleet.wait_finished(run_id)["status"] == "succeeded"
    seqs = [e["seq"] for e in fleet.events(run_id) if e["seq"] >= runs.FIRST_STEP]  # seq 1 is `submitted`
    names = [f"countdown #{seq}" for seq in seqs]
    assert len(names) == 3

    # Without credentials: refused with a basic-auth challenge, and the browser shows no task.
    refused = httpx.get(f"{flower.url}/tasks")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(f"{flower.url}/tasks", auth=(USER, "wrong")).status_code == 401
    browser.get(f"{flower.url}/tasks")
    assert "countdown #" not in browser.page_source
    assert browser.find_elements(By.ID, "tasks-table") == []

    # With credentials on every request (page and its /tasks/datatable XHR) the table lists the steps.
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})

    def table_lists_all_steps() -> str | None:
        browser.get(f"{flower.url}/tasks")
        try:
            return WebDriverWait(browser, 10, poll_frequency=0.2).until(
                lambda d: (t := d.find_element(By.ID, "tasks-table").text) and all(n in t for n in names) and t
            )
        except TimeoutException:
            return None

    table = wait_for(table_lists_all_steps, timeout=60, interval=0.5, what=f"flower's tasks page to list {names}")
    browser.save_screenshot(str(tmp_path / "flower-tasks.png"))
    # The readable shadow name is what Flower shows, not the task's real name.
    assert "steplog.step" not in table
    for seq in seqs:
        assert f"{run_id}:{seq}" in table  # each row is the step's task id: run id and seq
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr")]
    assert sorted(re.search(r"countdown #\d+", r).group(0) for r in rows if "countdown #" in r) == sorted(names)

    # Each step also sent its custom task-progress event (Flower counts events per type and task name).
    def progress_names() -> list[str]:
        metrics = httpx.get(f"{flower.url}/metrics", timeout=5).text
        return sorted(
            m.group(1)
            for m in re.finditer(r'^flower_events_total\{task="([^"]*)",type="task-progress",worker="w1@test"\} 1\.0$', metrics, re.M)
        )

    wait_for(lambda: progress_names() == sorted(names), timeout=30, interval=0.3, what=f"task-progress events of {names}")


def test_flower_refuses_to_start_without_auth(steplog_env):
    env = {k: v for k, v in steplog_env.items() if not k.startswith(("STEPLOG_FLOWER_", "FLOWER_"))}
    res = subprocess.run(
        [*_flower_argv(), f"--port={free_port()}"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    assert "STEPLOG_FLOWER_USER" in res.stderr and "STEPLOG_FLOWER_PASSWORD" in res.stderr


def test_flower_refuses_half_the_credentials(steplog_env):
    env = dict(steplog_env, STEPLOG_FLOWER_USER="operator")
    res = subprocess.run(
        [*_flower_argv(), f"--port={free_port()}", "--unauthenticated"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 2
    assert "STEPLOG_FLOWER_PASSWORD" in res.stderr


def test_flower_unauthenticated_serves_without_credentials(steplog_env, tmp_path):
    env = {k: v for k, v in steplog_env.items() if not k.startswith(("STEPLOG_FLOWER_", "FLOWER_"))}
    f = Flower(env, tmp_path / "flower.log", "--unauthenticated")
    try:
        f.wait_up()
        assert httpx.get(f"{f.url}/tasks", timeout=5).status_code == 200
    finally:
        f.stop()
