"""The integration form says what happened: an error summary on a failed save, "Save" apart
from "Save and sync" (a full sync only when the change needs one), the audit of each save,
the schedule in the company's time zone; the dashboard warns of an expiring credential; the
404 and 500 pages look like the site."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone

from learnexa.accounts.models import Company
from learnexa.dynamics_crm.forms import ConnectionForm
from learnexa.dynamics_crm.models import AuditEvent, DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.timetable import next_run_at

INTEGRATION = "dynamics_crm:integration"


def _boom(request):
    raise RuntimeError("kaboom")


# The URLconf of the 500 test: the site's routes, plus one that fails.
urlpatterns = [path("boom/", _boom), path("", include("learnexa.urls"))]
handler500 = "learnexa.ops.views.server_error"


class Tags(HTMLParser):
    """Every start tag's attributes, by the tag's id."""

    def __init__(self, page: str):
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attributes = {"tag": tag, **{k: v or "" for k, v in attrs}}
        if "id" in attributes:
            self.by_id[attributes["id"]] = attributes


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.fixture
def post(admin_client, simulator, connection_form):
    """Post the form with the simulator's connection and the defaults, then `fields`."""
    info = simulator.info

    def send(**fields):
        connection = {
            name: info[name]
            for name in ("organization_uri", "tenant_id", "client_id", "authority_host")
        }
        return admin_client.post(reverse(INTEGRATION), connection_form(**{**connection, **fields}))

    return send


def page_of(client, response=None) -> str:
    return client.get(response["Location"] if response else reverse(INTEGRATION)).content.decode()


# -- a failed save ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_save_lists_each_field_in_a_summary_at_the_top(admin_client, setting, post):
    response = post(tenant_id="not a tenant", client_id="12345", time_zone="Mars/Olympus_Mons")

    assert response.status_code == 200
    page = response.content.decode()
    tags = Tags(page).by_id
    summary = tags["error-summary"]
    assert summary["role"] == "alert" and summary["tabindex"] == "-1"
    assert "There is a problem saving: 3 fields" in page and "Not saved." in page
    # Right under the heading: before the status line that says "Connected".
    assert page.index("<h1>") < page.index('id="error-summary"') < page.index("Status:")
    for name, message in [
        ("tenant_id", "Directory (tenant) ID shown on the app registration"),
        ("client_id", "Application (client) ID shown on the app registration"),
        ("time_zone", "isn't a time zone"),
    ]:
        link = re.search(rf'<a href="#id_{name}">([^<]*)</a>', page)
        assert link and message in link.group(1).replace("&#x27;", "'"), name
        field = tags[f"id_{name}"]
        assert field["aria-invalid"] == "true"
        assert f"id_{name}_error" in field["aria-describedby"].split()
        assert f"id_{name}_error" in tags
    assert (
        tags["id_client_id"]["aria-describedby"].split()
        == [
            "id_client_id_helptext",
            "id_client_id_error",
        ]
        and "id_client_id_helptext" in tags
    )
    assert "aria-invalid" not in tags["id_organization_uri"]
    assert not SyncRun.objects.exists()
    setting.refresh_from_db()
    assert setting.tenant_id != "not a tenant"


@pytest.mark.django_db
def test_an_error_of_no_one_field_is_in_the_summary_too(admin_client, setting, post, monkeypatch):
    def cannot_store(self, secret):
        raise ImproperlyConfigured("No encryption key is configured, so secrets can't be stored.")

    monkeypatch.setattr(DynamicsCrmSetting, "set_client_secret", cannot_store)

    page = post(client_secret="a-new-secret").content.decode()

    assert "There is a problem saving" in page and "There is a problem saving:" not in page
    summary = page[
        page.index('id="error-summary"') : page.index("</div>", page.index("error-summary"))
    ]
    assert "No encryption key is configured" in summary
    assert "a-new-secret" not in page


# -- Save, or Save and sync ---------------------------------------------------------------


@pytest.mark.django_db
def test_save_saves_and_queues_nothing(admin_client, setting, post):
    response = post(after="save", sync_frequency="daily", sync_time="05:30")

    assert response.status_code == 302 and response["Location"] == reverse(INTEGRATION)
    assert not SyncRun.objects.exists()
    setting.refresh_from_db()
    assert setting.sync_frequency == "daily" and setting.sync_time.hour == 5
    page = page_of(admin_client, response)
    assert "Saved. No sync was started." in page
    assert "A full sync is advised" not in page  # the schedule alone needs none


