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
    # Retries after a 5xx or a network error back off from 10 ms, not a second.
    settings.LEARNEXA_DYNAMICS_BACKOFF_SECONDS = 0.01


@pytest.fixture(autouse=True)
def _links_sent_at_once(monkeypatch):
    """Links to set a password are emailed by a worker; here, at once, so that a test reads
    them in mail.outbox (test_invitations.py checks the worker's way)."""
    from learnexa.accounts import invitations

    monkeypatch.setattr(invitations, "deliver", invitations.email_links.call)


@pytest.fixture(scope="session")
def simulator_state(tmp_path_factory):
    # One CA for the whole session; each test gets a fresh organization.
    return tmp_path_factory.mktemp("simulator")


@pytest.fixture
def make_simulator(simulator_state, settings):
    """Start a simulated organization (options as dataverse_sim.server.Simulator takes
    them) that the product trusts and may send tokens to; stopped after the test."""
    from dataverse_sim.server import Simulator

    started = []

    def make(**options):
        options = {"users": 250, "seed": 7, **options}
        sim = Simulator(host="127.0.0.1", port=0, state_dir=simulator_state, **options)
        sim.start()
        started.append(sim)
        settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [
            s.info["organization_uri"].removeprefix("https://") for s in started
        ]
        settings.LEARNEXA_DYNAMICS_CA_BUNDLE = sim.info["ca_bundle"]
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(make_simulator):
    return make_simulator()


@pytest.fixture
def sim_browser(simulator):
    """What a person's browser does at the simulated Microsoft sign-in: an HTTPS client
    trusting the simulator, which doesn't follow redirects unless told to."""
    import requests

    session = requests.Session()
    session.verify = simulator.info["ca_bundle"]
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture
def company(db):
    from learnexa.accounts.models import Company

    return Company.objects.create(slug="acme", name="Acme")


@pytest.fixture
def site_admin(company):
    from learnexa.accounts.models import User

    return User.objects.create_site_admin(company, "admin@acme.test", ADMIN_PASSWORD)


@pytest.fixture
def connect(request):
    """Connect a company to a simulator (the test's `simulator` unless given), as the
    settings form would."""
    from learnexa.demo.simulator import connect_company

    def connect(company, sim=None, **overrides):
        return connect_company(
            company, (sim or request.getfixturevalue("simulator")).info, **overrides
        )

    return connect


@pytest.fixture
def setting(company, connect):
    return connect(company)


@pytest.fixture
def connection_form():
    """The integration form's fields as a browser posts them: the defaults, then yours."""

    def form(**fields):
        return {
            "authority_host": "https://login.microsoftonline.com",
            "sync_frequency": "weekly",
            "sync_time": "02:00",
            "sync_weekday": "0",
            "sync_monthday": "1",
            "full_sync_interval_days": "7",
            "create_users": "on",
            "deactivate_missing": "on",
            "deactivation_limit_count": "20",
            "deactivation_limit_percent": "10",
            **fields,
        }

    return form


@pytest.fixture
def queued_job(db):
    """Put a sync job in the queue, waiting since `minutes` ago."""
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult, get_date_max

    def queue(minutes: float) -> None:
        job = DBTaskResult.objects.create(
            task_path="learnexa.dynamics_crm.jobs.sync_company",
            args_kwargs={"args": [1], "kwargs": {}},
            backend_name="default",
            queue_name="default",
            run_after=get_date_max(),
        )
        DBTaskResult.objects.filter(pk=job.pk).update(
            enqueued_at=timezone.now() - timedelta(minutes=minutes)
        )

    return queue


@pytest.fixture
def held_run(setting):
    """Make a sync of `setting` that holds the deactivation of one learner per name
    (name@acme.test, last name Leaver), finished `days_ago`: returns (run, learners)."""
    from datetime import timedelta

    from django.utils import timezone

    from learnexa.accounts.models import User
    from learnexa.dynamics_crm.models import SyncChange, SyncRun

    def make(*names, days_ago=0):
        finished = timezone.now() - timedelta(days=days_ago)
        run = SyncRun.objects.create(
            setting=setting, company=setting.company, trigger="schedule", status="succeeded"
        )
        SyncRun.objects.filter(pk=run.pk).update(
            hold="held", held=len(names), queued_at=finished, finished_at=finished
        )
        run.refresh_from_db()
        people = []
        for name in names:
            person = User.objects.create(
                company=setting.company,
                email=f"{name}@acme.test",
                first_name=name.title(),
                last_name="Leaver",
            )
            SyncChange.objects.create(
                run=run,
                user=person,
                email=person.email,
                action="deactivated",
                pending=True,
                reason="No longer in Dynamics (deleted, or out of the sync's scope).",
            )
            people.append(person)
        return run, people

    return make
