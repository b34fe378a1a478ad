"""Faults aimed at the Entra endpoints (``"target": "entra"``), connection-level faults, and
the request log's ``host``/``credential`` fields, all driven through the control API."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from dataverse_sim import certs

ROOT = Path(__file__).resolve().parents[2]
REDIRECT = "http://localhost:3000/dynamics_crm/authenticate"


def _session(sim) -> requests.Session:
    """A new session (so a new TCP connection) that trusts the simulator's CA only."""
    session = requests.Session()
    session.verify = sim.info["ca_bundle"]
    session.trust_env = False
    return session


def _app(sim, session=None) -> msal.ConfidentialClientApplication:
    info = sim.info
    return msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=info["client_secret"],
        authority=f"{info['authority_host']}/{info['tenant_id']}",
        instance_discovery=False,
        http_client=session or _session(sim),
    )


def _scopes(sim) -> list[str]:
    return [f"{sim.info['organization_uri']}/.default"]


def _token_url(sim, host: str | None = None) -> str:
    base = sim.info["authority_host"] if host is None else f"https://{host}:{sim.port}"
    return f"{base}/{sim.info['tenant_id']}/oauth2/v2.0/token"


def _discovery_url(sim) -> str:
    return f"{sim.info['authority_host']}/{sim.info['tenant_id']}/v2.0/.well-known/openid-configuration"


def _form(sim, **extra) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": sim.info["client_id"],
        "client_secret": sim.info["client_secret"],
        "scope": f"{sim.info['organization_uri']}/.default",
        **extra,
    }


def _post_token(sim, ssl_context, **extra) -> httpx.Response:
    return httpx.post(_token_url(sim), data=_form(sim, **extra), verify=ssl_context)


def _inject(control, **fault) -> dict:
    resp = control.post("/faults", json=fault)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _log(control) -> list[dict]:
    return control.get("/requests").json()["requests"]


def _aadsts(resp: httpx.Response) -> str:
    return resp.json()["error_description"].split(":", 1)[0]


# ---------------------------------------------------------------------- status


def test_throttled_token_request_has_retry_after_and_entra_shape(sim, control, ssl_context):
    _inject(control, kind="status", status=429, retry_after=4, target="entra", count=2)
    first, second, third = (_post_token(sim, ssl_context) for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["retry-after"] == "4"
    body = first.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["error_codes"] == [90055]
    assert _aadsts(first) == "AADSTS90055"
    for key in ("Trace ID:", "Correlation ID:", "Timestamp:"):
        assert key in body["error_description"]
    assert body["trace_id"] and body["correlation_id"] and body["timestamp"]
    assert third.status_code == 200
    assert [e["fault"] for e in _log(control) if e.get("fault")] == ["status", "status"]


def test_throttled_without_retry_after_says_one_second(sim, control, ssl_context):
    _inject(control, kind="status", status=429, target="entra")
    assert _post_token(sim, ssl_context).headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (500, "server_error", "AADSTS90033"),
        (502, "temporarily_unavailable", "AADSTS90006"),
        (503, "temporarily_unavailable", "AADSTS90006"),
        (504, "temporarily_unavailable", "AADSTS90006"),
    ],
)
def test_server_errors_from_entra(sim, control, ssl_context, status, error, code):
    _inject(control, kind="status", status=status, target="entra")
    resp = _post_token(sim, ssl_context)
    assert resp.status_code == status
    assert resp.json()["error"] == error
    assert _aadsts(resp) == code
    assert "retry-after" not in resp.headers
    assert _post_token(sim, ssl_context).status_code == 200


def test_other_client_error_statuses(sim, control, ssl_context):
    _inject(control, kind="status", status=400, target="entra")
    resp = _post_token(sim, ssl_context)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    assert "retry-after" not in resp.headers


def test_retry_after_on_a_server_error(sim, control, ssl_context):
    _inject(control, kind="status", status=503, retry_after=9, target="entra")
    assert _post_token(sim, ssl_context).headers["retry-after"] == "9"


def test_msal_sees_the_entra_errors(sim, control):
    _inject(control, kind="status", status=429, target="entra", path_contains="/token")
    result = _app(sim).acquire_token_for_client(_scopes(sim))  # discovery is not affected
    assert result.get("error") == "temporarily_unavailable", result
    assert result["error_description"].startswith("AADSTS90055")
    # MSAL raises on a 5xx from the token endpoint instead of returning the body
    _inject(control, kind="status", status=503, target="entra", path_contains="/token")
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        _app(sim).acquire_token_for_client(_scopes(sim))


