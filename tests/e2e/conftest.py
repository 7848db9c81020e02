"""Browser tests: real headless Chromium (Debian's ``chromium``) driven by Playwright, never a downloaded browser.

``make test`` skips them where ``/usr/bin/chromium`` is missing; ``make e2e`` (and CI, which installs
chromium with apt) sets ``GRAPHTUNE_E2E=required`` so a missing browser fails instead.
Screenshots go to ``GRAPHTUNE_SCREENSHOTS`` (``make e2e``: docs/screenshots) or the test's tmp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("GRAPHTUNE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists() or os.environ.get("GRAPHTUNE_E2E") == "required":
        return
    skip = pytest.mark.skip(reason=f"no browser at {CHROMIUM}: apt-get install -y chromium (make e2e requires it)")
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"no browser at {CHROMIUM}: apt-get install -y chromium"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("GRAPHTUNE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
