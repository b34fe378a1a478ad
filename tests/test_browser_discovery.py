"""Without a Chromium the browser walks are skipped saying how to install one, or fail when
LEARNEXA_REQUIRE_BROWSER is set (CI): run in a pytest of their own, with the walks' conftest."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BROWSER_CONFTEST = Path(__file__).parent / "browser" / "conftest.py"


@pytest.fixture
def walk_without_chromium(tmp_path):
    shutil.copy(BROWSER_CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_walk.py").write_text(
        "def test_opens_a_page(page):\n    page.goto('about:blank')\n"
    )

    def run(**env) -> subprocess.CompletedProcess:
        environ = {
            key: value
            for key, value in os.environ.items()
            if key not in ("LEARNEXA_REQUIRE_BROWSER", "PYTEST_ADDOPTS")
        }
        # A locator that finds nothing, wherever Chromium is installed on this machine.
        environ.update(LEARNEXA_CHROMIUM=str(tmp_path / "no-chromium"), **env)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:django", "-rs"],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_without_chromium_the_walks_are_skipped_saying_how_to_install_it(walk_without_chromium):
    result = walk_without_chromium()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert (
        "Chromium not found: `sudo apt-get install chromium` or "
        "`uv run playwright install chromium`" in result.stdout
    )


def test_with_learnexa_require_browser_a_missing_chromium_fails(walk_without_chromium):
    result = walk_without_chromium(LEARNEXA_REQUIRE_BROWSER="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "Chromium not found" in result.stdout
    assert "skipped" not in result.stdout
