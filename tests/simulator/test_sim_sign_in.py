"""Learner sign-in with Microsoft against the simulated tenant: v2.0 ID tokens verified with
PyJWT against the published JWKS, a person's account in Entra ID apart from Dynamics
(``POST /_control/users/<id>/entra``), and the ``id_token`` fault that tampers with the next
sign-in's ID token."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import msal
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
REDIRECT = "http://localhost:8000/dynamics_crm/authenticate"
SCOPE = "openid profile email"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"


# ---------------------------------------------------------------------- helpers


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _authority(sim, segment: str | None = None) -> str:
    return f"{sim.info['authority_host']}/{segment or sim.info['tenant_id']}"


def _authorize(sim, ssl_context, login_hint=None, **extra) -> tuple[httpx.Response, str]:
    """The authorize request a browser would make; returns the answer and the PKCE verifier."""
    segment = extra.pop("segment", None)
    verifier = secrets.token_urlsafe(48)
    params = {
        "client_id": sim.info["client_id"],
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "state-42",
        "nonce": "nonce-42",
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    if login_hint is not None:
        params["login_hint"] = login_hint
    params.update(extra)
    params = {k: v for k, v in params.items() if v is not None}
    resp = httpx.get(
        f"{_authority(sim, segment)}/oauth2/v2.0/authorize",
        params=params,
        verify=ssl_context,
        follow_redirects=False,
    )
    return resp, verifier


def _redirected(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?"), location
    return dict(parse_qsl(urlsplit(location).query))


def _token(sim, ssl_context, segment=None, **form) -> httpx.Response:
    data = {
        "client_id": sim.info["client_id"],
        "client_secret": sim.info["client_secret"],
        "scope": SCOPE,
        **form,
    }
    return httpx.post(
        f"{_authority(sim, segment)}/oauth2/v2.0/token", data=data, verify=ssl_context
    )


def _redeem(sim, ssl_context, code: str, verifier: str, segment=None) -> httpx.Response:
    return _token(
        sim,
        ssl_context,
        segment,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


def _sign_in(sim, ssl_context, login_hint, segment=None, **extra) -> dict:
    """A whole sign-in; returns the token endpoint's JSON answer."""
    resp, verifier = _authorize(sim, ssl_context, login_hint, segment=segment, **extra)
    params = _redirected(resp)
    assert "code" in params, params
    answer = _redeem(sim, ssl_context, params["code"], verifier, segment)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _discovery(sim, ssl_context, segment=None) -> dict:
    url = f"{_authority(sim, segment)}/v2.0/.well-known/openid-configuration"
    return httpx.get(url, verify=ssl_context).json()


def _signing_key(sim, ssl_context, id_token: str, segment=None):
    """The key for the token's kid from the JWKS the discovery document points to."""
    config = _discovery(sim, ssl_context, segment)
    assert urlsplit(config["jwks_uri"]).netloc == urlsplit(sim.info["authority_host"]).netloc
    jwks = httpx.get(config["jwks_uri"], verify=ssl_context).json()
    key_set = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(id_token)["kid"]
    (key,) = [k for k in key_set.keys if k.key_id == kid]
    return key, config["issuer"]


def _verified(sim, ssl_context, id_token: str, segment=None) -> dict:
    key, issuer = _signing_key(sim, ssl_context, id_token, segment)
    return jwt.decode(
        id_token,
        key.key,
        algorithms=["RS256"],
        audience=sim.info["client_id"],
        issuer=issuer,
    )


def _unverified(id_token: str) -> dict:
    return jwt.decode(id_token, options={"verify_signature": False})


def _person(sim, email: str | None = "ada.lovelace@contoso.com", **fields) -> str:
    domainname = fields.pop("domainname", None) or email or "ada@contoso1.onmicrosoft.com"
    return sim.create_user(
        firstname="Ada",
        lastname="Lovelace",
        internalemailaddress=email,
        domainname=domainname,
        **fields,
    )


