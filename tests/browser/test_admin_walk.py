"""A new site admin's first hour, in a real browser: sign in, connect to Dynamics (a wrong
secret first), test the connection, a dry run, a sync with live progress, a user's page, the
history, and a held deactivation approved. Each step leaves a screenshot in
.ci-artifacts/screenshots/."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from learnexa.accounts.models import User

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


RUN_PAGE = re.compile(r"/dynamics_crm/runs/\d+/$")


def run_worker():
    call_command("worker", "--batch", "--no-startup-delay", "--interval", "0")


def fill_connection(page, info, secret):
    page.get_by_label("Organization URI").fill(info["organization_uri"])
    page.get_by_label("Azure tenant ID").fill(info["tenant_id"])
    page.get_by_label("Client ID").fill(info["client_id"])
    page.get_by_label("Authority host").fill(info["authority_host"])
    if page.get_by_role("radio", name="Client secret").count():
        page.get_by_role("radio", name="Client secret").check()
    page.get_by_role("textbox", name="Client secret").fill(secret)
    page.get_by_label("Hold deactivations above this many users").fill("2")


@pytest.mark.django_db(transaction=True)
def test_a_new_admin_connects_dynamics_and_keeps_users_in_step(
    page, live_server, site_admin, simulator, settings, screenshot
):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 25
    info = simulator.info
    page.set_default_timeout(15_000)

    # First sign-in.
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(site_admin.email)
    screenshot("sign-in")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Manage site")).to_be_visible()
    expect(page.get_by_text("Not connected")).to_be_visible()
    screenshot("dashboard-not-connected")

    # Connect, with a wrong secret first.
    page.get_by_role("link", name="Integrate Dynamics CRM").first.click()
    fill_connection(page, info, "not-the-secret")
    screenshot("connection-form")
    page.get_by_role("button", name="Save and sync").click()
    page.get_by_role("link", name="← Integrate Dynamics CRM").click()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text("✗ Sign in to Entra ID")).to_be_visible()
    expect(page.get_by_text("The client secret is wrong")).to_be_visible()
    screenshot("test-connection-wrong-secret")

    # The right secret.
    page.get_by_role("link", name="← Integrate Dynamics CRM").click()
    page.get_by_role("textbox", name="Client secret").fill(info["client_secret"])
    page.get_by_role("button", name="Save and sync").click()
    page.get_by_role("link", name="← Integrate Dynamics CRM").click()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text("Everything a sync needs works.")).to_be_visible()
    screenshot("test-connection-ok")

    # A dry run first: every change worked out, nothing written.
    page.get_by_role("link", name="← Integrate Dynamics CRM").click()
    page.get_by_role("button", name="Dry run").click()
    page.wait_for_url(RUN_PAGE)
    run_worker()  # runs the queued sync and the dry run
    page.reload()
    expect(page.get_by_text("Nothing was written")).to_be_visible()
    screenshot("dry-run")

    # Sync now, watching its progress without reloading.
    simulator.store.update_user(
        next(
            u
            for u in simulator.store.users()
            if u.get("internalemailaddress")
            and not u.get("applicationid")
            and u.get("accessmode") == 0
            and not u.get("isdisabled")
        )["systemuserid"],
        jobtitle="Chief Learning Officer",
    )
    page.get_by_role("link", name="Integrate Dynamics CRM").first.click()
    page.get_by_role("button", name="Full resync").click()
    page.wait_for_url(RUN_PAGE)
    # The page polls for progress on its own while the worker runs here.
    run_worker()
    expect(page.get_by_role("status").filter(has_text="Succeeded")).to_be_visible(timeout=30_000)
    # Seeing the run finish, the page reloads itself: wait for the finished page, not the
    # one being replaced (a screenshot of that one fails mid-navigation).
    expect(page.locator('#run[data-finished="true"]')).to_be_attached()
    page.wait_for_load_state()
    screenshot("sync-finished")

    # The users, and one user's page with their Dynamics link and history.
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Search").fill("")
    page.get_by_label("Source").select_option("dynamics_crm")
    page.get_by_role("button", name="Filter").click()
    screenshot("users")
    changed = User.objects.get(job_title="Chief Learning Officer")
    page.goto(f"{live_server.url}/manage/users/{changed.pk}/")
    expect(page.get_by_text(re.compile("job_title: .* → Chief Learning Officer"))).to_be_visible()
    expect(page.get_by_role("link", name=str(changed.dynamics_systemuser_id))).to_be_visible()
    screenshot("user-page")

    # The history.
    page.get_by_role("link", name="Integrate Dynamics CRM").first.click()
    expect(page.get_by_role("heading", name="Recent syncs")).to_be_visible()
    screenshot("history")

    # Three people leave Dynamics; above the limit, their deactivation waits for approval.
    leaving = list(
        User.objects.filter(company=site_admin.company, created_source="dynamics_crm")[:3]
    )
    for user in leaving:
        simulator.store.delete_user(str(user.dynamics_systemuser_id))
    page.get_by_role("button", name="Full resync").click()
    page.wait_for_url(RUN_PAGE)
    run_worker()
    page.reload()
    expect(page.get_by_text("3 deactivations are held")).to_be_visible()
    screenshot("held-deactivations")
    page.get_by_role("button", name="Approve: deactivate them").click()
    # A confirmation names who would be deactivated; nothing happens until it is confirmed.
    expect(page.get_by_role("heading", name="Deactivate 3 people?")).to_be_visible()
    assert User.objects.filter(pk__in=[u.pk for u in leaving], is_active=True).count() == 3
    screenshot("held-confirm")
    page.get_by_role("button", name="Confirm: deactivate 3 people").click()
    expect(page.get_by_text("Approved: 3 users deactivated.")).to_be_visible()
    screenshot("held-approved")
    assert User.objects.filter(pk__in=[u.pk for u in leaving], is_active=False).count() == 3
