"""Fixtures for the simulator's own tests: one simulator for the session, reset after each
test, and HTTPS clients that trust its CA explicitly (the environment's CA variables point
elsewhere)."""

from __future__ import annotations

import ssl

import httpx
import pytest
import requests

from dataverse_sim.server import Simulator

API = "/api/data/v9.2"


@pytest.fixture(autouse=True)
def _test_settings():
    """Replaces the product-wide autouse fixture of the same name, which needs Django: the
    simulator's tests must run with or without the Django plugin."""
    yield


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("simulator-state")


@pytest.fixture(scope="session")
def sim(state_dir):
    simulator = Simulator(users=250, seed=1, host="127.0.0.1", port=0, state_dir=state_dir)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _fresh_organization(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


@pytest.fixture(scope="session")
def ssl_context(sim) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sim.info["ca_bundle"])


@pytest.fixture(scope="session")
def requests_session(sim) -> requests.Session:
    session = requests.Session()
    session.verify = sim.info["ca_bundle"]
    session.trust_env = False
    return session


def fetch_token(sim, ssl_context, secret: str | None = None) -> str:
    info = sim.info
    resp = httpx.post(
        f"{info['authority_host']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": secret or info["client_secret"],
            "scope": f"{info['organization_uri']}/.default",
        },
        verify=ssl_context,
    )
    resp.raise_for_status()
    return resp.json()["access_token"]


@pytest.fixture
def new_token(sim, ssl_context):
    """A function that fetches a fresh access token from the token endpoint."""
    return lambda secret=None: fetch_token(sim, ssl_context, secret)


@pytest.fixture(scope="session")
def token(sim, ssl_context) -> str:
    return fetch_token(sim, ssl_context)


@pytest.fixture
def anon(sim, ssl_context):
    with httpx.Client(base_url=sim.info["organization_uri"], verify=ssl_context) as client:
        yield client


@pytest.fixture
def api(sim, ssl_context, token):
    """An httpx client for the Web API with a valid bearer token and the usual headers."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }
    with httpx.Client(
        base_url=sim.info["organization_uri"] + API, verify=ssl_context, headers=headers
    ) as client:
        yield client


@pytest.fixture
def control(sim, ssl_context):
    headers = {"Authorization": f"Bearer {sim.info['control_token']}"}
    with httpx.Client(base_url=sim.info["control_url"], verify=ssl_context, headers=headers) as c:
        yield c