def test_path_contains_narrows_to_discovery(sim, control, ssl_context):
    _inject(
        control, kind="status", status=500, target="entra", path_contains="openid-configuration"
    )
    assert _post_token(sim, ssl_context).status_code == 200  # not used up by the token request
    assert httpx.get(_discovery_url(sim), verify=ssl_context).status_code == 500
    assert httpx.get(_discovery_url(sim), verify=ssl_context).status_code == 200


def test_targets_do_not_cross(sim, control, ssl_context, api):
    _inject(control, kind="status", status=503, target="entra")
    assert api.get("/WhoAmI").status_code == 200  # the Web API ignores an Entra fault
    assert _post_token(sim, ssl_context).status_code == 503
    _inject(control, kind="status", status=503)  # default target: the Web API
    assert _post_token(sim, ssl_context).status_code == 200
    assert api.get("/WhoAmI").status_code == 503


# ---------------------------------------------------------------------- reset / slow


def test_reset_on_the_token_endpoint(sim, control):
    _inject(control, kind="reset", target="entra", path_contains="/token")
    with pytest.raises(requests.ConnectionError):
        _session(sim).post(_token_url(sim), data=_form(sim))
    assert _session(sim).post(_token_url(sim), data=_form(sim)).status_code == 200
    (entry,) = [e for e in _log(control) if e.get("fault")]
    assert (entry["fault"], entry["status"], entry["credential"]) == ("reset", 0, "client_secret")


def test_slow_discovery(sim, control, ssl_context):
    _inject(control, kind="slow", seconds=0.5, target="entra", path_contains="openid")
    started = time.perf_counter()
    resp = httpx.get(_discovery_url(sim), verify=ssl_context)
    assert time.perf_counter() - started >= 0.5
    assert resp.status_code == 200
    assert resp.json()["issuer"].endswith(f"/{sim.info['tenant_id']}/v2.0")
    started = time.perf_counter()
    httpx.get(_discovery_url(sim), verify=ssl_context)
    assert time.perf_counter() - started < 0.5


def test_truncated_and_malformed_entra_answers(sim, control, ssl_context):
    _inject(control, kind="truncated", target="entra", path_contains="/token")
    with pytest.raises(httpx.TransportError):
        _post_token(sim, ssl_context)
    _inject(control, kind="malformed", target="entra", path_contains="/token")
    resp = _post_token(sim, ssl_context)
    with pytest.raises(ValueError):
        resp.json()


# ---------------------------------------------------------------------- redirect


def test_redirect_to_localhost_and_what_arrives_there(sim, control, ssl_context):
    _inject(control, kind="redirect", target="entra", path_contains="/token")
    resp = _post_token(sim, ssl_context)
    assert resp.status_code == 307
    location = resp.headers["location"]
    tenant = sim.info["tenant_id"]
    assert location == f"https://localhost:{sim.port}/redirected/{tenant}/oauth2/v2.0/token"
    followed = httpx.post(location, data=_form(sim), verify=ssl_context)  # secret and all
    assert followed.status_code == 404  # the simulator routes nothing there
    origin, landed = _log(control)
    assert origin["host"] == f"127.0.0.1:{sim.port}"
    assert (origin["fault"], origin["status"], origin["credential"]) == (
        "redirect",
        307,
        "client_secret",
    )
    assert landed["path"] == f"/redirected/{tenant}/oauth2/v2.0/token"
    assert landed["host"] == f"localhost:{sim.port}"
    assert landed["credential"] == "client_secret"
    assert "fault" not in landed


def test_redirect_status_and_location(sim, control, ssl_context):
    _inject(
        control, kind="redirect", status=302, location="http://127.0.0.1:9/capture", target="entra"
    )
    resp = httpx.get(_discovery_url(sim), verify=ssl_context)
    assert (resp.status_code, resp.headers["location"]) == (302, "http://127.0.0.1:9/capture")
    assert control.post("/faults", json={"kind": "redirect", "status": 200}).status_code == 400


def test_requests_following_a_redirect_lands_on_localhost(sim, control):
    _inject(control, kind="redirect", target="entra", path_contains="/token")
    resp = _session(sim).post(_token_url(sim), data=_form(sim))  # follows the 307
    assert resp.status_code == 404
    assert resp.url.startswith(f"https://localhost:{sim.port}/redirected/")
    assert _log(control)[-1]["credential"] == "client_secret"


def test_redirect_on_the_web_api(sim, control, api):
    _inject(control, kind="redirect", status=308)
    resp = api.get("/WhoAmI")
    assert resp.status_code == 308
    assert (
        resp.headers["location"] == f"https://localhost:{sim.port}/redirected/api/data/v9.2/WhoAmI"
    )


