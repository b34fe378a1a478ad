"""Server lifecycle: TLS certificates, state directory reuse, and the command line."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509

from dataverse_sim.server import INFO_KEYS, Simulator

ROOT = Path(__file__).resolve().parents[2]


def test_info_keys(sim):
    assert tuple(sim.info) == INFO_KEYS
    assert sim.info["organization_uri"] == sim.info["authority_host"]
    assert sim.info["organization_uri"].startswith("https://127.0.0.1:")
    assert sim.info["control_url"] == sim.info["organization_uri"] + "/_control"


def test_certificate_covers_localhost_and_loopback(sim, ssl_context):
    cert = x509.load_pem_x509_certificate((Path(sim.state_dir) / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    url = f"https://localhost:{sim.port}/{sim.tenant_id}/discovery/v2.0/keys"
    assert httpx.get(url, verify=ssl_context).status_code == 200
    # the system trust store does not know this CA
    plain = ssl.create_default_context()
    try:
        httpx.get(sim.info["organization_uri"] + "/", verify=plain)
    except httpx.ConnectError:
        pass
    else:  # pragma: no cover
        raise AssertionError("expected a certificate verification failure")


def test_state_dir_is_reused(tmp_path):
    with Simulator(users=20, seed=5, state_dir=tmp_path) as first:
        ca1 = (tmp_path / "ca.pem").read_bytes()
        key1 = (tmp_path / "token-signing-key.pem").read_bytes()
        assert first.info["ca_bundle"] == str((tmp_path / "ca.pem").resolve())
    with Simulator(users=20, seed=5, state_dir=tmp_path) as second:
        assert (tmp_path / "ca.pem").read_bytes() == ca1
        assert (tmp_path / "token-signing-key.pem").read_bytes() == key1
        ctx = ssl.create_default_context(cafile=second.info["ca_bundle"])
        assert httpx.get(second.info["organization_uri"] + "/", verify=ctx).status_code == 200
    (tmp_path / "server.pem").write_text("garbage")
    with Simulator(users=20, seed=5, state_dir=tmp_path) as third:
        assert (tmp_path / "ca.pem").read_bytes() == ca1  # only the server cert was redone
        ctx = ssl.create_default_context(cafile=third.info["ca_bundle"])
        assert httpx.get(third.info["organization_uri"] + "/", verify=ctx).status_code == 200


def test_cli_info_file_and_clean_shutdown(tmp_path):
    info_file = tmp_path / "out" / "info.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataverse_sim",
            "--port",
            "0",
            "--users",
            "30",
            "--seed",
            "2",
            "--state-dir",
            str(tmp_path / "state"),
            "--info-file",
            str(info_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not info_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = json.loads(info_file.read_text())
        assert set(info) == set(INFO_KEYS)
        ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        token = httpx.post(
            f"{info['authority_host']}/{info['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "scope": f"{info['organization_uri']}/.default",
            },
            verify=ctx,
        ).json()["access_token"]
        count = httpx.get(
            f"{info['organization_uri']}/api/data/v9.2/systemusers/$count",
            headers={"Authorization": f"Bearer {token}"},
            verify=ctx,
        )
        assert count.text == "30"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert info["organization_uri"] in out and info["client_secret"] in out
    assert "stopped" in out


def test_cli_help_documents_the_control_api():
    result = subprocess.run(
        [sys.executable, "-m", "dataverse_sim", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 0
    for text in (
        "--info-file",
        "--state-dir",
        "/_control/faults",
        "/_control/users",
        "/_control/throttling",
        "/_control/secret/rotate",
        "/_control/clock/advance",
    ):
        assert text in result.stdout
