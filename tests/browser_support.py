"""A real browser for functional tests: Debian's headless Chromium driven by Selenium 4.

`browser()` starts one (a pytest skip, with the reason, where /usr/bin/chromium or /usr/bin/chromedriver is
missing: `make system-deps` installs them); `screenshot(driver, name, tmp_path)` saves a PNG under the
test's tmp_path, copies it to $TRANSX_SCREENSHOTS when set, and prints where.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser():
    """A headless Chromium (1280x900), or skip saying what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"no real browser here: {', '.join(missing)} missing (make system-deps installs chromium and "
                    "chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    if os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def screenshot(driver, name: str, tmp_path: Path) -> Path:
    """Save what the browser shows as `name`.png under the test's tmp_path, copied to $TRANSX_SCREENSHOTS
    when set (a CI job's artifacts); prints the paths and returns the first."""
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    if os.environ.get("TRANSX_SCREENSHOTS"):
        out = Path(os.environ["TRANSX_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
        print(f"screenshot: {out / path.name}")
    return path
