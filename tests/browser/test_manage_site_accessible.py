"""Every Manage site page a site admin reaches, checked with axe-core in Chromium once the
company is connected and synced: no WCAG 2 A or AA violation. Screenshots in
.ci-artifacts/screenshots/."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from learnexa.accounts.models import User
from learnexa.dynamics_crm.models import SyncRun
from learnexa.dynamics_crm.sync import execute_run

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


def sign_in(page, base_url: str, admin: User) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Manage site")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_every_manage_site_page_passes_axe(
    page, live_server, site_admin, setting, screenshot, accessible
):
    run = execute_run(
        SyncRun.objects.create(
            setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
        )
    )
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    learner = User.objects.filter(company=setting.company, is_site_admin=False).first()
    page.set_default_timeout(15_000)
    sign_in(page, live_server.url, site_admin)

    pages = {
        "dashboard": reverse("manage_site:dashboard"),
        "users": reverse("manage_site:users"),
        "users-search": reverse("manage_site:users") + "?q=" + learner.last_name[:4],
        "user": reverse("manage_site:user_detail", args=[learner.pk]),
        "integration": reverse("dynamics_crm:integration"),
        "mapping": reverse("dynamics_crm:mapping"),
        "lookup": reverse("dynamics_crm:lookup"),
        "run": reverse("dynamics_crm:run_detail", args=[run.pk]),
    }
    for name, path in pages.items():
        response = page.goto(live_server.url + path)
        assert response.status == 200, (name, response.status)
        accessible(page)
        screenshot(f"a11y-{name}")

    # Pages reached by a form: the connection test and a lookup's steps.
    page.goto(live_server.url + reverse("dynamics_crm:integration"))
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_role("heading", name="Test connection")).to_be_visible()
    accessible(page)
    screenshot("a11y-test-connection")

    page.goto(live_server.url + reverse("dynamics_crm:lookup"))
    page.get_by_label("Email").fill(learner.email)
    page.get_by_role("button", name="Look up", exact=True).click()
    expect(page.get_by_text(learner.email).first).to_be_visible()
    accessible(page)
    screenshot("a11y-lookup-result")

    page.goto(live_server.url + reverse("dynamics_crm:integration"))
    page.get_by_role("button", name="Show the key").click()
    expect(page.get_by_role("heading", name="The webhook key")).to_be_visible()
    assert len(page.locator("#webhook-key").inner_text()) >= 32
    accessible(page)
    screenshot("a11y-webhook-key")
