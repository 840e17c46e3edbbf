"""Debian's headless Chromium through chromedriver (selenium), for the browser tests.

Skipped when chromium or chromedriver is missing, except under CI (`.ci/run` installs them), where a
missing browser fails the test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def chromium() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    missing = "chromium" if not browser else "chromedriver"
    message = f"{missing} not found: apt-get install chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test; {message}")
    pytest.skip(message)


def headless(profile: Path, *, width: int = 1280, height: int = 900) -> Iterator:
    """A headless Chromium (selenium WebDriver), quit when the generator is closed."""
    browser, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    # The background-networking flags keep Chromium off this machine's closed network.
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--window-size={width},{height}", f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