@pytest.mark.django_db
def test_save_and_sync_after_a_schedule_change_syncs_the_changes_only(admin_client, setting, post):
    response = post(after="sync", sync_frequency="monthly", sync_monthday="15")

    run = SyncRun.objects.get()
    assert response["Location"] == reverse("dynamics_crm:run_detail", args=[run.pk])
    assert not run.full and run.trigger == SyncRun.Trigger.SETTINGS_SAVED
    assert "A sync of the changes in Dynamics has been queued" in page_of(admin_client, response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "contoso.onmicrosoft.com"},
        {"client_secret": "a-rotated-secret"},
        {"create_users": ""},
    ],
    ids=["connection", "credential", "who-is-created"],
)
def test_save_and_sync_after_a_connection_or_scope_change_syncs_everyone(
    admin_client, setting, post, change
):
    response = post(after="sync", **change)

    run = SyncRun.objects.get()
    assert run.full
    assert "A full sync of your users has been queued" in page_of(admin_client, response)


@pytest.mark.django_db
def test_the_same_connection_spelt_otherwise_is_no_change(admin_client, setting, post):
    post(
        after="sync",
        client_id=setting.client_id.upper(),
        organization_uri=setting.organization_uri + "/",
    )
    assert not SyncRun.objects.get().full


@pytest.mark.django_db
def test_save_after_a_connection_change_advises_a_full_sync_once(admin_client, setting, post):
    response = post(after="save", tenant_id="contoso.onmicrosoft.com")

    assert not SyncRun.objects.exists()
    page = page_of(admin_client, response)
    assert "A full sync is advised" in page and "You changed Azure tenant ID" in page
    advice = page[page.index('id="full-sync-advised"') :]
    offer = re.search(
        r'<form method="post" action="([^"]+)">.*?<button type="submit" name="kind" value="full">',
        advice,
        re.S,
    )
    assert offer and offer.group(1) == reverse("dynamics_crm:sync_now")
    assert "A full sync is advised" not in page_of(admin_client)


@pytest.mark.django_db
def test_a_post_without_the_button_saves_and_syncs_as_before(admin_client, setting, post):
    assert post(sync_time="04:00").status_code == 302
    assert SyncRun.objects.count() == 1


@pytest.mark.django_db
def test_the_form_has_both_buttons_save_first(admin_client, setting):
    page = page_of(admin_client)
    save = page.index('<button type="submit" name="after" value="save">Save</button>')
    sync = page.index('name="after" value="sync"')
    assert save < sync  # Enter in a field presses the first: the one that syncs nothing


# -- the audit of a save ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_save_is_audited_with_the_fields_names_and_no_secret(admin_client, setting, post):
    post(after="save", client_secret="the-new-secret-value", sync_time="06:15")

    (event,) = AuditEvent.objects.filter(company=setting.company)
    assert event.action == AuditEvent.Action.SETTINGS_SAVED
    assert sorted(event.details["fields"]) == ["client_secret", "sync_time"]
    assert event.actor.email == "admin@acme.test" and event.run is None
    assert "Client secret" in event.summary
    for stored in AuditEvent.objects.all():
        assert "the-new-secret-value" not in stored.summary + json.dumps(stored.details)


@pytest.mark.django_db
def test_the_sync_a_save_started_is_on_its_event(admin_client, setting, post):
    post(after="sync", sync_time="06:15")
    event = AuditEvent.objects.get(action=AuditEvent.Action.SETTINGS_SAVED)
    assert event.run == SyncRun.objects.get() and event.details == {"fields": ["sync_time"]}


@pytest.mark.django_db
def test_saving_nothing_new_records_nothing(admin_client, setting, post):
    response = post(after="save")
    assert not AuditEvent.objects.exists()
    assert "Saved: nothing had changed." in page_of(admin_client, response)


@pytest.mark.django_db
def test_a_first_credential_connects_and_its_first_sync_is_full(
    admin_client, company, simulator, post
):
    response = post(after="sync", client_secret=simulator.info["client_secret"])

    assert response.status_code == 302
    assert SyncRun.objects.get().full
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert actions == {AuditEvent.Action.SETTINGS_SAVED, AuditEvent.Action.CONNECTED}
    for event in AuditEvent.objects.all():
        assert simulator.info["client_secret"] not in event.summary + json.dumps(event.details)


