"""`demo.json` in the data folder: what a running demo tells the `learnexa` command in a
second shell (the simulator's address and CA, the demo company, the web address), so the
README's commands work there without any variable. Plain standard library: the command
reads it before Django is set up."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

FILE_NAME = "demo.json"
LOOPBACK_NAMES = ("localhost",)


def path(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def write(
    data_dir: Path, *, simulator_host: str, ca_bundle: str, company: str, web_url: str
) -> None:
    """Record the running demo (this process)."""
    _save(
        data_dir,
        {
            "pid": os.getpid(),
            "running": True,
            "simulator_host": simulator_host,
            "ca_bundle": ca_bundle,
            "company": company,
            "web_url": web_url,
        },
    )


def mark_stopped(data_dir: Path) -> None:
    """Keep the record but say the demo stopped: a sync can then say "is the demo running?"
    instead of failing on an address it no longer knows."""
    state = _load(path(data_dir))
    if state is None or state.get("pid") != os.getpid():
        return  # no record, or another demo's
    state["running"] = False
    _save(data_dir, state)


def read(data_dir: Path) -> dict | None:
    """The recorded demo, with "running" false if it stopped or its process is gone; None if
    there is no record, or one that doesn't name a loopback simulator in the data folder."""
    state = _load(path(data_dir))
    if state is None or not _is_loopback(state.get("simulator_host", "")):
        return None
    ca_bundle = Path(state.get("ca_bundle") or "")
    if not ca_bundle.is_absolute() or Path(data_dir).resolve() not in ca_bundle.resolve().parents:
        return None
    state["running"] = bool(state.get("running")) and _alive(state.get("pid"))
    return state


def apply(settings, environ=os.environ) -> dict | None:
    """Let this process reach the demo's simulator as the demo's own processes do, unless
    the operator set the variables themselves. Returns the recorded demo, if any.

    Security: this only ever adds the simulator's loopback address (127.0.0.1:port) to the
    allowed Dynamics hosts and trusts the CA the simulator created, and only as recorded in
    the data folder, which only this user may enter (mode 0700, see learnexa.cli). A token
    can't go anywhere else: a server on that port without a certificate from that CA (whose
    key is in the data folder too) is refused."""
    state = read(settings.DATA_DIR)
    if state is None:
        return None
    if "LEARNEXA_DYNAMICS_ALLOWED_HOSTS" not in environ:
        settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [state["simulator_host"]]
    if "LEARNEXA_DYNAMICS_CA_BUNDLE" not in environ:
        settings.LEARNEXA_DYNAMICS_CA_BUNDLE = state["ca_bundle"]
    if "LEARNEXA_BASE_URL" not in environ and state.get("web_url"):
        settings.LEARNEXA_BASE_URL = state["web_url"].rstrip("/")
    if not state["running"]:
        settings.LEARNEXA_DEMO_SIMULATOR_STOPPED = f"https://{state['simulator_host']}"
    return state


def _save(data_dir: Path, state: dict) -> None:
    target = path(data_dir)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.chmod(0o600)
    # Renamed into place, so a reader never sees half a file.
    temporary.replace(target)


def _load(file: Path) -> dict | None:
    try:
        state = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _is_loopback(host_port: str) -> bool:
    host, _, port = str(host_port).rpartition(":")
    if not port.isdigit() or not host:
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        # Gone, or the number now belongs to another user's process: not the demo.
        return False
    return True
