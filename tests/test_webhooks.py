"""The webhook receiver, the integration page's section, registration in Dynamics, and a
change travelling from the simulator to a synced user in seconds."""

from __future__ import annotations

import json
import logging
import ssl
import time
from datetime import timedelta

import httpx
import pytest
from django.core.management import call_command
from django.urls import reverse

from learnexa.accounts.models import User
from learnexa.dynamics_crm import webhooks
from learnexa.dynamics_crm.diagnostics import test_connection as check_connection
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun, WebhookCounter

ORG = "0a0b0c0d-2222-4e5f-8a9b-0c1d2e3f4a5b"
USER_ID = "5f1c0a7e-1111-4c2d-9e01-2b3c4d5e6f70"


def context(org=ORG, entity="systemuser", message="Update", attributes=None):
    """A RemoteExecutionContext as Dataverse posts it (trimmed)."""
    return {
        "MessageName": message,
        "PrimaryEntityName": entity,
        "PrimaryEntityId": USER_ID,
        "Stage": 40,
        "Mode": 1,
        "Depth": 1,
        "OrganizationId": org,
        "InputParameters": [
            {
                "key": "Target",
                "value": {
                    "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "LogicalName": entity,
                    "Id": USER_ID,
                    "Attributes": [
                        {"key": k, "value": v}
                        for k, v in (attributes or {"isdisabled": True}).items()
                    ],
                },
            }
        ],
    }


@pytest.fixture
def hook(company):
    """A company with a webhook key and a known organization id (no Dynamics needed)."""
    setting = DynamicsCrmSetting.objects.create(
        company=company,
        organization_uri="https://acme.crm.dynamics.com",
        tenant_id="acme.onmicrosoft.com",
        client_id="d0835aea-3d68-462f-91a7-38edbbe4ab6f",
        organization_id=ORG,
    )
    setting.set_client_secret("a-client-secret")
    setting.save()
    webhooks.ensure_key(setting)
    return setting


def call(client, setting, body=None, *, code=None, raw=None, webhook_id=None, **headers):
    url = reverse("dynamics_crm:webhook", kwargs={"webhook_id": webhook_id or setting.webhook_id})
    key = webhooks.webhook_key(setting) if code is None else code
    data = raw if raw is not None else json.dumps(body if body is not None else context())
    return client.post(
        f"{url}?code={key}", data=data, content_type="application/json", headers=headers
    )


def queued(setting):
    return SyncRun.objects.filter(setting=setting, status=SyncRun.Status.QUEUED)


def counter(setting):
    return WebhookCounter.objects.get(setting=setting)