def _set_account(control, uid: str, account: str) -> httpx.Response:
    return control.post(f"/users/{uid}/entra", json={"account": account})


def _inject(control, **fault) -> dict:
    resp = control.post("/faults", json={"target": "entra", **fault})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _seeded_person(sim) -> dict:
    """A generated person who can sign in (same id after a reset: the data is seeded)."""
    return next(
        u
        for u in sim.store.users()
        if u["accessmode"] == 0
        and not u["applicationid"]
        and not u["isdisabled"]
        and u["internalemailaddress"]
        and u["internalemailaddress"] != "sam.taylor@contoso.com"  # shared by two people
        and u["azureactivedirectoryobjectid"]
    )


# ---------------------------------------------------------------------- ID token claims


@pytest.mark.parametrize("by_domain", [False, True], ids=["tenant-id", "tenant-domain"])
def test_id_token_has_v2_claims_and_verifies_against_the_jwks(sim, ssl_context, by_domain):
    uid = _person(sim)
    user = sim.get_user(uid)
    segment = sim.tenant_domain if by_domain else None
    answer = _sign_in(sim, ssl_context, "Ada.Lovelace@contoso.com", segment, nonce="n-0S+/=é")
    claims = _verified(sim, ssl_context, answer["id_token"], segment)

    config = _discovery(sim, ssl_context, segment)
    assert claims["iss"] == config["issuer"] == f"{_authority(sim)}/v2.0"
    assert claims["aud"] == sim.info["client_id"]
    assert claims["tid"] == sim.info["tenant_id"]
    assert claims["ver"] == "2.0"
    assert claims["oid"] == user["azureactivedirectoryobjectid"]
    assert claims["preferred_username"] == "ada.lovelace@contoso.com"
    assert claims["name"] == "Ada Lovelace"
    assert claims["email"] == "ada.lovelace@contoso.com"
    assert claims["nonce"] == "n-0S+/=é"
    assert isinstance(claims["sub"], str) and claims["sub"] and claims["sub"] != claims["oid"]
    now = time.time()
    assert claims["iat"] == claims["nbf"] and abs(claims["iat"] - now) < 60
    assert claims["exp"] == claims["iat"] + 3600
    assert None not in claims.values()
    header = jwt.get_unverified_header(answer["id_token"])
    assert header["alg"] == "RS256" and header["kid"] == sim._keys.signing_kid


def test_email_is_left_out_when_the_person_has_none(sim, ssl_context):
    _person(sim, email=None, domainname="ada.nomail@contoso1.onmicrosoft.com")
    answer = _sign_in(sim, ssl_context, "ada.nomail@contoso1.onmicrosoft.com")
    claims = _verified(sim, ssl_context, answer["id_token"])
    assert "email" not in claims
    assert claims["preferred_username"] == "ada.nomail@contoso1.onmicrosoft.com"
    assert None not in claims.values()


def test_nonce_is_left_out_when_none_was_sent_and_on_refresh(sim, ssl_context):
    _person(sim)
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com", nonce=None)
    assert "nonce" not in _verified(sim, ssl_context, answer["id_token"])
    refreshed = _token(
        sim, ssl_context, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    claims = _verified(sim, ssl_context, refreshed.json()["id_token"])
    assert "nonce" not in claims
    assert claims["preferred_username"] == "ada.lovelace@contoso.com"


def test_sub_is_pairwise_and_stable(sim, ssl_context):
    _person(sim)
    first = _unverified(_sign_in(sim, ssl_context, "ada.lovelace@contoso.com")["id_token"])
    second = _unverified(_sign_in(sim, ssl_context, "ada.lovelace@contoso.com")["id_token"])
    assert first["sub"] == second["sub"]
    assert first["oid"] == second["oid"]
    assert len(first["sub"]) == 43  # base64url of 32 bytes, like Entra's


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_msal_sign_in_as_the_product_does_it(sim):
    uid = _person(sim)
    session = requests.Session()
    session.verify = sim.info["ca_bundle"]
    session.trust_env = False
    app = msal.ConfidentialClientApplication(
        sim.info["client_id"],
        client_credential=sim.info["client_secret"],
        authority=_authority(sim),
        instance_discovery=False,
        http_client=session,
        exclude_scopes=["offline_access"],
    )
    flow = app.initiate_auth_code_flow(
        ["email"], redirect_uri=REDIRECT, login_hint="ada.lovelace@contoso.com"
    )
    location = session.get(flow["auth_uri"], allow_redirects=False).headers["Location"]
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))
    assert "id_token_claims" in result, result
    claims = result["id_token_claims"]
    assert claims["oid"] == sim.get_user(uid)["azureactivedirectoryobjectid"]
    assert claims["email"] == "ada.lovelace@contoso.com"
    # MSAL sends the SHA-256 of its nonce, and checked it came back
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()


