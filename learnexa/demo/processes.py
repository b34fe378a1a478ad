"""Child processes the demo starts, and stops again on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Processes:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        # A group of its own: Ctrl-C reaches the demo alone, which then stops the children
        # in order (the web app and the worker before the simulator they talk to).
        child = subprocess.Popen([sys.executable, *argv], env=self.env, process_group=0)
        self.children.append((name, child))
        return child

    def learnexa(self, name: str, *args: str) -> subprocess.Popen:
        return self.start(name, ["-m", "learnexa.cli", *args])

    def first_exited(self) -> tuple[str, int] | None:
        for name, child in self.children:
            if child.poll() is not None:
                return name, child.returncode
        return None

    def stop(self) -> None:
        """Stop the children, the last started first, each given its share of ten seconds:
        the web app and the worker finish before the simulator they talk to goes."""
        deadline = time.monotonic() + 10
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=max(0.1, (deadline - time.monotonic()) / 2))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def wait_for_info_file(path: Path, child: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(
                f"The simulator exited with code {child.returncode} before it was ready."
            )
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # being written
        time.sleep(0.1)
    raise RuntimeError(f"The simulator didn't start within {timeout:.0f} s.")


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
