"""Microsoft's Python SDK for Dataverse (PyPI ``powerplatform-dataverse-client``) against the
simulator over HTTPS, authenticated with a real token from the simulator's Entra ID.

The SDK builds its own ``requests.Session``, which honours ``REQUESTS_CA_BUNDLE``; the tests
point that variable at the simulator's CA. The token credential uses MSAL with its own
session (``verify=`` the CA, ``trust_env=False``), as the README describes.
"""

from __future__ import annotations

import time

import msal
import pytest
import requests

pytest.importorskip("PowerPlatform.Dataverse.client")

from azure.core.credentials import AccessToken, TokenCredential  # noqa: E402
from PowerPlatform.Dataverse.client import DataverseClient  # noqa: E402
from PowerPlatform.Dataverse.core.errors import HttpError  # noqa: E402

DAVID = "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80"


class MsalClientSecretCredential:
    """An ``azure.core`` ``TokenCredential`` that obtains tokens with MSAL's client
    credentials flow (MSAL caches them until shortly before they expire)."""

    def __init__(self, info: dict, ca_bundle: str) -> None:
        session = requests.Session()
        session.verify = ca_bundle
        session.trust_env = False
        self.calls: list[tuple[str, ...]] = []
        self.app = msal.ConfidentialClientApplication(
            info["client_id"],
            client_credential=info["client_secret"],
            authority=f"{info['authority_host']}/{info['tenant_id']}",
            instance_discovery=False,
            http_client=session,
        )

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls.append(scopes)
        result = self.app.acquire_token_for_client(scopes=list(scopes))
        if "access_token" not in result:
            raise RuntimeError(f"{result.get('error')}: {result.get('error_description')}")
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))


@pytest.fixture
def credential(sim):
    return MsalClientSecretCredential(sim.info, sim.info["ca_bundle"])


@pytest.fixture
def client(sim, credential, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.info["ca_bundle"])
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with DataverseClient(sim.info["organization_uri"], credential) as dv:
        yield dv


def test_credential_is_a_token_credential_with_a_real_token(sim, credential):
    assert isinstance(credential, TokenCredential)
    token = credential.get_token(f"{sim.info['organization_uri']}/.default")
    assert token.token.count(".") == 2 and token.expires_on > time.time() + 3000


def test_list_pages_returns_every_user_once(sim, client, credential):
    pages = [
        list(page)
        for page in client.records.list_pages(
            "systemuser", select=["fullname", "internalemailaddress"], page_size=40
        )
    ]
    total = sim.store.count_users()
    assert len(pages) == -(-total // 40) >= 6
    assert all(len(p) == 40 for p in pages[:-1])
    ids = [r["systemuserid"] for p in pages for r in p]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {u["systemuserid"] for u in sim.store.users()}
    # the SDK asked for a token for the organization's .default scope
    assert (f"{sim.info['organization_uri']}/.default",) in credential.calls


def test_filtered_list(sim, client):
    result = client.records.list(
        "systemuser",
        filter="isdisabled eq false and applicationid eq null",
        select=["fullname", "isdisabled"],
        page_size=25,
    )
    expected = {
        u["systemuserid"]
        for u in sim.store.users()
        if not u["isdisabled"] and u["applicationid"] is None
    }
    assert {r["systemuserid"] for r in result} == expected


def test_get_one_user_by_id(client):
    record = client.records.retrieve("systemuser", DAVID, select=["fullname", "isdisabled"])
    assert record["fullname"] == "David So (Sample Data)"
    assert record["isdisabled"] is True
    assert record.etag == 'W/"987803"'
    assert client.records.retrieve("systemuser", "00000000-1111-2222-3333-444444444444") is None


def test_update_is_visible_in_the_store(sim, client):
    user = next(u for u in sim.store.users() if u["internalemailaddress"] == "john_doe@contoso.com")
    before = user["versionnumber"]
    client.records.update("systemuser", user["systemuserid"], {"jobtitle": "Learning Lead"})
    stored = sim.get_user(user["systemuserid"])
    assert stored["jobtitle"] == "Learning Lead"
    assert stored["versionnumber"] > before


def test_updating_a_missing_user_is_a_404_http_error(client):
    with pytest.raises(HttpError) as info:
        client.records.update(
            "systemuser", "00000000-1111-2222-3333-444444444444", {"jobtitle": "x"}
        )
    err = info.value
    assert err.status_code == 404
    assert err.details["service_error_code"] == "0x80040217"
    assert not err.is_transient


def test_429_is_a_transient_http_error_with_retry_after(sim, client):
    client.records.retrieve("systemuser", DAVID, select=["fullname"])  # metadata is now cached
    sim.set_limits(requests=1, window_seconds=60)
    client.records.retrieve("systemuser", DAVID, select=["fullname"])
    with pytest.raises(HttpError) as info:
        client.records.retrieve("systemuser", DAVID, select=["fullname"])
    err = info.value
    assert err.status_code == 429
    assert err.is_transient
    assert err.details["service_error_code"] == "0x80072322"
    assert isinstance(err.details["retry_after"], int) and 1 <= err.details["retry_after"] <= 60
    assert "Number of requests exceeded the limit of 1 over time window of 60 seconds." in str(
        err.message
    )


def test_injected_429_carries_the_requested_retry_after(sim, client):
    client.records.retrieve("systemuser", DAVID, select=["fullname"])
    sim.inject_fault("status", status=429, count=1, retry_after=7)
    with pytest.raises(HttpError) as info:
        client.records.retrieve("systemuser", DAVID, select=["fullname"])
    assert info.value.details["retry_after"] == 7
    assert info.value.details["service_error_code"] == "0x80072322"
    # the SDK does not retry by itself; the next call succeeds
    assert client.records.retrieve("systemuser", DAVID, select=["fullname"])["fullname"]