# -- the schedule and the time zone ----------------------------------------------------


@pytest.mark.django_db
def test_the_time_zone_is_saved_and_the_next_sync_falls_in_it(admin_client, setting, post):
    response = post(after="save", time_zone="europe/paris", sync_frequency="daily")

    assert not SyncRun.objects.exists()
    setting.refresh_from_db()
    assert setting.company.time_zone == "Europe/Paris"
    local = setting.next_sync_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (2, 0)
    assert setting.next_sync_at == next_run_at(setting, setting.updated_at)
    page = page_of(admin_client, response)
    assert "At (Europe/Paris time)" in page
    assert Tags(page).by_id["id_time_zone"]["value"] == "Europe/Paris"
    assert re.search(r"Next scheduled sync: [^<]* Europe/Paris time \([^)]* UTC\)", page)
    assert '<option value="America/New_York">' in page  # the list to choose from


@pytest.mark.django_db
@pytest.mark.parametrize(
    "zone, message",
    [("Europe/Atlantis", "isn't a time zone"), ("", "Choose the company's time zone")],
)
def test_a_wrong_or_empty_time_zone_is_refused_clearly(admin_client, setting, post, zone, message):
    response = post(time_zone=zone)

    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert Company.objects.get(pk=setting.company_id).time_zone == "UTC"
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_a_post_without_a_time_zone_keeps_the_companys(admin_client, setting, post):
    Company.objects.filter(pk=setting.company_id).update(time_zone="Asia/Tokyo")
    post(after="save", sync_time="03:00")
    assert Company.objects.get(pk=setting.company_id).time_zone == "Asia/Tokyo"


@pytest.mark.django_db
def test_the_schedule_fields_say_which_frequency_they_are_for(admin_client, setting):
    page = page_of(admin_client)
    assert "0 = Monday" not in page
    assert ConnectionForm(instance=setting).fields["sync_weekday"].help_text == ""
    for name, frequencies in [("sync_weekday", "weekly"), ("sync_monthday", "monthly")]:
        wrapper = re.search(rf'<div data-frequencies="([^"]+)">\s*<label for="id_{name}">', page)
        assert wrapper and wrapper.group(1) == frequencies
    assert "On (weekly)" in page and "On day of the month (monthly)" in page
    assert "At (UTC time)" in page


# -- the dashboard's expiry warning ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "days, warned",
    [
        (-1, "expired on"),
        (0, "expired on"),
        (1, "expires tomorrow"),
        (14, "expires in 14 days"),
        (30, "expires in 30 days"),
        (31, None),
    ],
)
def test_the_dashboard_warns_of_a_secret_expiring_within_30_days(
    admin_client, setting, days, warned
):
    expires_on = timezone.now().date() + timedelta(days=days)
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(client_secret_expires_on=expires_on)

    page = admin_client.get(reverse("manage_site:dashboard")).content.decode()

    if warned:
        assert f"The client secret {warned}" in page
        assert "No problems." not in page
    else:
        assert "The client secret expire" not in page
        assert "No problems." in page


# -- the error pages ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("signed_in", [False, True])
def test_a_missing_page_answers_404_in_the_sites_look(client, site_admin, signed_in):
    if signed_in:
        client.force_login(site_admin)

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    page = response.content.decode()
    assert "<title>Page not found · Learnexa</title>" in page
    assert '<a class="brand" href="/">Learnexa' in page and "<h1>Page not found</h1>" in page
    assert '<a class="button" href="/">Go to the start page</a>' in page
    nonce = re.search(r'<style nonce="([^"]+)">', page).group(1)
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    assert ('aria-label="Manage site"' in page) == signed_in


@pytest.mark.django_db
def test_a_500_is_styled_without_what_may_have_failed(db, settings):
    settings.ROOT_URLCONF = __name__

    response = Client(raise_request_exception=False).get("/boom/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "<h1" in page and "Something went wrong" in page and ">Learnexa</a>" in page
    # No nonce reaches this page: its look is in style attributes, which the policy allows.
    assert "<style" not in page and 'style="' in page
    assert "style-src-attr 'unsafe-inline'" in response["Content-Security-Policy"]
    assert "kaboom" not in page
