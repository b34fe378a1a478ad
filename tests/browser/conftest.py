"""Browser walks: Playwright driving Debian's Chromium (never a downloaded browser)."""

import base64
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".ci-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
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
