"""The simulated Entra ID tenant: discovery, keys, and the token endpoint's answers."""

from __future__ import annotations

import base64
import json

import httpx
import msal
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _b64int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _msal_app(sim, session, secret=None, tenant=None):
    info = sim.info
    return msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=secret if secret is not None else info["client_secret"],
        authority=f"{info['authority_host']}/{tenant or info['tenant_id']}",
        instance_discovery=False,
        http_client=session,
    )


def _token_request(sim, ssl_context, **overrides):
    info = sim.info
    data = {
        "grant_type": "client_credentials",
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],
        "scope": f"{info['organization_uri']}/.default",
    }
    tenant = overrides.pop("tenant", info["tenant_id"])
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    return httpx.post(
        f"{info['authority_host']}/{tenant}/oauth2/v2.0/token", data=data, verify=ssl_context
    )


def test_msal_client_credentials_token(sim, requests_session):
    result = _msal_app(sim, requests_session).acquire_token_for_client(
        scopes=[f"{sim.info['organization_uri']}/.default"]
    )
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert 3600 <= result["expires_in"] <= 5400
    claims = _claims(result["access_token"])
    assert claims["aud"] == sim.info["organization_uri"]
    assert claims["tid"] == sim.info["tenant_id"]
    assert claims["appid"] == claims["azp"] == sim.info["client_id"]
    assert claims["oid"] == sim.tenant.app_object_id
    assert claims["iat"] <= claims["nbf"] + 1 and claims["exp"] > claims["iat"]


def test_token_signature_verifies_with_published_jwks(sim, ssl_context, token):
    info = sim.info
    base = f"{info['authority_host']}/{info['tenant_id']}"
    config = httpx.get(f"{base}/v2.0/.well-known/openid-configuration", verify=ssl_context).json()
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert config[key].startswith(info["authority_host"] + "/"), key
    assert config["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    jwks = httpx.get(config["jwks_uri"], verify=ssl_context).json()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    public = rsa.RSAPublicNumbers(_b64int(key["e"]), _b64int(key["n"])).public_key()
    signing_input, _, signature = token.rpartition(".")
    public.verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        signing_input.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert _claims(token)["iss"] == config["issuer"]


def test_wrong_secret_gives_aadsts7000215_via_msal(sim, requests_session):
    result = _msal_app(sim, requests_session, secret="not-the-secret").acquire_token_for_client(
        scopes=[f"{sim.info['organization_uri']}/.default"]
    )
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided")
    assert result["error_codes"] == [7000215]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert result[key]


def test_wrong_secret_is_401(sim, ssl_context):
    resp = _token_request(sim, ssl_context, client_secret="wrong")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


def test_unknown_client_gives_aadsts700016(sim, ssl_context):
    resp = _token_request(sim, ssl_context, client_id="00000000-0000-0000-0000-000000000001")
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "unauthorized_client"
    assert body["error_description"].startswith(
        "AADSTS700016: Application with identifier '00000000-0000-0000-0000-000000000001' was "
        "not found in the directory"
    )


def test_unknown_tenant_gives_aadsts90002(sim, ssl_context, requests_session):
    other = "11111111-2222-3333-4444-555555555555"
    resp = _token_request(sim, ssl_context, tenant=other)
    assert resp.status_code == 400
    assert resp.json()["error_description"].startswith(f"AADSTS90002: Tenant '{other}' not found")
    # MSAL reads the discovery document first, and gives up on an unknown tenant
    with pytest.raises(ValueError):
        _msal_app(sim, requests_session, tenant=other).acquire_token_for_client(
            scopes=[f"{sim.info['organization_uri']}/.default"]
        )


def test_tenant_domain_is_accepted(sim, requests_session):
    result = _msal_app(sim, requests_session, tenant=sim.tenant_domain).acquire_token_for_client(
        scopes=[f"{sim.info['organization_uri']}/.default"]
    )
    assert "access_token" in result, result


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        (None, 70011),
        ("", 70011),
        ("user.read", 70011),
        ("{org}/user_impersonation", 1002012),
        ("https://other.crm.dynamics.com/.default", 500011),
    ],
)
def test_bad_scope_errors(sim, ssl_context, scope, code):
    if scope is not None:
        scope = scope.format(org=sim.info["organization_uri"])
    resp = _token_request(sim, ssl_context, scope=scope)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error_codes"][0] == code
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert body["error"] in ("invalid_scope", "invalid_resource")


def test_missing_scope_message(sim, ssl_context):
    resp = _token_request(sim, ssl_context, scope=None)
    assert "must include a 'scope' input parameter" in resp.json()["error_description"]


def test_double_slash_default_scope_and_basic_auth(sim, ssl_context):
    info = sim.info
    resp = httpx.post(
        f"{info['authority_host']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": f"{info['organization_uri']}//.default"},
        auth=(info["client_id"], info["client_secret"]),
        verify=ssl_context,
    )
    assert resp.status_code == 200, resp.text
    assert _claims(resp.json()["access_token"])["aud"] == info["organization_uri"]


def test_expired_secret_gives_aadsts7000222(sim, ssl_context):
    sim.expire_secret()
    resp = _token_request(sim, ssl_context)
    assert resp.status_code == 401
    assert resp.json()["error_description"].startswith("AADSTS7000222: ")


def test_rotated_secret(sim, ssl_context):
    old = sim.info["client_secret"]
    new = sim.rotate_secret()
    assert new != old and sim.info["client_secret"] == new
    assert _token_request(sim, ssl_context, client_secret=old).status_code == 401
    assert _token_request(sim, ssl_context, client_secret=new).status_code == 200


def test_token_lifetimes_vary_within_range(sim, ssl_context):
    lifetimes = {_token_request(sim, ssl_context).json()["expires_in"] for _ in range(6)}
    assert all(3600 <= n <= 5400 for n in lifetimes)
    assert len(lifetimes) > 1


def test_v1_token_endpoint_with_resource(sim, ssl_context, anon):
    info = sim.info
    resp = httpx.post(
        f"{info['authority_host']}/{sim.tenant_domain}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "resource": info["organization_uri"] + "/",
        },
        verify=ssl_context,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["expires_in"], str) and int(body["expires_on"]) > int(body["not_before"])
    assert body["resource"] == info["organization_uri"] + "/"
    who = anon.get(
        "/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert who.status_code == 200
