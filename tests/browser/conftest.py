"""Browser fixtures: Debian's Chromium driven by Playwright against the shared real server.

Never downloads a browser: the tests use ``/usr/bin/chromium`` (``apt-get install chromium``;
``scripts/_setup.sh`` installs it when run as root) and skip with the reason when it is missing.
Screenshots and downloads go to ``test-artifacts/browser/`` at the repository root.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.ui.server import shared_server

logger = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("FAILED-*.png"):  # failures of an earlier run
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian (skips when it or the playwright package is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium; "
            "scripts/_setup.sh installs it when run as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (uv sync installs the dev group)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def ui_url(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The UI of the server shared with tests/ui (started after the browser check, so a skip is free)."""
    with shared_server(tmp_path_factory) as url:
        yield url + "/ui/"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[None]:
    """A full-page screenshot of the module's page when a browser test fails."""
    yield
    if request.node.stash.get(_FAILED, False) and "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        path = artifacts / f"FAILED-{request.node.name}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            logger.info("screenshot of the failure: %s", path)
        except Exception as e:  # the page may be gone; the failure itself is what matters
            logger.warning("no failure screenshot: %s", e)
