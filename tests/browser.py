"""Headless Debian chromium through selenium, for the tests that look at pages (widget, run report)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rag_autotune.paths import REPO

ARTIFACTS = REPO / "build" / "test-artifacts"  # screenshots; the README shows copies from docs/
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = "no chromium/chromedriver here: `apt-get install chromium chromium-driver` (make test tries it as root)"


def start(profile: Path, width: int = 420, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(url: str, out: Path, profile: Path, width: int = 900, height: int = 1400) -> Path:
    driver = start(profile, width, height)
    try:
        driver.get(url)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    return out