# ---------------------------------------------------------------------- discovery elsewhere


def test_discovery_sends_the_token_request_elsewhere(sim, control, ssl_context):
    _inject(control, kind="discovery_elsewhere")  # implies target entra
    doc = httpx.get(_discovery_url(sim), verify=ssl_context).json()
    tenant = sim.info["tenant_id"]
    assert doc["token_endpoint"] == f"https://localhost:{sim.port}/{tenant}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == (
        f"https://localhost:{sim.port}/{tenant}/oauth2/v2.0/authorize"
    )
    assert doc["issuer"] == f"{sim.info['authority_host']}/{tenant}/v2.0"
    again = httpx.get(_discovery_url(sim), verify=ssl_context).json()
    assert again["token_endpoint"] == _token_url(sim)


def test_msal_follows_the_discovery_document(sim, control):
    _inject(control, kind="discovery_elsewhere")
    result = _app(sim).acquire_token_for_client(_scopes(sim))
    assert "access_token" in result, result  # the certificate covers DNS:localhost
    discovery, token = _log(control)
    assert discovery["fault"] == "discovery_elsewhere"
    assert discovery["credential"] is None
    assert token["host"] == f"localhost:{sim.port}"
    assert token["credential"] == "client_secret"


def test_discovery_elsewhere_with_an_explicit_endpoint(sim, control, ssl_context):
    _inject(control, kind="discovery_elsewhere", token_endpoint="http://127.0.0.1:9/t/token")
    doc = httpx.get(_discovery_url(sim), verify=ssl_context).json()
    assert doc["token_endpoint"] == "http://127.0.0.1:9/t/token"
    assert doc["authorization_endpoint"] == "http://127.0.0.1:9/t/authorize"


# ---------------------------------------------------------------------- tenant, app, user


def test_tenant_not_found(sim, control, ssl_context):
    _inject(control, kind="tenant_not_found", count=2)
    tenant = sim.info["tenant_id"]
    discovery = httpx.get(_discovery_url(sim), verify=ssl_context)
    assert discovery.status_code == 400
    assert discovery.json()["error"] == "invalid_tenant"
    assert discovery.json()["error_description"].startswith(
        f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud."
    )
    token = _post_token(sim, ssl_context)
    assert (token.status_code, token.json()["error"], _aadsts(token)) == (
        400,
        "invalid_request",
        "AADSTS90002",
    )
    assert _post_token(sim, ssl_context).status_code == 200


def test_msal_cannot_start_without_the_tenant(sim, control):
    _inject(control, kind="tenant_not_found", path_contains="openid-configuration")
    with pytest.raises(ValueError, match="tenant|Tenant|authority"):
        _app(sim)
    assert "access_token" in _app(sim).acquire_token_for_client(_scopes(sim))


def test_app_disabled_until_cleared(sim, control, ssl_context):
    _inject(control, kind="app_disabled", count=1_000_000_000)
    for _ in range(3):
        resp = _post_token(sim, ssl_context)
        assert resp.status_code == 400
        assert resp.json()["error"] == "unauthorized_client"
        assert resp.json()["error_description"].startswith(
            f"AADSTS7000112: Application '{sim.info['client_id']}'(Learnexa) is disabled."
        )
    # discovery is not a token request: it neither fails nor uses the fault up
    assert httpx.get(_discovery_url(sim), verify=ssl_context).status_code == 200
    (pending,) = control.get("/faults").json()["faults"]
    assert (pending["kind"], pending["target"], pending["count"]) == (
        "app_disabled",
        "entra",
        1_000_000_000 - 3,
    )
    assert control.delete("/faults").status_code == 200
    assert _post_token(sim, ssl_context).status_code == 200


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_user_disabled_hits_delegated_grants_only(sim, control):
    session = _session(sim)
    app = _app(sim, session)
    scopes = [f"{sim.info['organization_uri']}/user_impersonation"]
    flow = app.initiate_auth_code_flow(scopes=scopes, redirect_uri=REDIRECT)
    location = session.get(flow["auth_uri"], allow_redirects=False).headers["Location"]
    _inject(control, kind="user_disabled", count=1_000_000)
    assert "access_token" in app.acquire_token_for_client(_scopes(sim))  # app-only: fine
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))
    assert result.get("error") == "invalid_grant", result
    assert result["error_description"].startswith("AADSTS50057: The user account is disabled.")
    refresh = session.post(
        _token_url(sim),
        data={
            "grant_type": "refresh_token",
            "client_id": sim.info["client_id"],
            "client_secret": sim.info["client_secret"],
            "refresh_token": "whatever",
            "scope": scopes[0],
        },
    )
    assert refresh.json()["error_description"].startswith("AADSTS50057")


