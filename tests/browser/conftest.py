"""Browser walks: Playwright driving Debian's Chromium, or Playwright's own if one was
installed; without either they are skipped, saying how to install one (a failure instead
with LEARNEXA_REQUIRE_BROWSER=1, as in CI)."""

import base64
import os
import shutil
from pathlib import Path

import pytest

DEBIAN_CHROMIUM = "/usr/bin/chromium"
NOT_FOUND = (
    "Chromium not found: `sudo apt-get install chromium` or `uv run playwright install chromium`"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".ci-artifacts" / "screenshots"


def find_chromium(playwright) -> str | None:
    """LEARNEXA_CHROMIUM if set (and only it), else Debian's, else Playwright's download."""
    if chosen := os.environ.get("LEARNEXA_CHROMIUM"):
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    downloaded = playwright.chromium.executable_path
    return downloaded if downloaded and os.access(downloaded, os.X_OK) else None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args, playwright):
    chromium = find_chromium(playwright)
    if chromium is None:
        if os.environ.get("LEARNEXA_REQUIRE_BROWSER", "").strip() in ("1", "true", "yes"):
            pytest.fail(f"{NOT_FOUND} (LEARNEXA_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(NOT_FOUND)
    return {
        **browser_type_launch_args,
        "executable_path": chromium,
        "args": [
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-gpu",
        ],
    }


@pytest.fixture(scope="session", autouse=True)
def _sync_orm_beside_playwright():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by
    # the test itself (and the database teardown after it) are still synchronous ones.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="session")
def _screenshots_dir():
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def screenshot(page, _screenshots_dir):
    taken = []

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{len(taken) + 1:02d}-{name}.png"
        # A full-page capture resizes Chromium's viewport for a moment; taking it through a
        # CDP session of its own keeps the page's layout, so the next click lands.
        page.evaluate("document.activeElement && document.activeElement.blur()")
        session = page.context.new_cdp_session(page)
        try:
            metrics = session.send("Page.getLayoutMetrics")["cssContentSize"]
            data = session.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {
                        "x": 0,
                        "y": 0,
                        "width": metrics["width"],
                        "height": metrics["height"],
                        "scale": 1,
                    },
                },
            )["data"]
        finally:
            session.detach()
        path.write_bytes(base64.b64decode(data))
        taken.append(path)
        return path

    return take


@pytest.fixture(scope="session")
def accessible():
    """Check the page with axe-core: no violation of the rules it tests (WCAG 2 A and AA)."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page) -> None:
        results = axe.run(page)
        assert results.violations_count == 0, results.generate_report()

    return check
