"""Authorization code flow with PKCE, refresh tokens, and certificate credentials."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

REDIRECT = "http://localhost:3000/dynamics_crm/authenticate"
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


def _app(sim, session, credential=None):
    info = sim.info
    return msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=credential if credential is not None else info["client_secret"],
        authority=f"{info['authority_host']}/{info['tenant_id']}",
        instance_discovery=False,
        http_client=session,
    )


def _sign_in(sim, session, app, login_hint=None):
    scopes = [f"{sim.info['organization_uri']}/user_impersonation"]
    flow = app.initiate_auth_code_flow(scopes=scopes, redirect_uri=REDIRECT, login_hint=login_hint)
    assert "code_challenge_method=S256" in flow["auth_uri"]
    redirect = session.get(flow["auth_uri"], allow_redirects=False)
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return flow, dict(parse_qsl(urlsplit(location).query))


def test_authorization_code_flow_with_pkce(sim, requests_session, api):
    app = _app(sim, requests_session)
    flow, params = _sign_in(sim, requests_session, app, login_hint="john_doe@contoso.com")
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    assert result["refresh_token"]
    assert result["id_token_claims"]["preferred_username"] == "john_doe@contoso.com"
    who = api.get("/WhoAmI", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert who.status_code == 200
    user = api.get(f"/systemusers({who.json()['UserId']})?$select=internalemailaddress").json()
    assert user["internalemailaddress"] == "john_doe@contoso.com"

    (account,) = app.get_accounts()
    refreshed = app.acquire_token_silent(
        [f"{sim.info['organization_uri']}/user_impersonation"], account=account, force_refresh=True
    )
    assert refreshed and refreshed["access_token"] != result["access_token"]


def test_forged_state_and_wrong_verifier_are_rejected(sim, requests_session):
    app = _app(sim, requests_session)
    flow, params = _sign_in(sim, requests_session, app)
    with pytest.raises(ValueError):
        app.acquire_token_by_auth_code_flow(flow, {**params, "state": "forged"})
    flow2, params2 = _sign_in(sim, requests_session, app)
    flow2["code_verifier"] = "x" * 50
    result = app.acquire_token_by_auth_code_flow(flow2, params2)
    assert result["error"] == "invalid_grant"
    assert result["error_description"].startswith("AADSTS501481")
    # a code works once
    flow3, params3 = _sign_in(sim, requests_session, app)
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow3), params3)
    again = app.acquire_token_by_auth_code_flow(dict(flow3), params3)
    assert again["error"] == "invalid_grant"


def test_form_post_response_mode(sim, requests_session):
    app = _app(sim, requests_session)
    flow = app.initiate_auth_code_flow(
        scopes=[f"{sim.info['organization_uri']}/user_impersonation"],
        redirect_uri=REDIRECT,
        response_mode="form_post",
    )
    page = requests_session.get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 200
    assert f'action="{REDIRECT}"' in page.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    assert fields["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert "access_token" in result, result


def _certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "learnexa-sync")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert, key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("with_thumbprint", [True, False])
def test_certificate_client_assertion(sim, requests_session, with_thumbprint):
    cert, key_pem, cert_pem = _certificate()
    scopes = [f"{sim.info['organization_uri']}/.default"]
    credential = {"private_key": key_pem, "public_certificate": cert_pem}
    if with_thumbprint:  # RS256 with x5t; without it MSAL signs PS256 with x5t#S256
        credential["thumbprint"] = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    unregistered = _app(sim, requests_session, credential).acquire_token_for_client(scopes)
    assert unregistered["error"] == "invalid_client"
    assert unregistered["error_description"].startswith("AADSTS700027")
    sim.register_certificate(cert_pem)
    result = _app(sim, requests_session, credential).acquire_token_for_client(scopes)
    assert "access_token" in result, result
