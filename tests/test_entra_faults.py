"""Entra ID failing, each way the simulator can make it fail, seen from every place that asks
it for a token: a background sync, `learnexa dynamics sync`, Test connection, Look up one
person and the mapping page's preview. Each either succeeds after retrying, or fails at
once (or after its retries) with a message that says what to check; no page answers 500
and the command prints one line. And the app's secret goes only to the authority: never
after a redirect, never to a token endpoint that discovery put on another host, never to
an authority the operator has since disallowed."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.urls import reverse

from learnexa.dynamics_crm import diagnostics
from learnexa.dynamics_crm.lookup import lookup_person
from learnexa.dynamics_crm.mapping import Mapping
from learnexa.dynamics_crm.mapping_views import _dynamics
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.sync import execute_run

MANY = 10_000  # a fault that lasts for the whole test


@dataclass(frozen=True)
class Fault:
    faults: tuple[dict, ...]
    # None: the call succeeds, after retrying where needed; else what the message says.
    message: str | None = None
    retryable: bool = False


def entra(kind: str, **options) -> dict:
    return {"kind": kind, "target": "entra", "count": MANY, **options}


FAULTS = {
    "connection refused": Fault(
        ({"kind": "refuse", "count": MANY},), "couldn't be reached", retryable=True
    ),
    "connection reset": Fault((entra("reset"),), "couldn't be reached", retryable=True),
    "reset once": Fault((entra("reset", count=1),)),
    "slow answer": Fault((entra("slow", count=1, seconds=0.3),)),
    "answer too slow": Fault((entra("slow", seconds=2),), "no answer in time", retryable=True),
    "HTTP 503": Fault((entra("status", status=503),), "kept failing with HTTP 503", retryable=True),
    "HTTP 500 once": Fault((entra("status", status=500, count=1),)),
    "HTTP 429 once": Fault((entra("status", status=429, retry_after=1, count=1),)),
    "HTTP 429 storm": Fault(
        (entra("status", status=429, retry_after=0),), "kept throttling", retryable=True
    ),
    "untrusted certificate": Fault(
        ({"kind": "untrusted_certificate", "count": MANY},), "isn't trusted"
    ),
    "discovery points elsewhere": Fault(
        (entra("discovery_elsewhere"),), "Refused to send the app's credentials"
    ),
    "redirect from the token endpoint": Fault(
        (entra("redirect", path_contains="/token"),), "it was not followed"
    ),
    "tenant not found": Fault((entra("tenant_not_found"),), "Entra ID has no tenant"),
    "app disabled": Fault((entra("app_disabled"),), "The application is disabled"),
}


@pytest.fixture(autouse=True)
def _quick(settings):
    # "answer too slow" waits for this; a second leaves a loaded machine time for the rest.
    settings.LEARNEXA_DYNAMICS_TIMEOUT = 1


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def inject(simulator, fault: Fault) -> None:
    for options in fault.faults:
        options = dict(options)
        simulator.inject_fault(options.pop("kind"), **options)


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


def assert_page_says(fault: Fault, response) -> None:
    """The page answers 200 and, while the fault lasts, shows its message."""
    page = text(response)
    if fault.message and fault.faults[0]["count"] == MANY:
        assert fault.message in page


def assert_outcome(fault: Fault, error: str) -> None:
    if fault.message is None:
        assert not error, error
    else:
        assert fault.message in error, error


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAULTS)
def test_a_background_sync(name, setting, simulator):
    fault = FAULTS[name]
    inject(simulator, fault)
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.SCHEDULE
    )

    execute_run(run)

    assert_outcome(fault, run.error)
    setting.refresh_from_db()
    if fault.message is None:
        assert run.status == SyncRun.Status.SUCCEEDED and run.created > 0
        return
    assert run.status == SyncRun.Status.FAILED
    assert setting.status == DynamicsCrmSetting.Status.ERROR and setting.last_error == run.error
    # A transient failure is retried later, from the checkpoint, and doesn't count towards
    # pausing the schedule; a permanent one waits for the admin.
    assert run.will_retry is fault.retryable
    assert setting.consecutive_failures == (0 if fault.retryable else 1)


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAULTS)
def test_the_sync_command(name, setting, simulator, capsys):
    fault = FAULTS[name]
    inject(simulator, fault)

    error = ""
    try:
        call_command("dynamics", "sync", "acme", "--json")
    except CommandError as exc:
        error = str(exc)

    assert_outcome(fault, error)
    assert "\n" not in error and "Traceback" not in capsys.readouterr().err


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAULTS)
def test_test_connection(name, setting, simulator, admin_client):
    fault = FAULTS[name]
    inject(simulator, fault)

    checks = diagnostics.test_connection(setting)

    failed = [c for c in checks if not c.ok]
    assert_outcome(fault, failed[0].detail if failed else "")
    if failed:
        assert failed[0].name == "Sign in to Entra ID"
    assert_page_says(fault, admin_client.post(reverse("dynamics_crm:test_connection")))


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAULTS)
def test_look_up_one_person(name, setting, simulator, admin_client):
    fault = FAULTS[name]
    inject(simulator, fault)
    email = "target.person@example.com"
    simulator.create_user(firstname="Target", lastname="Person", internalemailaddress=email)

    result = lookup_person(setting, email)

    assert_outcome(fault, result.error)
    if fault.message is None:
        assert len(result.records) == 1
    assert_page_says(fault, admin_client.post(reverse("dynamics_crm:lookup"), {"email": email}))


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAULTS)
def test_the_mapping_preview(name, setting, simulator, admin_client):
    fault = FAULTS[name]
    inject(simulator, fault)

    units, sample, error = _dynamics(setting, Mapping.for_setting(setting))

    assert_outcome(fault, error)
    if fault.message is None:
        assert units and sample
    assert_page_says(fault, admin_client.get(reverse("dynamics_crm:mapping")))


# -- where the secret goes ----------------------------------------------------------------


def credentials_sent(simulator) -> list[dict]:
    """Requests that carried the app's secret or assertion, wherever they arrived."""
    return [r for r in simulator.request_log() if r.get("credential")]


