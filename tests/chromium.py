"""A real headless Chromium for the HTML report tests: where it is and how it is started."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Headless as root in a container (no sandbox, GPU or large /dev/shm), with nothing of its
# own on the network (first-run screens, sync, update checks), no scrollbars in screenshots.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    """The Chromium executable, or None: not installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


def chromium_or_skip() -> str:
    """The Chromium executable; the test is skipped, with how to install it, without one."""
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return browser
