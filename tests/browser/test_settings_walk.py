"""An admin changes the integration's settings in a real browser: a bad save is summarised
at the top with focus on it, its links lead to the fields; the schedule shows only the
chosen frequency's fields; a new time zone saved with "Save" starts no sync. Each step
leaves a screenshot in .ci-artifacts/screenshots/."""

import pytest
from playwright.sync_api import expect

from learnexa.accounts.models import Company
from learnexa.dynamics_crm.models import SyncRun

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


def active_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


@pytest.mark.django_db(transaction=True)
def test_an_admin_fixes_a_bad_save_and_sets_the_schedule(
    page, live_server, site_admin, setting, screenshot, accessible
):
    page.set_default_timeout(15_000)
    page.goto(live_server.url + "/dynamics_crm/")
    page.get_by_label("Email").fill(site_admin.email)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Integrate Dynamics CRM", level=1)).to_be_visible()
    # Weekly by default: the weekday shows, the day of the month doesn't.
    expect(page.get_by_label("On (weekly)")).to_be_visible()
    expect(page.get_by_label("On day of the month (monthly)")).to_be_hidden()
    expect(page.get_by_label("At (UTC time)")).to_be_visible()
    accessible(page)
    screenshot("settings-page")

    # A bad save: the summary at the top, focused, says what and where.
    page.get_by_label("Azure tenant ID").fill("not a tenant")
    page.get_by_label("Time zone").fill("Europe/Atlantis")
    page.get_by_role("button", name="Save", exact=True).click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary.get_by_role("heading")).to_have_text("There is a problem saving: 2 fields")
    expect(summary).to_contain_text("Not saved.")
    assert active_id(page) == "error-summary"
    assert summary.bounding_box()["y"] < page.get_by_text("Status:").bounding_box()["y"]
    expect(page.get_by_label("Azure tenant ID")).to_have_attribute("aria-invalid", "true")
    accessible(page)
    screenshot("settings-bad-save")

    # Its links move to the fields.
    summary.get_by_role("link", name="Azure tenant ID").click()
    assert active_id(page) == "id_tenant_id"
    expect(page.get_by_label("Azure tenant ID")).to_be_in_viewport()
    summary.get_by_role("link", name="Time zone").click()
    assert active_id(page) == "id_time_zone"
    page.get_by_label("Azure tenant ID").fill(setting.tenant_id)

    # Monthly: only the day of the month shows.
    page.get_by_label("Sync automatically").select_option("monthly")
    expect(page.get_by_label("On day of the month (monthly)")).to_be_visible()
    expect(page.get_by_label("On (weekly)")).to_be_hidden()
    page.get_by_label("On day of the month (monthly)").fill("15")
    # Off: no time either.
    page.get_by_label("Sync automatically").select_option("off")
    expect(page.get_by_label("At (UTC time)")).to_be_hidden()
    expect(page.get_by_label("On day of the month (monthly)")).to_be_hidden()
    page.get_by_label("Sync automatically").select_option("monthly")
    accessible(page)
    screenshot("settings-monthly")

    # A new time zone, saved with "Save": nothing is synced, and the zone is named.
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved. No sync was started.")).to_be_visible()
    expect(page.get_by_label("At (Europe/Paris time)")).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    expect(page.locator("#next-sync")).to_contain_text("Europe/Paris time")
    expect(page.locator("#error-summary")).to_have_count(0)
    assert not SyncRun.objects.exists()
    assert Company.objects.get(pk=site_admin.company_id).time_zone == "Europe/Paris"
    accessible(page)
    screenshot("settings-saved-time-zone")
