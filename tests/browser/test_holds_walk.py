"""A site admin decides on deactivations an old sync held, in a real browser: from the
dashboard's banner to the holds inbox, one person approved and the rest rejected (each
after a confirmation), who decided shown; then a confirmed disconnect that leaves a
consistent page, and the audit trail of all of it. Screenshots: holds-*."""

import pytest
from playwright.sync_api import expect

from learnexa.accounts.models import User
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


@pytest.mark.django_db(transaction=True)
def test_an_admin_decides_an_old_hold_disconnects_and_reads_the_trail(
    page, live_server, site_admin, setting, held_run, screenshot, accessible
):
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(status="ok")
    # A sync of a month ago held these people's deactivation, behind 25 newer syncs.
    run, (ann, bob, cat) = held_run("ann", "bob", "cat", days_ago=30)
    for _ in range(25):
        SyncRun.objects.create(
            setting=setting, company=setting.company, trigger="schedule", status="succeeded"
        )
    page.set_default_timeout(15_000)

    page.goto(live_server.url + "/")
    page.get_by_label("Email").fill(site_admin.email)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # The dashboard and every page's banner count the held people, whatever run held them.
    expect(page.get_by_role("heading", name="Manage site")).to_be_visible()
    expect(page.get_by_text("3 deactivations are waiting for your approval.")).to_be_visible()
    banner = page.locator("p.banner", has_text="await your approval: 3 people")
    expect(banner).to_be_visible()
    accessible(page)
    screenshot("holds-dashboard")

    banner.get_by_role("link", name="Review").click()
    expect(page.get_by_role("heading", name="Held deactivations", exact=True)).to_be_visible()
    expect(page.get_by_text("3 people are waiting.")).to_be_visible()
    expect(page.get_by_role("cell", name="ann@acme.test", exact=True)).to_be_visible()
    accessible(page)
    screenshot("holds-inbox")

    # One person approved, after a confirmation that names her.
    page.get_by_role("button", name="Approve: deactivate ann@acme.test").click()
    expect(page.get_by_role("heading", name="Deactivate 1 person?")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="ann@acme.test")).to_be_visible()
    assert User.objects.get(pk=ann.pk).is_active
    accessible(page)
    screenshot("holds-confirm-one")
    page.get_by_role("button", name="Confirm: deactivate 1 person").click()
    expect(page.get_by_text("Approved: 1 user deactivated.")).to_be_visible()
    expect(page.get_by_text("2 people are waiting.")).to_be_visible()
    assert not User.objects.get(pk=ann.pk).is_active
    screenshot("holds-approved-one")

    # The rest rejected all at once, after a confirmation that names them.
    page.get_by_role("button", name="Reject all 2: keep them active").click()
    expect(page.get_by_role("heading", name="Keep 2 people active?")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="bob@acme.test")).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="cat@acme.test")).to_be_visible()
    accessible(page)
    screenshot("holds-confirm-rest")
    page.get_by_role("button", name="Confirm: keep 2 people active").click()
    expect(page.get_by_text("Rejected: 2 people stay active.")).to_be_visible()
    expect(page.get_by_text("Nobody is waiting for a decision.")).to_be_visible()
    decided = page.get_by_role("table", name="Decided")
    expect(decided.get_by_role("row")).to_have_count(4)
    expect(decided.get_by_role("cell", name="admin@acme.test")).to_have_count(3)
    expect(decided.get_by_role("cell", name="Rejected: kept active")).to_have_count(2)
    assert [User.objects.get(pk=u.pk).is_active for u in (ann, bob, cat)] == [False, True, True]
    accessible(page)
    screenshot("holds-decided")

    # The run's page says who decided and when.
    decided.get_by_role("link").first.click()
    expect(page.locator("#hold-decision")).to_contain_text(
        "Held deactivations approved by admin@acme.test on"
    )
    screenshot("holds-run-decided")

    # Disconnect, confirmed; the page then says disconnected and offers no sync.
    page.get_by_role("link", name="← Integrate Dynamics CRM").click()
    expect(page.locator("#no-credential")).to_have_count(0)
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect from Dynamics 365?")).to_be_visible()
    accessible(page)
    screenshot("holds-confirm-disconnect")
    page.get_by_role("button", name="Confirm: disconnect").click()
    expect(page.get_by_text("Disconnected: the stored secret")).to_be_visible()
    expect(page.locator(".badge.disconnected")).to_have_text("Disconnected")
    expect(page.get_by_text("Connect again to sync: no credential is saved.")).to_be_visible()
    for label in ("Sync now", "Dry run", "Full resync", "Test connection"):
        expect(page.get_by_role("button", name=label, exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Disconnect")).to_have_count(0)
    accessible(page)
    screenshot("holds-disconnected")

    # The trail: the latest actions here, all of them on their own page.
    trail = page.locator("section", has=page.get_by_role("heading", name="Admin actions"))
    expect(trail.get_by_role("cell", name="Disconnected", exact=True)).to_be_visible()
    expect(trail.get_by_role("cell", name="Held deactivations rejected")).to_be_visible()
    expect(trail.get_by_role("cell", name="Held deactivations approved")).to_be_visible()
    trail.get_by_role("link", name="All admin actions").click()
    expect(page.get_by_role("heading", name="Admin actions on the integration")).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(4)
    accessible(page)
    screenshot("holds-audit")
