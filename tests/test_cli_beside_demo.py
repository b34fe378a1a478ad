"""The README's commands, run as an operator would in a second shell beside `learnexa demo`:
no variables but the data folder, every `--json` output parsed, and Ctrl-C ending the demo
quietly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
LEARNEXA = str(Path(sys.executable).parent / "learnexa")
HELLO_DONE = "Press Ctrl-C to stop everything."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(data_dir: Path) -> dict[str, str]:
    """What a new shell has: no LEARNEXA_DYNAMICS_* or other variables of the tests."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "LEARNEXA_DATA_DIR": str(data_dir),
    }


def learnexa(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LEARNEXA, *args],
        env=clean_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


def readme_json_commands(slug: str) -> list[list[str]]:
    """Every `learnexa ... --json` command the README shows, with the demo company's slug."""
    commands = set()
    for line in README.read_text().splitlines():
        line = line.split("#")[0].strip()
        match = re.match(r"^(?:uv run )?learnexa (.*--json.*)$", line)
        if not match:
            continue
        # The options in brackets left out, but --json; the placeholder made the demo's slug.
        words = [
            word.strip("[]")
            for word in match.group(1).split()
            if not word.startswith("[--") or word == "[--json]"
        ]
        commands.add(tuple(slug if word in ("COMPANY", "demo") else word for word in words))
    return [list(command) for command in sorted(commands)]


@pytest.fixture
def demo(tmp_path):
    data = tmp_path / "data"
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        process = subprocess.Popen(
            [LEARNEXA, "demo", "--port", str(free_port()), "--sim-port", str(free_port())]
            + ["--users", "20"],
            env={**clean_env(data), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            # A session of its own: SIGINT to its group is what Ctrl-C in its terminal sends.
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while HELLO_DONE not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"The demo didn't start:\n{log.read_text()}")
        time.sleep(0.2)
    yield data, process, log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_the_readme_commands_work_beside_the_demo_and_ctrl_c_ends_it_quietly(demo):
    data, process, log = demo
    hello = log.read_text()
    slug = re.search(r"The demo company's slug is ([a-z0-9-]+)\.", hello).group(1)
    assert f"uv run learnexa dynamics sync {slug} --json" in hello

    listed = learnexa(data, "company", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    companies = json.loads(listed.stdout)
    assert [c["slug"] for c in companies] == [slug]
    assert companies[0]["users"] > 1

    sync = learnexa(data, "dynamics", "sync", slug, "--json")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    summary = json.loads(sync.stdout)
    assert summary["company"] == slug and summary["status"] == "succeeded"
    assert "Traceback" not in sync.stderr

    users = learnexa(data, "users", "list", slug, "--json")
    assert users.returncode == 0, users.stderr
    synced = [u for u in json.loads(users.stdout) if u["created_source"] == "dynamics_crm"]
    assert synced
    assert all({"employee_id", "department", "job_title", "phone"} <= set(u) for u in synced)
    assert any(u["department"] for u in synced)
    assert all(u["dynamics_systemuser_id"] for u in synced)

    readme_commands = readme_json_commands(slug)
    assert ["status", "--json"] in readme_commands
    for command in readme_commands:
        result = learnexa(data, *command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        json.loads(result.stdout)

    # A failure is pure JSON too, and says what is wrong.
    missing = learnexa(data, "dynamics", "sync", "no-such-company", "--json")
    assert missing.returncode != 0
    assert "No company with the slug 'no-such-company'" in json.loads(missing.stdout)["error"]
    assert "Traceback" not in missing.stderr

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 0
    output = log.read_text()
    assert output.rstrip().endswith("Stopped.")
    assert "stopped (exit code" not in output and "Traceback" not in output

    # The demo's record stays, marked stopped: a sync says at once that the demo isn't running.
    assert json.loads((data / "demo.json").read_text())["running"] is False
    started = time.monotonic()
    stale = learnexa(data, "dynamics", "sync", slug, "--json")
    assert stale.returncode != 0
    error = json.loads(stale.stdout)["error"]
    assert re.fullmatch(r"Can't reach https://127\.0\.0\.1:\d+: is the demo running\? .*", error)
    assert time.monotonic() - started < 15
