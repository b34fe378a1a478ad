"""The audit trail: each admin action on the integration is recorded with who and when,
shown on the integration page and its own page, pruned with the sync history, and never
holds a secret's value."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm import schedule, webhooks
from learnexa.dynamics_crm.models import AuditEvent, DynamicsCrmSetting, SyncRun

ADMIN_PASSWORD = "a-long-test-password-1"
Action = AuditEvent.Action


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def events(action):
    return list(AuditEvent.objects.filter(action=action))


@pytest.mark.django_db
def test_starting_a_sync_is_recorded_with_its_kind_and_run(admin_client, setting, site_admin):
    admin_client.post(reverse("dynamics_crm:sync_now"), {"kind": "dry_run"})
    [event] = events(Action.SYNC_STARTED)
    run = SyncRun.objects.get(company=setting.company)
    assert event.run == run and run.dry_run
    assert event.details == {"kind": "dry_run"} and event.summary == "Dry run started."
    assert event.actor == site_admin and event.actor_email == "admin@acme.test"
    assert event.company == setting.company and event.at


@pytest.mark.django_db
def test_a_hold_decision_is_recorded_with_whom_it_covered(admin_client, setting, held_run):
    run, (person,) = held_run("leaver")
    change = person.sync_changes.get()
    admin_client.post(
        reverse("dynamics_crm:decide_holds"),
        {"decision": "approve", "change": change.pk, "confirm": "yes"},
    )
    [event] = events(Action.HOLD_APPROVED)
    assert event.details["emails"] == ["leaver@acme.test"] and event.details["count"] == 1
    assert event.run == run and event.actor_email == "admin@acme.test"

    run, (person,) = held_run("stays")
    change = person.sync_changes.get()
    admin_client.post(
        reverse("dynamics_crm:decide_held", args=[run.pk]),
        {"decision": "reject", "confirm": "yes", "through": change.pk},
    )
    [event] = events(Action.HOLD_REJECTED)
    assert event.details["emails"] == ["stays@acme.test"] and event.run == run


@pytest.mark.django_db
def test_disconnecting_is_recorded_naming_what_was_removed(admin_client, setting):
    admin_client.post(reverse("dynamics_crm:disconnect"))
    assert events(Action.DISCONNECTED) == []  # only the confirmation acts
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    [event] = events(Action.DISCONNECTED)
    assert event.details == {"removed": ["The client secret"]}


@pytest.mark.django_db
def test_resuming_the_schedule_is_recorded(admin_client, setting):
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(
        schedule_paused=True, consecutive_failures=5
    )
    admin_client.post(reverse("dynamics_crm:resume_schedule"))
    [event] = events(Action.SCHEDULE_RESUMED)
    assert event.actor_email == "admin@acme.test"
    setting.refresh_from_db()
    assert not setting.schedule_paused


@pytest.mark.django_db
def test_rotating_and_registering_the_webhook_are_recorded(admin_client, setting, simulator):
    admin_client.post(reverse("dynamics_crm:webhook_rotate"))
    assert events(Action.WEBHOOK_KEY_ROTATED) == []  # not confirmed: nothing rotated
    admin_client.post(reverse("dynamics_crm:webhook_rotate"), {"confirm": "yes"})
    assert len(events(Action.WEBHOOK_KEY_ROTATED)) == 1
    admin_client.post(reverse("dynamics_crm:webhook_register"))
    [event] = events(Action.WEBHOOK_REGISTERED)
    assert "3 steps" in event.summary
    # A failed registration is not an action taken.
    simulator.webhooks.set_privileges(register=False)
    admin_client.post(reverse("dynamics_crm:webhook_register"))
    assert len(events(Action.WEBHOOK_REGISTERED)) == 1


@pytest.mark.django_db
def test_signing_in_with_microsoft_is_recorded_as_connected(
    admin_client, company, connect, sim_browser
):
    setting = connect(company, credential_type=DynamicsCrmSetting.CredentialType.DELEGATED)
    auth_uri = admin_client.post(reverse("dynamics_crm:sign_in"))["Location"]
    answer = sim_browser.get(auth_uri, allow_redirects=False)
    callback = answer.headers["Location"].removeprefix("http://testserver")
    assert admin_client.get(callback).status_code == 302
    [event] = events(Action.CONNECTED)
    setting.refresh_from_db()
    assert setting.delegated_username and setting.delegated_username in event.summary
    assert event.run == SyncRun.objects.get(company=company)


@pytest.mark.django_db
def test_no_event_holds_a_secrets_value(admin_client, setting, simulator, held_run):
    held_run("leaver")
    admin_client.post(reverse("dynamics_crm:sync_now"), {"kind": "full"})
    admin_client.post(reverse("dynamics_crm:webhook_rotate"), {"confirm": "yes"})
    admin_client.post(reverse("dynamics_crm:webhook_register"))
    setting.refresh_from_db()
    secrets = [
        simulator.info["client_secret"],
        setting.client_secret_encrypted,
        webhooks.webhook_key(setting),
        setting.webhook_key_encrypted,
    ]
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    recorded = list(AuditEvent.objects.all())
    assert {e.action for e in recorded} >= {
        Action.SYNC_STARTED,
        Action.WEBHOOK_KEY_ROTATED,
        Action.WEBHOOK_REGISTERED,
        Action.DISCONNECTED,
    }
    for event in recorded:
        text = event.summary + json.dumps(event.details)
        for secret in secrets:
            assert secret and secret not in text, event.action


@pytest.mark.django_db
def test_the_trail_shows_on_the_integration_page_and_its_own_page(admin_client, setting):
    for i in range(12):
        AuditEvent.objects.create(
            company=setting.company,
            actor_email="admin@acme.test",
            action=Action.SYNC_STARTED,
            summary=f"Event number {i:02d}.",
        )
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "Admin actions" in page and "Event number 11." in page
    assert "Event number 01." not in page  # the latest 10 only
    assert f'href="{reverse("dynamics_crm:audit")}"' in page
    full = admin_client.get(reverse("dynamics_crm:audit")).content.decode()
    assert "Event number 00." in full and "Event number 11." in full

    # Another company's admin sees none of them.
    other = Company.objects.create(slug="other", name="Other")
    stranger = Client()
    stranger.force_login(User.objects.create_site_admin(other, "a@other.test", ADMIN_PASSWORD))
    assert "Event number" not in stranger.get(reverse("dynamics_crm:audit")).content.decode()


@pytest.mark.django_db
def test_the_audit_page_is_for_site_admins_only(client, company):
    assert client.get(reverse("dynamics_crm:audit")).status_code == 302
    client.force_login(User.objects.create(company=company, email="learner@acme.test"))
    assert client.get(reverse("dynamics_crm:audit")).status_code == 403


@pytest.mark.django_db
def test_events_are_pruned_with_the_sync_history(setting, settings):
    settings.LEARNEXA_SYNC_HISTORY_DAYS = 90
    old = AuditEvent.objects.create(company=setting.company, action=Action.SYNC_STARTED)
    recent = AuditEvent.objects.create(company=setting.company, action=Action.SYNC_STARTED)
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=91))
    AuditEvent.objects.filter(pk=recent.pk).update(at=timezone.now() - timedelta(days=89))
    schedule.prune_history()
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [recent.pk]