# ---------------------------------------------------------------------- Entra accounts


def test_disabled_then_enabled_again(sim, ssl_context, control):
    uid = _person(sim)
    resp = _set_account(control, uid, "disabled")
    assert resp.status_code == 200
    assert resp.json() == {"systemuserid": uid, "account": "disabled"}
    assert control.get(f"/users/{uid}/entra").json()["account"] == "disabled"

    answer, _ = _authorize(sim, ssl_context, "ada.lovelace@contoso.com")
    params = _redirected(answer)
    assert "code" not in params
    assert params["error"] == "access_denied"
    assert params["state"] == "state-42"
    assert params["error_description"].startswith("AADSTS50057: The user account is disabled.")
    assert params["error_uri"].endswith("/error?code=50057")

    assert _set_account(control, uid, "enabled").json()["account"] == "enabled"
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    assert _verified(sim, ssl_context, answer["id_token"])["email"] == "ada.lovelace@contoso.com"


def test_unknown_then_enabled_again(sim, ssl_context, control):
    uid = _person(sim)
    assert _set_account(control, uid, "unknown").status_code == 200
    answer, _ = _authorize(sim, ssl_context, "Ada.Lovelace@contoso.com")
    params = _redirected(answer)
    assert "code" not in params
    assert params["error"] == "access_denied"
    assert params["state"] == "state-42"
    assert params["error_description"].startswith(
        "AADSTS50034: The user account Ada.Lovelace@contoso.com does not exist in the "
        f"{sim.tenant_domain} directory. To sign into this application, the account must be "
        "added to the directory."
    )
    assert _set_account(control, uid, "enabled").status_code == 200
    assert "code" in _redirected(_authorize(sim, ssl_context, "ada.lovelace@contoso.com")[0])


def test_disabled_with_form_post(sim, ssl_context, control):
    uid = _person(sim)
    _set_account(control, uid, "disabled")
    page, _ = _authorize(sim, ssl_context, "ada.lovelace@contoso.com", response_mode="form_post")
    assert page.status_code == 200
    assert f'action="{REDIRECT}"' in page.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    assert fields["error"] == "access_denied"
    assert fields["state"] == "state-42"
    assert fields["error_description"].startswith("AADSTS50057: ")


def test_a_hint_matching_nobody_keeps_its_answer(sim, ssl_context):
    params = _redirected(_authorize(sim, ssl_context, "nobody@contoso.com")[0])
    assert params["error"] == "access_denied"
    assert params["error_description"] == (
        "AADSTS50034: The user account does not exist in the directory."
    )


def test_dynamics_isdisabled_keeps_its_behaviour(sim, ssl_context, control):
    uid = _person(sim)
    resp, verifier = _authorize(sim, ssl_context, "ada.lovelace@contoso.com")
    code = _redirected(resp)["code"]
    sim.disable_user(uid)
    params = _redirected(_authorize(sim, ssl_context, "ada.lovelace@contoso.com")[0])
    assert params["error_description"] == (
        "AADSTS50034: The user account does not exist in the directory."
    )
    refused = _redeem(sim, ssl_context, code, verifier)
    assert refused.status_code == 400
    assert refused.json()["error_codes"][0] == 50057
    # the tenant's own state, when set, decides first
    _set_account(control, uid, "disabled")
    params = _redirected(_authorize(sim, ssl_context, "ada.lovelace@contoso.com")[0])
    assert params["error_description"].startswith("AADSTS50057: ")


