"""A real browser for page tests: Playwright driving Debian's chromium, and a place for screenshots.

Playwright cannot download its own browser here, so it is given the system's
``chromium``. Screenshots go to ``$FLEETSYNC_TEST_ARTIFACTS/<name>`` when that is
set (CI keeps them), else to a temporary directory; the directory is printed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import need


def artifacts_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  name: str, title: str) -> Path:
    given = os.environ.get("FLEETSYNC_TEST_ARTIFACTS")
    where = Path(given) / name if given else tmp_path_factory.mktemp(f"{name}-screenshots")
    where.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{title} screenshots: {where}")
    return where


def chromium() -> Iterator[Any]:
    """A headless chromium launched by Playwright, closed after use (a fixture's body)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright", "pip install -e '.[test]'")
    executable = shutil.which("chromium")
    if executable is None:
        need("chromium", "apt-get install chromium (deploy/local/setup.sh --for-tests does)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()
