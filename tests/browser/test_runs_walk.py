"""An admin follows syncs in a real browser: a progress bar with an estimate while a sync
reads (and says so while Dynamics throttles it), the finished run with its timings, its
changes filtered and paged, fields by their labels, the history of every sync and the
dashboard's chart. Each step leaves a screenshot runs-* in .ci-artifacts/screenshots/."""

import re

import pytest
from playwright.sync_api import expect

from learnexa.dynamics_crm.models import SyncRun
from learnexa.dynamics_crm.sync import execute_run, open_client
from learnexa.dynamics_crm.sync.flow import PageFlow

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's
PAGE_SIZE = 25


def sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Manage site")).to_be_visible()


def new_run(setting) -> SyncRun:
    return SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.MANUAL
    )


@pytest.mark.django_db(transaction=True)
def test_an_admin_follows_a_sync_from_its_progress_to_the_chart(
    page,
    live_server,
    site_admin,
    simulator,
    connect,
    settings,
    monkeypatch,
    screenshot,
    accessible,
):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = PAGE_SIZE
    page.set_default_timeout(15_000)
    setting = connect(site_admin.company)
    sign_in(page, live_server.url, site_admin.email)

    # A full sync, throttled on its third page: while it waits, its page shows how far it
    # got, of about how many, and why it is waiting. The wait is the test's: the browser
    # looks at the page, then the sync goes on. Pages are fetched in this thread, as with a
    # delegated sign-in (each page committed before the next is fetched): no timing at all.
    monkeypatch.setattr(
        PageFlow,
        "pages",
        lambda flow, url, track: flow.map_pages(
            flow.context.client.pages(url, track_changes=track)
        ),
    )
    simulator.inject_fault(
        "status", count=1, status=429, retry_after=30, path_contains="pagenumber=%223%22"
    )
    run = new_run(setting)
    run_url = f"{live_server.url}/dynamics_crm/runs/{run.pk}/"
    looked = []

    def while_throttled(seconds: float) -> None:
        page.goto(run_url)
        expect(page.locator("#run-status")).to_have_text("Running")
        bar = page.get_by_role("progressbar", name="Records read")
        expect(bar).to_be_visible()
        value = float(bar.get_attribute("value"))
        assert 0 < value < 100
        expect(page.locator("#run-progress-text")).to_have_text(
            re.compile(r"^\d+ of about [\d,]+ records read · .*waiting \d+ s: Dynamics asked us")
        )
        status = page.request.get(f"{run_url}status/").json()
        assert status["percent"] == value and status["waiting_seconds"] > 20
        screenshot("runs-progress-throttled")
        accessible(page)
        looked.append(seconds)

    execute_run(run, client=open_client(setting, sleep=while_throttled))
    assert looked == [30.0] and run.status == SyncRun.Status.SUCCEEDED, run.error

    # Finished: the bar full, the timings and the requests, the mode said once.
    page.reload()
    expect(page.locator("#run-status")).to_have_text("Succeeded")
    expect(page.get_by_role("progressbar", name="Records read")).to_have_attribute("value", "100.0")
    expect(
        page.get_by_text("Full reconciliation: No earlier sync to continue from.")
    ).to_be_visible()
    for term in ("Queued", "Started", "Finished", "Duration", "Requests to Dynamics"):
        expect(page.locator("dt", has_text=term)).to_be_visible()
    expect(page.locator("#run-requests")).to_have_text(str(run.requests))
    expect(page.locator("#run-waited")).to_have_text("30 s")
    total = run.changes.count()
    assert total > 100
    expect(page.get_by_text(f"Showing 1–100 of {total}")).to_be_visible()
    # Real changes first: the first row is a user created, not a record skipped.
    expect(page.locator("tbody tr").first.locator("td").nth(1)).to_have_text("Created")
    screenshot("runs-finished")
    accessible(page)

    # Only the skipped records, by the filter that counts them.
    skipped = run.changes.filter(action="skipped").count()
    page.get_by_label("Show").select_option(label=f"Skipped ({skipped})")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text(f"Showing 1–{min(skipped, 100)} of {skipped}")).to_be_visible()
    expect(page.locator("tbody tr td:nth-child(2)", has_text="Created")).to_have_count(0)
    screenshot("runs-filter-skipped")

    # Every change again, page 2.
    page.get_by_label("Show").select_option(label=f"Every change ({total})")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Next").click()
    expect(page.get_by_text(f"Showing 101–{min(200, total)} of {total}")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Page 2 of \d+"))).to_be_visible()
    screenshot("runs-page-2")
    accessible(page)

    # A change in Dynamics; the next sync (changes since the last) names the field.
    person = next(
        u
        for u in simulator.store.users()
        if u.get("internalemailaddress")
        and not u.get("applicationid")
        and u.get("accessmode") == 0
        and not u.get("isdisabled")
    )
    simulator.store.update_user(person["systemuserid"], jobtitle="Chief Learning Officer")
    delta = execute_run(new_run(setting))
    assert delta.status == SyncRun.Status.SUCCEEDED and delta.updated >= 1, delta.error
    page.goto(f"{live_server.url}/dynamics_crm/runs/{delta.pk}/")
    expect(page.get_by_text(re.compile(r"Job title: .* → Chief Learning Officer"))).to_be_visible()
    expect(page.get_by_text("job_title")).to_have_count(0)
    expect(page.get_by_text("Changes since the last sync")).to_have_count(1)
    screenshot("runs-labels")

    # The history of every sync, from the integration page.
    page.goto(f"{live_server.url}/dynamics_crm/")
    page.get_by_role("link", name="All syncs (2)").click()
    expect(page.get_by_role("heading", name="All syncs with Dynamics 365")).to_be_visible()
    expect(page.get_by_text("Showing 1–2 of 2")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    screenshot("runs-history")
    accessible(page)

    # The dashboard: a bar per sync with its total written above it, a legend, a table.
    page.get_by_role("link", name="Dashboard").click()
    chart = page.get_by_role("img", name=re.compile("Users created, updated and deactivated"))
    expect(chart).to_be_visible()
    legend = page.get_by_role("list", name="Legend")
    for label in ("Created", "Updated", "Deactivated"):
        expect(legend.get_by_text(label)).to_be_visible()
    # The oldest bar on the left, the full sync's, its total above it.
    first_total = str(run.created + run.updated + run.deactivated)
    expect(chart.locator("g.chart-bar").first.locator("text").first).to_have_text(first_total)
    expect(chart.locator("g.chart-bar")).to_have_count(2)
    page.get_by_text("The same figures as a table").click()
    expect(page.get_by_role("cell", name=str(delta.updated)).first).to_be_visible()
    screenshot("runs-dashboard-chart")
    accessible(page)
    # A bar leads to its sync.
    page.locator(f'a[href="/dynamics_crm/runs/{delta.pk}/"]').first.click()
    expect(page).to_have_url(f"{live_server.url}/dynamics_crm/runs/{delta.pk}/")