def test_an_enabled_person_sharing_the_hint_still_signs_in(sim, ssl_context, control):
    first = _person(sim, email="shared@contoso.com", domainname="ada1@contoso1.onmicrosoft.com")
    second = _person(sim, email="shared@contoso.com", domainname="ada2@contoso1.onmicrosoft.com")
    _set_account(control, first, "disabled")
    claims = _unverified(_sign_in(sim, ssl_context, "shared@contoso.com")["id_token"])
    assert claims["oid"] == sim.get_user(second)["azureactivedirectoryobjectid"]
    _set_account(control, second, "unknown")
    params = _redirected(_authorize(sim, ssl_context, "shared@contoso.com")[0])
    assert params["error_description"].startswith("AADSTS50057: ")  # the first one found


def test_without_a_hint_blocked_people_are_passed_over(sim, ssl_context, control):
    chosen = sim.entra._pick_user(None)
    first = _unverified(_sign_in(sim, ssl_context, None)["id_token"])
    assert first["preferred_username"] == chosen["domainname"]
    _set_account(control, chosen["systemuserid"], "unknown")
    second = _unverified(_sign_in(sim, ssl_context, None)["id_token"])
    assert second["preferred_username"] != chosen["domainname"]


def test_token_endpoint_refuses_an_entra_disabled_person(sim, ssl_context, control):
    uid = _person(sim)
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    pending, verifier = _authorize(sim, ssl_context, "ada.lovelace@contoso.com")
    code = _redirected(pending)["code"]
    _set_account(control, uid, "disabled")

    refresh = _token(
        sim, ssl_context, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert refresh.status_code == 400
    body = refresh.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [50057]
    assert body["error_description"].startswith("AADSTS50057: The user account is disabled.")

    redeem = _redeem(sim, ssl_context, code, verifier)
    assert redeem.status_code == 400
    assert redeem.json()["error_codes"] == [50057]


def test_token_endpoint_refuses_a_person_no_longer_in_the_tenant(sim, ssl_context, control):
    uid = _person(sim)
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    _set_account(control, uid, "unknown")
    refresh = _token(
        sim, ssl_context, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert refresh.status_code == 400
    body = refresh.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [50034]
    assert body["error_description"].startswith(
        f"AADSTS50034: The user account ada.lovelace@contoso.com does not exist in the "
        f"{sim.tenant_domain} directory."
    )


def test_account_control_api_validation(sim, control):
    uid = _person(sim)
    assert control.get(f"/users/{uid}/entra").json() == {"systemuserid": uid, "account": "enabled"}
    for body in ({"account": "locked"}, {"account": None}, {}, {"account": "disabled", "x": 1}):
        resp = control.post(f"/users/{uid}/entra", json=body)
        assert resp.status_code == 400, body
        assert resp.json()["error"]
    assert control.get(f"/users/{uid}/entra").json()["account"] == "enabled"
    missing = "00000000-0000-0000-0000-00000000abcd"
    assert _set_account(control, missing, "disabled").status_code == 404
    assert control.get(f"/users/{missing}/entra").status_code == 404
    assert _set_account(control, uid.upper(), "disabled").json()["systemuserid"] == uid
    assert sim.entra_account(uid)["account"] == "disabled"


def test_reset_clears_entra_account_states(sim, ssl_context, control):
    person = _seeded_person(sim)
    uid = person["systemuserid"]
    email = person["internalemailaddress"]
    assert _set_account(control, uid, "disabled").status_code == 200
    assert _redirected(_authorize(sim, ssl_context, email)[0])["error"] == "access_denied"
    assert control.post("/reset").status_code == 200
    assert control.get(f"/users/{uid}/entra").json()["account"] == "enabled"
    assert "code" in _redirected(_authorize(sim, ssl_context, email)[0])


# ---------------------------------------------------------------------- the id_token fault


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"iss": "https://login.microsoftonline.com/{tid}/v2.0"}, jwt.InvalidIssuerError),
        ({"aud": "00000000-0000-0000-0000-0000000000aa"}, jwt.InvalidAudienceError),
        ({"exp": "{past}"}, jwt.ExpiredSignatureError),
        (
            {"tid": OTHER_TENANT, "iss": "{host}/" + OTHER_TENANT + "/v2.0"},
            jwt.InvalidIssuerError,
        ),
    ],
    ids=["issuer", "audience", "expired", "other-tenant"],
)
def test_id_token_fault_claims_fail_standard_validation(
    sim, ssl_context, control, overrides, error
):
    _person(sim)
    now = int(time.time())
    values = {
        k: (
            now - 7200
            if v == "{past}"
            else v.format(tid=sim.info["tenant_id"], host=sim.info["authority_host"])
        )
        for k, v in overrides.items()
    }
    _inject(control, kind="id_token", claims=values)
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    claims = _unverified(answer["id_token"])
    for name, value in values.items():
        assert claims[name] == value
    assert claims["email"] == "ada.lovelace@contoso.com"  # the rest is the real thing
    with pytest.raises(error):
        _verified(sim, ssl_context, answer["id_token"])
    # the signature is still the tenant's: only the claims are wrong
    key, _ = _signing_key(sim, ssl_context, answer["id_token"])
    jwt.decode(
        answer["id_token"],
        key.key,
        algorithms=["RS256"],
        options={"verify_aud": False, "verify_exp": False},
    )
    # used up: the next sign-in is untouched
    assert control.get("/faults").json()["faults"] == []
    _verified(sim, ssl_context, _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")["id_token"])


def test_id_token_fault_wrong_nonce(sim, ssl_context, control):
    _person(sim)
    _inject(control, kind="id_token", claims={"nonce": "someone-elses"})
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com", nonce="mine")
    claims = _verified(sim, ssl_context, answer["id_token"])  # valid, but not for this request
    assert claims["nonce"] == "someone-elses"


def test_id_token_fault_null_removes_and_new_names_add(sim, ssl_context, control):
    _person(sim)
    _inject(control, kind="id_token", claims={"oid": None, "email": None, "extra": [1, "x"]})
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    claims = _verified(sim, ssl_context, answer["id_token"])
    assert "oid" not in claims and "email" not in claims
    assert claims["extra"] == [1, "x"]
    assert claims["preferred_username"] == "ada.lovelace@contoso.com"
    assert None not in claims.values()


def test_id_token_fault_foreign_signature(sim, ssl_context, control):
    _person(sim)
    fault = _inject(control, kind="id_token", signature="foreign")
    assert fault["signature"] == "foreign" and fault["claims"] == {}
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    header = jwt.get_unverified_header(answer["id_token"])
    assert header["kid"] == sim._keys.signing_kid  # the JWKS has a key under this kid...
    with pytest.raises(jwt.InvalidSignatureError):  # ...but not the one that signed it
        _verified(sim, ssl_context, answer["id_token"])
    claims = _unverified(answer["id_token"])
    assert claims["aud"] == sim.info["client_id"] and claims["email"] == "ada.lovelace@contoso.com"
    # the access token is untouched and still works
    who = httpx.get(
        f"{sim.info['organization_uri']}/api/data/v9.2/WhoAmI",
        headers={"Authorization": f"Bearer {answer['access_token']}"},
        verify=ssl_context,
    )
    assert who.status_code == 200


def test_id_token_fault_foreign_signature_with_claims(sim, ssl_context, control):
    _person(sim)
    _inject(control, kind="id_token", claims={"name": "Mallory"}, signature="foreign")
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    assert _unverified(answer["id_token"])["name"] == "Mallory"
    with pytest.raises(jwt.InvalidSignatureError):
        _verified(sim, ssl_context, answer["id_token"])


def test_id_token_fault_is_for_code_redemptions_only_and_times(sim, ssl_context, control):
    _person(sim)
    answer = _sign_in(sim, ssl_context, "ada.lovelace@contoso.com")
    _inject(control, kind="id_token", claims={"name": "Tampered"}, times=2)
    # discovery, keys, client credentials and a refresh leave it alone
    _discovery(sim, ssl_context)
    app_only = _token(
        sim,
        ssl_context,
        grant_type="client_credentials",
        scope=f"{sim.info['organization_uri']}/.default",
    )
    assert app_only.status_code == 200
    refreshed = _token(
        sim, ssl_context, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert _unverified(refreshed.json()["id_token"])["name"] == "Ada Lovelace"
    (pending,) = control.get("/faults").json()["faults"]
    assert pending["kind"] == "id_token" and pending["count"] == 2
    assert pending["claims"] == {"name": "Tampered"} and pending["signature"] is None
    names = [
        _unverified(_sign_in(sim, ssl_context, "ada.lovelace@contoso.com")["id_token"])["name"]
        for _ in range(3)
    ]
    assert names == ["Tampered", "Tampered", "Ada Lovelace"]
    log = [e for e in control.get("/requests").json()["requests"] if e.get("fault")]
    assert [e["fault"] for e in log] == ["id_token", "id_token"]


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_id_token_fault_through_msal(sim, control):
    _person(sim)
    session = requests.Session()
    session.verify = sim.info["ca_bundle"]
    session.trust_env = False
    app = msal.ConfidentialClientApplication(
        sim.info["client_id"],
        client_credential=sim.info["client_secret"],
        authority=_authority(sim),
        instance_discovery=False,
        http_client=session,
    )
    flow = app.initiate_auth_code_flow(
        ["email"], redirect_uri=REDIRECT, login_hint="ada.lovelace@contoso.com"
    )
    location = session.get(flow["auth_uri"], allow_redirects=False).headers["Location"]
    sim.inject_fault("id_token", claims={"iss": "https://evil.example/v2.0"})
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))
    assert result["id_token_claims"]["iss"] == "https://evil.example/v2.0"  # MSAL doesn't mind


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"claims": {"iss": "x"}, "colour": "red"}, "colour"),
        ({"claims": {"iss": "x"}, "status": 500}, "status"),
        ({"claims": ["iss"]}, "claims must be a JSON object"),
        ({"claims": "iss=x"}, "claims must be a JSON object"),
        ({"claims": {"iss": "x"}, "signature": "mine"}, "signature"),
        ({}, "needs claims"),
        ({"claims": {}}, "needs claims"),
        ({"claims": {"iss": "x"}, "target": "webapi"}, "entra"),
        ({"claims": {"iss": "x"}, "times": 0}, "times"),
        ({"claims": {"iss": "x"}, "times": 2, "count": 3}, "not both"),
    ],
)
def test_id_token_fault_validation(sim, control, body, words):
    resp = control.post("/faults", json={"kind": "id_token", **body})
    assert resp.status_code == 400, resp.text
    assert words in resp.json()["error"]
    assert control.get("/faults").json()["faults"] == []


def test_claims_and_signature_belong_to_id_token_only(sim, control):
    resp = control.post("/faults", json={"kind": "status", "claims": {"iss": "x"}})
    assert resp.status_code == 400
    assert "id_token" in resp.json()["error"]


# ---------------------------------------------------------------------- documentation


def test_help_and_readme_document_accounts_and_the_id_token_fault():
    result = subprocess.run(
        [sys.executable, "-m", "dataverse_sim", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 0
    readme = (ROOT / "dataverse_sim" / "README.md").read_text()
    for text in (
        "/_control/users/<id>/entra",
        '"account": "enabled"',
        "AADSTS50057",
        "AADSTS50034",
        '"kind": "id_token"',
        '"signature": "foreign"',
        '"times"',
    ):
        assert text in result.stdout, text
        assert text in readme, text