def test_a_valid_call_queues_one_change_only_sync(client, hook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = call(client, hook)
    assert response.status_code == 204
    run = queued(hook).get()
    assert run.trigger == webhooks.TRIGGER and not run.full and not run.dry_run
    assert run.task_id  # on the task queue for a worker
    assert counter(hook).received == 1 and counter(hook).last_event_at is not None


def test_a_thousand_calls_make_at_most_two_runs(client, hook):
    statuses = {call(client, hook).status_code for _ in range(1000)}
    assert statuses == {204}
    assert queued(hook).count() <= 2
    assert SyncRun.objects.filter(setting=hook).count() <= 2
    assert counter(hook).received == 1000


@pytest.fixture
def request_log():
    """What Django's request logger writes (it logs each 4xx with its path)."""
    logger = logging.getLogger("django.request")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_wrong_key_or_an_unknown_address_is_401_and_leaves_no_trace(client, hook, request_log):
    assert call(client, hook, code="not-the-key").status_code == 401
    assert call(client, hook, code="").status_code == 401
    unknown = call(client, hook, webhook_id="0" * 32)
    assert unknown.status_code == 401  # indistinguishable from a wrong key
    assert not SyncRun.objects.exists()
    assert counter(hook).received == counter(hook).refused == 0
    assert counter(hook).last_event_at is None
    assert request_log == []  # not even Django's "Unauthorized: /path" line
    get = client.get(reverse("dynamics_crm:webhook", kwargs={"webhook_id": hook.webhook_id}))
    assert get.status_code == 405


def test_another_organization_is_ignored(client, hook):
    response = call(client, hook, context(org="11111111-2222-3333-4444-555555555555"))
    assert response.status_code == 202
    assert not SyncRun.objects.exists()
    assert counter(hook).ignored == 1 and counter(hook).received == 0


def test_a_disconnected_company_queues_nothing(client, hook):
    hook.forget_credentials()
    hook.save()
    response = call(client, hook)
    assert response.status_code == 202
    assert not SyncRun.objects.exists()
    assert counter(hook).ignored == 1 and counter(hook).received == 0


def test_another_table_is_ignored(client, hook):
    assert call(client, hook, context(entity="contact")).status_code == 202
    assert call(client, hook, context(entity="account")).status_code == 202
    # The header naming another table than the body is ignored too.
    mixed = call(client, hook, context(), **{"x-ms-dynamics-entity-name": "contact"})
    assert mixed.status_code == 202
    assert not SyncRun.objects.exists()
    assert counter(hook).ignored == 3


def test_contacts_are_the_table_when_contacts_are_synced(client, hook):
    DynamicsCrmSetting.objects.filter(pk=hook.pk).update(source_table="contacts")
    assert call(client, hook, context(entity="systemuser")).status_code == 202
    assert call(client, hook, context(entity="contact")).status_code == 204


def test_an_oversized_body_is_413(client, hook):
    big = json.dumps({**context(), "Padding": "x" * (webhooks.MAX_BODY_BYTES + 10)})
    assert call(client, hook, raw=big).status_code == 413
    assert not SyncRun.objects.exists()
    assert counter(hook).refused == 1


def test_a_body_that_is_not_json_is_400(client, hook):
    assert call(client, hook, raw="<xml/>").status_code == 400
    assert not SyncRun.objects.exists()


def test_a_flood_is_429(client, hook, settings):
    settings.LEARNEXA_WEBHOOK_MAX_PER_MINUTE = 5
    answers = [call(client, hook).status_code for _ in range(7)]
    assert answers == [204] * 5 + [429] * 2
    assert call(client, hook)["Retry-After"] == "60"
    assert counter(hook).received == 5 and counter(hook).refused == 3
    # The next minute is counted afresh.
    started = counter(hook).window_started_at
    WebhookCounter.objects.filter(setting=hook).update(
        window_started_at=started - timedelta(minutes=1, seconds=1)
    )
    assert call(client, hook).status_code == 204


def test_a_rotated_key_replaces_the_old_one(client, hook, site_admin):
    old = webhooks.webhook_key(hook)
    client.force_login(site_admin)
    # Without the confirmation nothing changes.
    client.post(reverse("dynamics_crm:webhook_rotate"))
    hook.refresh_from_db()
    assert webhooks.webhook_key(hook) == old
    client.post(reverse("dynamics_crm:webhook_rotate"), {"confirm": "yes"})
    hook.refresh_from_db()
    new = webhooks.webhook_key(hook)
    assert new != old and old not in hook.webhook_key_encrypted
    client.logout()
    assert call(client, hook, code=old).status_code == 401
    assert call(client, hook, code=new).status_code == 204


def test_nothing_from_a_body_is_written_to_users(client, hook, site_admin):
    learner = User.objects.create(
        company=hook.company,
        email="ada@acme.test",
        first_name="Ada",
        dynamics_systemuser_id=USER_ID,
    )
    before = list(User.objects.order_by("pk").values())
    forged = context(
        message="Create",
        attributes={"firstname": "Mallory", "internalemailaddress": "mallory@evil.test"},
    )
    for message in ("Create", "Update", "Delete"):
        assert call(client, hook, {**forged, "MessageName": message}).status_code == 204
    assert list(User.objects.order_by("pk").values()) == before
    learner.refresh_from_db()
    assert learner.first_name == "Ada" and learner.is_active


def test_the_integration_page_shows_the_address_and_key_to_site_admins(client, hook, site_admin):
    client.force_login(site_admin)
    page = client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "Changes in seconds (webhook)" in page
    assert f"/dynamics_crm/webhook/{hook.webhook_id}/" in page
    key = webhooks.webhook_key(hook)
    # Only its end; the key itself is one button away.
    assert key not in page and f"…{key[-4:]}</code>" in page and "Show the key" in page
    assert "Register New Web Hook" in page and "port 443" in page
    assert "None yet" in page
    call(client, hook)
    assert "None yet" not in client.get(reverse("dynamics_crm:integration")).content.decode()


def test_the_key_is_shown_on_a_page_no_cache_keeps_and_the_showing_is_recorded(
    client, hook, site_admin
):
    from learnexa.dynamics_crm.models import AuditEvent

    url = reverse("dynamics_crm:webhook_show_key")
    client.force_login(site_admin)
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 200
    assert (
        f'<code id="webhook-key">{webhooks.webhook_key(hook)}</code>' in response.content.decode()
    )
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.get(company=hook.company)
    assert (event.action, event.actor) == (AuditEvent.Action.WEBHOOK_KEY_SHOWN, site_admin)
    assert webhooks.webhook_key(hook) not in str(event.details) + event.summary


def test_a_learner_or_an_anonymous_visitor_cannot_see_the_key(client, hook):
    from learnexa.accounts.models import User

    url = reverse("dynamics_crm:webhook_show_key")
    key = webhooks.webhook_key(hook)
    anonymous = client.post(url)
    assert anonymous.status_code in (302, 403) and key not in anonymous.content.decode()
    client.force_login(User.objects.create(company=hook.company, email="learner@acme.test"))
    learner = client.post(url)
    assert learner.status_code in (302, 403) and key not in learner.content.decode()


def test_the_organization_id_is_learnt_at_the_connection_test(setting, simulator):
    from dataverse_sim.layout import ORGANIZATION_ID

    assert setting.organization_id == ""
    assert all(check.ok for check in check_connection(setting))
    setting.refresh_from_db()
    assert setting.organization_id == ORGANIZATION_ID.lower()


def test_the_receiver_learns_the_organization_id_lazily(client, setting, simulator):
    from dataverse_sim.layout import ORGANIZATION_ID

    webhooks.ensure_key(setting)
    assert call(client, setting, context(org=ORGANIZATION_ID)).status_code == 204
    setting.refresh_from_db()
    assert setting.organization_id == ORGANIZATION_ID.lower()
    assert call(client, setting, context(org=ORG)).status_code == 202


# -- registration in Dynamics ------------------------------------------------------------


def test_register_automatically_creates_the_endpoint_and_steps(setting, simulator):
    address = "https://learnexa.example.org/dynamics_crm/webhook/x/"
    done = webhooks.register(setting, address)
    found = simulator.webhooks.registrations()
    [endpoint] = found["serviceendpoints"]
    assert endpoint["serviceendpointid"] == done["endpoint"] == setting.webhook_endpoint_id
    assert (endpoint["contract"], endpoint["authtype"], endpoint["url"]) == (8, 4, address)
    assert endpoint["messageformat"] == 2 and endpoint["isauthvalueset"]
    assert simulator.webhooks._authvalues[endpoint["serviceendpointid"]] == webhooks.webhook_key(
        setting
    )
    steps = found["sdkmessageprocessingsteps"]
    assert sorted(s["message"] for s in steps) == ["Create", "Delete", "Update"]
    assert {(s["stage"], s["mode"], s["primaryobjecttypecode"]) for s in steps} == {
        (40, 1, "systemuser")
    }
    assert all(s["_eventhandler_value"] == done["endpoint"] for s in steps)
    update = next(s for s in steps if s["message"] == "Update")
    assert "isdisabled" in update["filteringattributes"].split(",")

    # Registering again replaces rather than adds.
    webhooks.register(setting, address)
    again = simulator.webhooks.registrations()
    assert len(again["serviceendpoints"]) == 1 and len(again["sdkmessageprocessingsteps"]) == 3


def test_registration_without_the_privilege_says_what_to_add(
    client, setting, simulator, site_admin
):
    simulator.webhooks.set_privileges(register=False)
    with pytest.raises(webhooks.RegistrationError) as raised:
        webhooks.register(setting, "https://learnexa.example.org/hook/")
    message = str(raised.value)
    assert "prvCreateServiceEndpoint" in message and "System Customizer" in message
    assert "0x80040220" in message

    # Allowed to create the endpoint but not the steps: nothing half-made stays behind.
    simulator.webhooks.set_privileges(deny=["prvCreateSdkMessageProcessingStep"])
    client.force_login(site_admin)
    page = client.post(reverse("dynamics_crm:webhook_register"), follow=True).content.decode()
    assert "prvCreateSdkMessageProcessingStep" in page and "Sdk Message Processing Step" in page
    assert simulator.webhooks.registrations() == {
        "serviceendpoints": [],
        "sdkmessageprocessingsteps": [],
    }
    setting.refresh_from_db()
    assert setting.webhook_endpoint_id == ""


# -- end to end ----------------------------------------------------------------------------


def _control(sim, method, path, body=None):
    info = sim.info
    response = httpx.request(
        method,
        f"{info['control_url']}/{path}",
        json=body,
        headers={"Authorization": f"Bearer {info['control_token']}"},
        verify=ssl.create_default_context(cafile=info["ca_bundle"]),
    )
    response.raise_for_status()
    return response.json() if response.content else None


def _work():
    call_command("worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_a_change_in_dynamics_reaches_the_user_through_the_webhook(
    live_server, company, connect, simulator
):
    setting = connect(company)
    from learnexa.dynamics_crm.jobs import enqueue_sync

    enqueue_sync(setting, SyncRun.Trigger.MANUAL, full=True)
    _work()
    learner = User.objects.filter(company=company, dynamics_systemuser_id__isnull=False).first()
    assert learner is not None and learner.first_name != "Webhooked"

    setting.refresh_from_db()
    webhooks.ensure_key(setting)
    path = reverse("dynamics_crm:webhook", kwargs={"webhook_id": setting.webhook_id})
    webhooks.register(setting, f"{live_server.url}{path}")
    assert not queued(setting).exists()

    _control(
        simulator, "PATCH", f"users/{learner.dynamics_systemuser_id}", {"firstname": "Webhooked"}
    )
    deadline = time.monotonic() + 5
    while not queued(setting).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    [delivery] = _control(simulator, "GET", "webhooks/deliveries")["deliveries"]
    assert (delivery["status"], delivery["message"], delivery["statuscode"]) == (204, "Update", 30)
    run = queued(setting).get()
    assert run.trigger == webhooks.TRIGGER and not run.full

    _work()
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    learner.refresh_from_db()
    assert learner.first_name == "Webhooked"
    assert counter(setting).received == 1
