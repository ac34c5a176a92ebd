"""Fixtures of the browser tests: JupyterLab on 127.0.0.1 and a headless Chromium driving it.

Every test here is marked ``browser`` and skipped, with the apt command in the reason, when
Debian's ``chromium`` and ``chromium-driver`` (or the selenium package) are missing; nothing is
downloaded at test time. Screenshots of each step go to ``$WORKBENCH_BROWSER_SHOTS`` when set,
else to the test session's temporary folder (the path is printed in the test report).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from browser_lab import APT_HINT, CHROMEDRIVER, CHROMIUM, REPO, Browser, Lab


def _missing() -> str | None:
    if not CHROMIUM or not CHROMEDRIVER:
        return f"needs Chromium and chromedriver on PATH: {APT_HINT}"
    if importlib.util.find_spec("selenium") is None:
        return "needs selenium: pip install -e '.[dev]'"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory) -> Path:
    chosen = os.environ.get("WORKBENCH_BROWSER_SHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("browser-shots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {path}")
    return path


def notebooks_status() -> str:
    """``git status`` of notebooks/ (other work in the checkout is not this test's business)."""
    return subprocess.run(["git", "status", "--porcelain", "--", "notebooks"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(REPO, tmp_path_factory.mktemp("jupyterlab"))
    yield server
    server.stop()


@pytest.fixture
def browser(shots_dir, request):
    driver = Browser(shots_dir / request.node.name.replace("[", "_").replace("]", ""))
    yield driver
    driver.quit()
