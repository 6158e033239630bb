"""A real headless Chromium for tests that must see a page rendered: Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them with apt), driven with Selenium. Nothing is downloaded:
the driver is the system's, and the browser runs with its network-facing services off and a fresh
profile. Where any part is missing the test is skipped, saying which."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--force-device-scale-factor=1")


def _find(names: tuple[str, ...]) -> str | None:
    return next((found for found in (shutil.which(n) for n in names) if found), None)


@contextmanager
def headless_chromium(width: int = 1400, height: int = 2400) -> Iterator[Any]:
    """A Selenium driver of a headless Chromium, or the test skipped with the reason."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'ascend-overlay[dev]')")
    browser, driver_path = _find(CHROMIUM), _find(DRIVER)
    if browser is None or driver_path is None:
        pytest.skip("no chromium and chromium-driver here (apt-get install -y chromium chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="ascend-overlay-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        try:
            driver = webdriver.Chrome(service=Service(driver_path), options=options)
        except WebDriverException as exc:
            pytest.skip(f"chromium would not start here: {exc.msg}")
        try:
            yield driver
        finally:
            driver.quit()