@pytest.mark.django_db
def test_a_redirect_from_the_token_endpoint_is_not_followed(setting, simulator):
    simulator.inject_fault("redirect", count=MANY, target="entra", path_contains="/token")
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.SCHEDULE
    )

    execute_run(run)

    assert run.status == SyncRun.Status.FAILED and "redirect" in run.error
    sent = credentials_sent(simulator)
    assert len(sent) == 1 and sent[0]["status"] == 307  # the one redirected, not re-sent
    assert not [r for r in simulator.request_log() if "/redirected" in r["path"]]


@pytest.mark.django_db
def test_a_token_endpoint_on_another_host_gets_nothing(setting, simulator):
    simulator.inject_fault("discovery_elsewhere", count=MANY, target="entra")
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.SCHEDULE
    )

    execute_run(run)

    assert run.status == SyncRun.Status.FAILED and "localhost" in run.error
    assert credentials_sent(simulator) == []
    assert [r for r in simulator.request_log() if "openid-configuration" in r["path"]]


@pytest.mark.django_db
def test_an_authority_no_longer_allowed_gets_nothing_and_the_admin_can_still_act(
    settings, company, connect, simulator, admin_client
):
    port = simulator.port
    organization = f"127.0.0.1:{port}"
    settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [organization, f"localhost:{port}"]
    setting = connect(company, authority_host=f"https://localhost:{port}")
    # The operator narrows the allowed hosts, or a worker runs with other settings.
    settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = [organization]
    simulator.clear_request_log()
    run = SyncRun.objects.create(setting=setting, company=company, trigger=SyncRun.Trigger.MANUAL)

    execute_run(run)

    assert run.status == SyncRun.Status.FAILED
    assert "no longer allowed on this server" in run.error and "localhost" in run.error
    assert [r for r in simulator.request_log() if r.get("kind") != "webapi"] == []
    setting.refresh_from_db()
    assert setting.status == DynamicsCrmSetting.Status.ERROR
    assert setting.last_error == run.error
    # The page says so, and Resume and Disconnect still work.
    assert "no longer allowed" in text(admin_client.get(reverse("dynamics_crm:integration")))
    assert admin_client.post(reverse("dynamics_crm:resume_schedule")).status_code == 302
    disconnect = reverse("dynamics_crm:disconnect")
    assert "Disconnect" in text(admin_client.post(disconnect))  # the confirmation step
    assert admin_client.post(disconnect, {"confirm": "yes"}).status_code == 302
    setting.refresh_from_db()
    assert not setting.has_client_secret


@pytest.mark.django_db
def test_an_organization_no_longer_allowed_is_a_recorded_failure(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS = []
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.SCHEDULE
    )

    execute_run(run)

    assert run.status == SyncRun.Status.FAILED
    assert "no longer allowed on this server" in run.error
    assert simulator.request_log() == []
    setting.refresh_from_db()
    assert setting.status == DynamicsCrmSetting.Status.ERROR


@pytest.mark.django_db
def test_a_secret_under_a_removed_key_says_which_setting_to_fix(settings, setting, simulator):
    settings.LEARNEXA_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.SCHEDULE
    )

    execute_run(run)

    assert run.status == SyncRun.Status.FAILED
    assert "LEARNEXA_ENCRYPTION_KEYS" in run.error and "unexpected" not in run.error
    assert credentials_sent(simulator) == []
