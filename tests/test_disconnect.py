"""Disconnect: confirmed first, then a page that says disconnected and offers no sync that
would only fail."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.mark.django_db
def test_disconnect_asks_for_confirmation_first(admin_client, setting):
    response = admin_client.post(reverse("dynamics_crm:disconnect"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Disconnect from Dynamics 365?" in page and "The client secret" in page
    assert 'name="confirm" value="yes"' in page and "Cancel" in page
    setting.refresh_from_db()
    assert setting.has_client_secret and setting.status != "disconnected"


@pytest.mark.django_db
def test_after_disconnecting_the_page_says_so_and_offers_no_sync(admin_client, setting):
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(status="ok")
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    setting.refresh_from_db()
    assert setting.status == DynamicsCrmSetting.Status.DISCONNECTED
    assert not setting.has_credential and setting.next_sync_at is None

    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert '<span class="badge disconnected">Disconnected</span>' in page
    assert ">Connected<" not in page
    assert "Connect again to sync: no credential is saved." in page
    for label in (
        "Sync now",
        "Dry run",
        "Full resync",
        "Test connection",
        "Register automatically",
    ):
        button = page[: page.index(f">{label}</button>")]
        assert button[button.rindex("<button") :].count("disabled") == 1, label
    dashboard = admin_client.get(reverse("manage_site:dashboard")).content.decode()
    assert "Disconnected" in dashboard


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["sync", "dry_run", "full"])
def test_no_sync_is_queued_without_a_credential(admin_client, setting, kind):
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    response = admin_client.post(reverse("dynamics_crm:sync_now"), {"kind": kind}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Connect again to sync: no credential is saved." in page
    assert not SyncRun.objects.filter(company=setting.company).exists()
    # No failed run, so no failure banner on every page.
    assert "The last Dynamics 365 sync failed" not in page


@pytest.mark.django_db
def test_the_schedule_is_not_resumed_without_a_credential(admin_client, setting):
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(schedule_paused=True)
    page = admin_client.post(reverse("dynamics_crm:resume_schedule"), follow=True)
    assert "Connect again to sync" in page.content.decode()
    setting.refresh_from_db()
    assert setting.schedule_paused and setting.next_sync_at is None


@pytest.mark.django_db
def test_saving_a_credential_again_no_longer_says_disconnected(admin_client, setting):
    admin_client.post(reverse("dynamics_crm:disconnect"), {"confirm": "yes"})
    setting.refresh_from_db()
    setting.set_client_secret("a-new-secret-value")
    setting.save()
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert 'class="badge disconnected"' not in page and "Connect again to sync" not in page
    assert "Configured, not synced yet" in page
    setting.refresh_from_db()
    assert setting.status == DynamicsCrmSetting.Status.CONFIGURED
