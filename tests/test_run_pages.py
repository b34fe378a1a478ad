"""A run's page (every change reachable, real changes first, fields by their labels), its
live status, the history of every run, and the dashboard's chart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from learnexa.accounts.models import Company
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncChange, SyncRun


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def make_run(setting, **fields) -> SyncRun:
    values = {"trigger": "manual", "status": "succeeded", "mode": "full"}
    return SyncRun.objects.create(setting=setting, company=setting.company, **{**values, **fields})


def emails(page: str) -> list[str]:
    return re.findall(r"<td>([\w.+-]+@acme\.test)</td>", page)


@pytest.mark.django_db
def test_every_change_is_reachable_a_hundred_a_page(admin_client, setting):
    run = make_run(setting, skipped=520)
    SyncChange.objects.bulk_create(
        SyncChange(run=run, email=f"p{i:04}@acme.test", action="skipped", reason="Disabled.")
        for i in range(520)
    )
    url = reverse("dynamics_crm:run_detail", args=[run.pk])

    first = admin_client.get(url).content.decode()
    assert len(emails(first)) == 100 and "Showing 1–100 of 520" in first
    assert "page=6" in first and "Last" in first and "Previous" not in first

    sixth = admin_client.get(url, {"page": 6}).content.decode()
    assert emails(sixth) == [f"p{i:04}@acme.test" for i in range(500, 520)]  # row 501 on
    assert "Showing 501–520 of 520" in sixth and "Next" not in sixth and "First" in sixth
    # Out of range or garbage: a page, not an error.
    assert admin_client.get(url, {"page": "999"}).status_code == 200
    assert admin_client.get(url, {"page": "x"}).status_code == 200


@pytest.mark.django_db
def test_real_changes_come_before_skipped_rows_and_held_ones_first(admin_client, setting):
    run = make_run(setting, hold="held", held=1)
    for action, email, pending in [
        ("skipped", "skip@acme.test", False),
        ("failed", "fail@acme.test", False),
        ("updated", "upd@acme.test", False),
        ("reactivated", "back@acme.test", False),
        ("created", "new@acme.test", False),
        ("deactivated", "held@acme.test", True),
        ("deactivated", "gone@acme.test", False),
    ]:
        SyncChange.objects.create(run=run, email=email, action=action, pending=pending)

    page = admin_client.get(reverse("dynamics_crm:run_detail", args=[run.pk])).content.decode()

    assert emails(page) == [
        "held@acme.test",
        "new@acme.test",
        "upd@acme.test",
        "gone@acme.test",
        "back@acme.test",
        "fail@acme.test",
        "skip@acme.test",
    ]


@pytest.mark.django_db
def test_the_filter_offers_each_kind_with_its_count(admin_client, setting):
    run = make_run(setting)
    SyncChange.objects.bulk_create(
        [SyncChange(run=run, email=f"c{i}@acme.test", action="created") for i in range(3)]
        + [SyncChange(run=run, email=f"s{i}@acme.test", action="skipped") for i in range(2)]
    )
    url = reverse("dynamics_crm:run_detail", args=[run.pk])

    page = admin_client.get(url).content.decode()
    assert "Every change (5)" in page and "Created (3)" in page and "Skipped (2)" in page
    assert "Updated (" not in page  # only the kinds the run has

    only = admin_client.get(url, {"action": "skipped"}).content.decode()
    assert emails(only) == ["s0@acme.test", "s1@acme.test"]
    assert len(emails(admin_client.get(url, {"action": "nonsense"}).content.decode())) == 5


@pytest.mark.django_db
def test_fields_by_their_labels_and_the_mode_said_once(admin_client, setting):
    run = make_run(setting, mode="delta", mode_reason="Changes since the last sync.")
    SyncChange.objects.create(
        run=run,
        email="a@acme.test",
        action="updated",
        fields={"job_title": ["Clerk", "Manager"], "some_new_field": ["", "x"]},
    )

    page = admin_client.get(reverse("dynamics_crm:run_detail", args=[run.pk])).content.decode()

    assert "Job title: Clerk → Manager" in page and "Some new field: — → x" in page
    assert "job_title" not in page
    assert page.count("Changes since the last sync") == 1


@pytest.mark.django_db
def test_the_run_page_shows_timings_requests_and_the_progress(admin_client, setting):
    from datetime import timedelta

    from django.utils import timezone

    started = timezone.now() - timedelta(minutes=3)
    run = make_run(
        setting,
        started_at=started,
        finished_at=started + timedelta(seconds=125),
        pages=7,
        records=700,
        expected_records=1000,
        requests=9,
        throttle_wait_seconds=12.5,
    )

    page = admin_client.get(reverse("dynamics_crm:run_detail", args=[run.pk])).content.decode()

    for text in ("Queued", "Started", "Finished", "2 min 5 s", "Requests to Dynamics", "12 s"):
        assert text in page
    assert re.search(r'<progress id="run-bar" [^>]*max="100" value="70\.0"', page)
    assert "700 of about 1,000 records read" in page


@pytest.mark.django_db
def test_the_live_status_carries_the_progress(admin_client, setting):
    from datetime import timedelta

    from django.utils import timezone

    run = make_run(
        setting,
        status="running",
        started_at=timezone.now() - timedelta(seconds=10),
        pages=2,
        records=200,
        expected_records=1000,
        throttled_until=timezone.now() + timedelta(seconds=20),
    )

    data = admin_client.get(reverse("dynamics_crm:run_status", args=[run.pk])).json()

    assert data["percent"] == 20.0 and data["expected_records"] == 1000
    assert data["eta_seconds"] == pytest.approx(40, abs=1)
    assert 18 <= data["waiting_seconds"] <= 20
    assert "Dynamics asked us to slow down" in data["text"]


@pytest.mark.django_db
def test_the_history_lists_every_run_paginated_and_filtered(admin_client, setting):
    SyncRun.objects.bulk_create(
        SyncRun(setting=setting, company=setting.company, trigger="schedule", status="succeeded")
        for _ in range(60)
    )
    make_run(setting, status="failed", dry_run=True, mode="full")
    url = reverse("dynamics_crm:run_list")

    first = admin_client.get(url).content.decode()
    assert "Showing 1–50 of 61" in first and "Dry run" in first
    second = admin_client.get(url, {"page": 2}).content.decode()
    assert "Showing 51–61 of 61" in second
    failed = admin_client.get(url, {"status": "failed"}).content.decode()
    assert "Showing 1–1 of 1" in failed

    integration = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "All syncs (61)" in integration and url in integration


@pytest.mark.django_db
def test_another_companys_runs_stay_out_of_reach(admin_client, setting):
    other = Company.objects.create(slug="other", name="Other")
    other_setting = DynamicsCrmSetting.objects.create(
        company=other,
        organization_uri=setting.organization_uri,
        tenant_id=setting.tenant_id,
        client_id=setting.client_id,
        authority_host=setting.authority_host,
    )
    theirs = make_run(other_setting)
    make_run(setting)

    assert admin_client.get(reverse("dynamics_crm:run_detail", args=[theirs.pk])).status_code == 404
    assert admin_client.get(reverse("dynamics_crm:run_status", args=[theirs.pk])).status_code == 404
    csv_url = reverse("dynamics_crm:run_changes_csv", args=[theirs.pk])
    assert admin_client.get(csv_url).status_code == 404
    listed = admin_client.get(reverse("dynamics_crm:run_list")).content.decode()
    assert "Showing 1–1 of 1" in listed
    assert reverse("dynamics_crm:run_detail", args=[theirs.pk]) not in listed


@pytest.mark.django_db
def test_the_history_is_for_site_admins_only(client, company):
    url = reverse("dynamics_crm:run_list")
    assert client.get(url).status_code == 302
    from learnexa.accounts.models import User

    client.force_login(User.objects.create(company=company, email="learner@acme.test"))
    assert client.get(url).status_code == 403


@pytest.mark.django_db
def test_the_dashboard_chart_has_axes_a_legend_totals_and_a_table(admin_client, setting):
    make_run(setting, created=40, updated=3, deactivated=1)
    make_run(setting, updated=1)
    make_run(setting, created=987, dry_run=True)

    page = admin_client.get(reverse("manage_site:dashboard")).content.decode()

    assert 'role="img" aria-labelledby="chart-title"' in page
    for label in ("Created", "Updated", "Deactivated"):
        assert f"</svg> {label}</li>" in page  # the legend
    assert ">44</text>" in page and ">1</text>" in page  # totals, without hovering
    assert "987" not in page  # the dry run isn't drawn
    assert page.count('<g class="chart-bar">') == 2
    assert "<summary>The same figures as a table</summary>" in page


@pytest.mark.django_db
def test_the_dashboard_says_how_far_a_running_sync_has_got(admin_client, setting):
    setting.company.time_zone = "Europe/Paris"
    setting.company.save()
    setting.next_sync_at = timezone.now() + timedelta(days=1)
    setting.save()
    make_run(
        setting,
        status=SyncRun.Status.RUNNING,
        started_at=timezone.now() - timedelta(seconds=10),
        pages=2,
        records=2_000,
        expected_records=10_000,
    )

    page = admin_client.get(reverse("manage_site:dashboard")).content.decode()

    assert "2,000 of about 10,000 records read" in page and "left" in page
    assert "Europe/Paris time" in page and "UTC" not in page.split("next sync")[1][:80]
