"""The `learnexa` command itself: what it says on a database without tables, where its emails
go, how it reads the demo's record in the data folder, and the demo's choice of ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from learnexa.cli import NO_TABLES
from learnexa.demo import state_file
from learnexa.demo.ports import free_port

LEARNEXA = str(Path(sys.executable).parent / "learnexa")


def learnexa(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LEARNEXA, *args],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", ""),
            "LEARNEXA_DATA_DIR": str(data_dir),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args", [("users", "list", "x"), ("company", "list"), ("dynamics", "sync", "x")]
)
def test_a_database_without_tables_says_to_migrate_in_one_line(tmp_path, args):
    result = learnexa(tmp_path, *args)
    assert result.returncode == 1
    assert result.stderr == f"learnexa: {NO_TABLES}\n"
    assert result.stdout == ""


def test_with_json_a_database_without_tables_is_one_json_object(tmp_path):
    result = learnexa(tmp_path, "users", "list", "x", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"error": NO_TABLES}
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("users", "list", "--json"), "the following arguments are required: company"),
        (("dynamics", "sync", "acme", "--jsn", "--json"), "unrecognized arguments: --jsn"),
        (("company", "lsit", "--json"), "invalid choice: 'lsit'"),
    ],
)
def test_with_json_a_wrong_argument_is_one_json_object_too(tmp_path, args, says):
    result = learnexa(tmp_path, *args)
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert says in error and "--help" in error
    # Without --json, argparse's usage and message on standard error, as before.
    plain = learnexa(tmp_path, *[a for a in args if a != "--json"])
    assert plain.returncode == 2 and plain.stdout == "" and "usage:" in plain.stderr


def test_the_commands_print_emails_on_stderr_keeping_stdout_for_their_result(tmp_path):
    assert learnexa(tmp_path, "migrate", "--verbosity", "0").returncode == 0
    result = learnexa(tmp_path, "sendtestemail", "someone@example.test")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "To: someone@example.test" in result.stderr


# -- the demo's record ---------------------------------------------------------------------


def record(data_dir: Path, **changes) -> None:
    (data_dir / "simulator").mkdir(exist_ok=True)
    ca = data_dir / "simulator" / "ca.pem"
    ca.write_text("")
    state_file.write(
        data_dir,
        simulator_host="127.0.0.1:8443",
        ca_bundle=str(ca),
        company="demo",
        web_url="http://127.0.0.1:8000",
    )
    if changes:
        state = json.loads(state_file.path(data_dir).read_text())
        state.update(changes)
        state_file.path(data_dir).write_text(json.dumps(state))


def fake_settings(data_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(
        DATA_DIR=data_dir,
        LEARNEXA_DYNAMICS_ALLOWED_HOSTS=[],
        LEARNEXA_DYNAMICS_CA_BUNDLE="",
        LEARNEXA_BASE_URL="http://127.0.0.1:8000",
        LEARNEXA_DEMO_SIMULATOR_STOPPED="",
    )


def test_a_running_demo_lets_the_command_reach_its_simulator(tmp_path):
    record(tmp_path)
    settings = fake_settings(tmp_path)
    state = state_file.apply(settings, environ={})
    assert state["running"] is True and state["company"] == "demo"
    assert settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS == ["127.0.0.1:8443"]
    assert settings.LEARNEXA_DYNAMICS_CA_BUNDLE == str(tmp_path / "simulator" / "ca.pem")
    assert settings.LEARNEXA_DEMO_SIMULATOR_STOPPED == ""
    assert (state_file.path(tmp_path).stat().st_mode & 0o777) == 0o600


def test_the_operators_own_variables_win_over_the_demos_record(tmp_path):
    record(tmp_path)
    settings = fake_settings(tmp_path)
    state_file.apply(
        settings,
        environ={"LEARNEXA_DYNAMICS_ALLOWED_HOSTS": "", "LEARNEXA_DYNAMICS_CA_BUNDLE": ""},
    )
    assert settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS == []
    assert settings.LEARNEXA_DYNAMICS_CA_BUNDLE == ""


@pytest.mark.parametrize(
    "changes",
    [
        {"simulator_host": "evil.example.com:443"},
        {"simulator_host": "10.0.0.5:8443"},
        {"simulator_host": "127.0.0.1"},
        {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt"},
    ],
)
def test_a_record_naming_anything_but_a_loopback_simulator_in_the_data_folder_is_ignored(
    tmp_path, changes
):
    record(tmp_path, **changes)
    settings = fake_settings(tmp_path)
    assert state_file.apply(settings, environ={}) is None
    assert settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS == []


def test_a_stopped_or_killed_demo_is_recognised(tmp_path):
    record(tmp_path)
    state_file.mark_stopped(tmp_path)
    assert state_file.read(tmp_path)["running"] is False

    # Killed without a chance to mark its record: its process is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record(tmp_path, pid=dead.pid, running=True)
    settings = fake_settings(tmp_path)
    assert state_file.apply(settings, environ={})["running"] is False
    assert settings.LEARNEXA_DEMO_SIMULATOR_STOPPED == "https://127.0.0.1:8443"
    # Still reachable as an address, so other commands fail on the connection, not the host.
    assert settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS == ["127.0.0.1:8443"]


def test_no_record_or_a_broken_one_changes_nothing(tmp_path):
    assert state_file.apply(fake_settings(tmp_path), environ={}) is None
    state_file.path(tmp_path).write_text("{not json")
    assert state_file.apply(fake_settings(tmp_path), environ={}) is None


# -- ports ---------------------------------------------------------------------------------


def test_a_taken_port_gives_the_next_free_one():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = free_port(port)
        assert chosen != port
        with socket.socket() as check:
            check.bind(("127.0.0.1", chosen))
    assert free_port(port) == port


def test_the_demo_announces_the_port_it_chose_instead(capsys):
    from learnexa.demo.management.commands.demo import Command

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chosen = Command()._free_port(port, "the simulator")
    assert chosen != port
    assert f"Port {port} is taken; the simulator uses {chosen}." in capsys.readouterr().out