# ---------------------------------------------------------------------- connection level


def _handshake(sim, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def test_refused_connection_is_reset(sim, control, ssl_context):
    fault = _inject(control, kind="refuse", target="entra")
    assert (fault["target"], fault["path_contains"]) == ("connection", None)
    with pytest.raises(ConnectionResetError):
        _handshake(sim, ssl_context)
    _handshake(sim, ssl_context).close()


def test_refused_connection_with_requests(sim, control):
    _inject(control, kind="refuse", count=1)
    with pytest.raises(requests.ConnectionError):
        _session(sim).get(_discovery_url(sim))
    assert _session(sim).get(_discovery_url(sim)).status_code == 200


def test_untrusted_certificate(sim, control, ssl_context):
    _inject(control, kind="untrusted_certificate", count=2)
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
        _handshake(sim, ssl_context)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        _session(sim).get(_discovery_url(sim))
    with _handshake(sim, ssl_context) as tls:  # count used up: the real certificate again
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    assert "dataverse_sim local CA" in cert.issuer.rfc4514_string()


def test_untrusted_certificate_is_for_the_same_host(sim, control):
    _inject(control, kind="untrusted_certificate")
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with _handshake(sim, lax) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    assert "dataverse_sim untrusted CA" in cert.issuer.rfc4514_string()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert x509.DNSName("localhost") in san
    # made once per state directory
    assert (Path(sim.state_dir) / "untrusted-server.pem").read_bytes() == cert.public_bytes(
        serialization.Encoding.PEM
    )


# ---------------------------------------------------------------------- request log


def test_log_records_host_and_credential_kind(sim, control, ssl_context, api):
    api.get("/WhoAmI")
    httpx.get(_discovery_url(sim), verify=ssl_context)
    _post_token(sim, ssl_context)
    httpx.post(
        _token_url(sim, "localhost"),
        data={**_form(sim, client_secret=""), "client_assertion": "a.b.c"},
        verify=ssl_context,
    )
    info = sim.info
    httpx.post(
        _token_url(sim),
        data={k: v for k, v in _form(sim).items() if k not in ("client_id", "client_secret")},
        auth=(info["client_id"], info["client_secret"]),
        verify=ssl_context,
    )
    webapi, discovery, secret, assertion, basic = _log(control)
    assert webapi["host"] == f"127.0.0.1:{sim.port}" and "credential" not in webapi
    assert discovery["credential"] is None
    assert secret["credential"] == basic["credential"] == "client_secret"
    assert assertion["credential"] == "client_assertion"
    assert assertion["host"] == f"localhost:{sim.port}"
    # never the secret itself
    assert info["client_secret"] not in str(control.get("/requests").json())


# ---------------------------------------------------------------------- validation, docs


def test_bad_fault_options(sim, control):
    assert control.post("/faults", json={"kind": "status", "target": "graph"}).status_code == 400
    bad = control.post("/faults", json={"kind": "app_disabled", "target": "webapi"})
    assert bad.status_code == 400
    assert control.post("/faults", json={"kind": "redirect", "location": 5}).status_code == 400
    with pytest.raises(ValueError):
        sim.inject_fault("status", count=float("inf"))
    assert control.get("/faults").json()["faults"] == []


def test_existing_certificate_without_localhost_is_replaced(tmp_path):
    first = certs.ensure_key_material(tmp_path)
    ca_cert = x509.load_pem_x509_certificate(first.ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key((tmp_path / certs.CA_KEY).read_bytes(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    old = (  # what an older version might have left: an IP address only
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / certs.SERVER_CERT).write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (tmp_path / certs.SERVER_KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    second = certs.ensure_key_material(tmp_path)
    cert = x509.load_pem_x509_certificate(second.server_cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert x509.DNSName("localhost") in san
    assert second.ca_cert_path.read_bytes() == first.ca_cert_path.read_bytes()  # CA kept


def test_cli_help_documents_entra_and_connection_faults():
    result = subprocess.run(
        [sys.executable, "-m", "dataverse_sim", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 0
    for text in (
        '"target": "entra"',
        "redirect",
        "discovery_elsewhere",
        "tenant_not_found",
        "app_disabled",
        "user_disabled",
        "refuse",
        "untrusted_certificate",
        "credential",
    ):
        assert text in result.stdout, text
    readme = (ROOT / "dataverse_sim" / "README.md").read_text()
    for text in ("discovery_elsewhere", "untrusted_certificate", '"target"', "credential"):
        assert text in readme, text
