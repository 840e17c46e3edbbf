"""The web console through a real headless Chromium, against `steplog api` and real workers: sign in,
submit a research run that asks for approval, watch its timeline move live through a worker that is
SIGKILLed mid-run (the takeover marked), approve, read the report, hold a two-turn chat; the run and
chat pages at laptop and phone width, saved as screenshots under .test-artifacts/."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from tests.support.browser import headless
from tests.support.harness import ROOT, Fleet, cli_json, wait_for
from workers.fleet import ApiProc

pytestmark = pytest.mark.slow

SHOTS = ROOT / ".test-artifacts"


@pytest.fixture
def corpus_fleet(fast_env, corpus_database_url, tmp_path):
    f = Fleet({**fast_env, "STEPLOG_DATABASE_URL": corpus_database_url}, tmp_path)
    yield f
    f.close()


@pytest.fixture
def browser(tmp_path):
    yield from headless(tmp_path / "chromium-profile")


def _until(browser, predicate, what: str, timeout: float = 60):
    """``predicate(browser)`` once true. The live part of a run page is replaced as the run moves, and a
    click's new page loads after the click returns: an element read meanwhile is stale or not there
    yet, and is looked up again on the next try."""

    def check():
        try:
            return predicate(browser)
        except (StaleElementReferenceException, NoSuchElementException):
            return False

    return wait_for(check, timeout=timeout, interval=0.2, what=what)


def _rows(browser) -> int:
    return len(browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr"))


def test_sign_in_run_through_a_kill_approve_read_and_chat(corpus_fleet: Fleet, browser, tmp_path, server) -> None:
    fleet = corpus_fleet
    fleet.env["STEPLOG_NET_ALLOW"] = server.allow  # the notify webhook is this test's own server
    # The first worker dies mid-step: right after its first decision is recorded, before the commit.
    doomed = fleet.start(env={**fleet.env, "STEPLOG_FAULT_AFTER_DECISION": "1"})
    api = ApiProc(fleet.env, tmp_path).wait_up()
    try:
        token = cli_json(fleet.env, "tokens", "create", "--tenant", "acme", "--role", "admin", "--name", "ada",
                         "--json")["token"]
        browser.get(f"{api.url}/ui/runs")
        assert browser.current_url.endswith("/ui/signin")
        browser.find_element(By.ID, "token").send_keys("stl_wrong")
        browser.find_element(By.ID, "signin").click()
        # A click returns before the page it posts to has loaded: wait for that page.
        _until(browser, lambda b: "unknown or revoked" in b.find_element(By.ID, "error").text, "the sign-in error")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "signin").click()
        _until(browser, lambda b: b.current_url.endswith("/ui/runs"), "the runs page")
        assert "ada · admin · acme" in browser.page_source

        browser.find_element(By.CSS_SELECTOR, "details summary").click()
        browser.find_element(By.ID, "question").send_keys("How do I read a CSV file?")
        browser.find_element(By.ID, "notify_url").send_keys(f"{server.base}/hook")
        browser.find_element(By.ID, "submit").click()
        _until(browser, lambda b: "/ui/runs/" in b.current_url, "the run page")
        run_id = browser.current_url.rsplit("/", 1)[-1]
        first = _rows(browser)

        wait_for(lambda: not doomed.alive(), timeout=60, what="the doomed worker to die mid-step")
        fleet.start()  # takes the step over once the dead worker's lease lapses
        # No reload from here on: the page follows the run's event stream.
        _until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#timeline tr.takeover"),
               "the takeover marked on the live timeline")
        marked = _until(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#timeline tr.takeover").text, "its text")
        assert f"taken over after {doomed.node} (lost)" in marked, marked
        assert _rows(browser) > first
        _until(browser, lambda b: b.find_elements(By.ID, "approve-button"), "the approval form", timeout=120)
        _until(browser, lambda b: "publish_report waits for approval" in b.find_element(By.ID, "approval").text,
               "publish_report's approval")
        browser.set_window_size(1280, 1600)
        SHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SHOTS / "console-run-waiting.png"))
        _until(browser, lambda b: b.find_element(By.ID, "approve-button").click() or True, "the approve click")
        # Then the notify waits for its own approval: approved from the inbox, it is sent once.
        _until(browser, lambda b: "notify waits for approval" in b.find_element(By.ID, "run-state").text,
               "the notify's approval")
        browser.get(f"{api.url}/ui/approvals")
        card = browser.find_element(By.CSS_SELECTOR, f".approval[data-run='{run_id}']")
        assert "notify" in card.text and f"{server.base}/hook" in card.text
        card.find_element(By.CSS_SELECTOR, "form[action$='/approve'] button").click()
        # The form's answer redirects back to the inbox, without this run: wait for it, or its late
        # redirect would replace the run page loaded next.
        _until(browser, lambda b: b.current_url.endswith("/ui/approvals")
               and not b.find_elements(By.CSS_SELECTOR, f".approval[data-run='{run_id}']"), "the inbox without the run")
        browser.get(f"{api.url}/ui/runs/{run_id}")
        _until(browser, lambda b: b.find_elements(By.ID, "report"), "the report", timeout=120)
        assert server.hits["/hook"] == 1 and len(server.applied) == 1
        _until(browser, lambda b: "[csv" in b.find_element(By.ID, "report").text
               and b.find_element(By.ID, "status").text == "succeeded", "the report and the final status")
        assert fleet.run(run_id)["status"] == "succeeded"
        browser.save_screenshot(str(SHOTS / "console-run.png"))

        # At a phone's width the page still fits: wide tables scroll inside their own box.
        browser.set_window_size(390, 844)
        browser.refresh()
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 392
        browser.set_window_size(1280, 900)

        browser.get(f"{api.url}/ui/chat")
        browser.find_element(By.ID, "new-chat").click()
        _until(browser, lambda b: "/ui/chat/" in b.current_url, "the chat page")
        for n, (text, cites) in enumerate([("How do I run a subprocess with a timeout?", "subprocess.run"),
                                           ("and which exception tells me it expired?", "subprocess.TimeoutExpired")], 1):
            browser.find_element(By.ID, "message").send_keys(text)
            browser.find_element(By.ID, "send").click()
            reply = _until(browser, lambda b: [r for r in b.find_elements(By.CSS_SELECTOR, ".reply")
                                               if r.get_attribute("data-turn") == str(n)], f"reply {n}")[0]
            assert f"[{cites}]" in reply.text
        browser.refresh()  # the conversation is in Postgres, not in the page
        assert len(browser.find_elements(By.CSS_SELECTOR, ".bubble.you")) == 2
        browser.save_screenshot(str(SHOTS / "console-chat.png"))
        for name in ("console-run.png", "console-chat.png"):
            assert (SHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        api.stop()
