"""Fixtures shared by the product's tests: an encryption key, companies and admins, and a
simulated Dynamics 365 organization served over real HTTPS on loopback."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

TEST_KEY = Fernet.generate_key().decode()
ADMIN_PASSWORD = "a-long-test-password-1"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.LEARNEXA_ENCRYPTION_KEYS = [TEST_KEY]
    # A fast hasher: the tests sign in often and prove nothing about hashing speed.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def simulator_state(tmp_path_factory):
    # One CA for the whole session; each test gets a fresh organization.
    return tmp_path_factory.mktemp("simulator")


@pytest.fixture
def simulator(simulator_state, settings):
    from dataverse_sim.server import Simulator

    sim = Simulator(users=250, seed=7, host="127.0.0.1", port=0, state_dir=simulator_state)
    sim.start()
    settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [
        sim.info["organization_uri"].removeprefix("https://")
    ]
    settings.LEARNEXA_DYNAMICS_CA_BUNDLE = sim.info["ca_bundle"]
    yield sim
    sim.stop()


@pytest.fixture
def company(db):
    from learnexa.accounts.models import Company

    return Company.objects.create(slug="acme", name="Acme")


@pytest.fixture
def site_admin(company):
    from learnexa.accounts.models import User

    return User.objects.create_site_admin(company, "admin@acme.test", ADMIN_PASSWORD)


@pytest.fixture
def connect(simulator):
    """Connect a company to the simulator, as the settings form would."""
    from learnexa.dynamics_crm.models import DynamicsCrmSetting

    def connect(company, **overrides):
        info = simulator.info
        setting = DynamicsCrmSetting(
            company=company,
            organization_uri=overrides.pop("organization_uri", info["organization_uri"]),
            authority_host=overrides.pop("authority_host", info["authority_host"]),
            tenant_id=overrides.pop("tenant_id", info["tenant_id"]),
            client_id=overrides.pop("client_id", info["client_id"]),
            **overrides,
        )
        setting.set_client_secret(info["client_secret"])
        setting.save()
        return setting

    return connect


@pytest.fixture
def setting(company, connect):
    return connect(company)
