"""Who may see what: sign-in, site admins only, one company's data only, CSRF, the
write-only secret."""

import pytest
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import SyncRun

ADMIN_PASSWORD = "a-long-test-password-1"  # the site_admin fixture's

PAGES = ["manage_site:dashboard", "manage_site:users", "dynamics_crm:integration"]


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES)
def test_learners_who_are_not_site_admins_are_refused(client, company, name):
    learner = User.objects.create(company=company, email="learner@acme.test")
    client.force_login(learner)
    assert client.get(reverse(name)).status_code == 403


@pytest.mark.django_db
def test_signing_in_with_email_and_password(client, site_admin):
    response = client.post(
        reverse("login"), {"username": "ADMIN@acme.test", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 302
    assert client.get(reverse("manage_site:dashboard")).status_code == 200
    bad = Client().post(reverse("login"), {"username": "admin@acme.test", "password": "wrong"})
    assert bad.status_code == 200 and b"error-box" in bad.content


@pytest.mark.django_db
def test_the_secret_is_never_rendered_back(admin_client, setting, simulator):
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert simulator.info["client_secret"] not in page
    assert setting.client_secret_encrypted not in page
    assert "A secret is saved" in page


@pytest.mark.django_db
def test_saving_without_a_new_secret_keeps_the_old_one(
    admin_client, setting, simulator, connection_form
):
    info = simulator.info
    response = admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(
            **{
                "organization_uri": info["organization_uri"],
                "tenant_id": info["tenant_id"],
                "client_id": info["client_id"],
                "client_secret": "",
                "authority_host": info["authority_host"],
                "sync_frequency": "weekly",
            }
        ),
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.client_secret() == info["client_secret"]


@pytest.mark.django_db
def test_a_foreign_or_plain_http_organization_is_refused_in_the_form(admin_client, connection_form):
    for uri, message in [
        ("http://contoso.crm.dynamics.com", "must start with https://"),
        ("https://contoso.example.com", "is not a Microsoft Dynamics 365 host"),
    ]:
        response = admin_client.post(
            reverse("dynamics_crm:integration"),
            connection_form(
                **{
                    "organization_uri": uri,
                    "tenant_id": "contoso.onmicrosoft.com",
                    "client_id": "d0835aea-3d68-462f-91a7-38edbbe4ab6f",
                    "client_secret": "x",
                    "authority_host": "https://login.microsoftonline.com",
                    "sync_frequency": "weekly",
                }
            ),
        )
        assert response.status_code == 200
        assert message in response.content.decode()
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_bad_tenant_and_client_ids_say_where_to_find_the_right_ones(admin_client, connection_form):
    response = admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(
            **{
                "organization_uri": "https://contoso.crm.dynamics.com",
                "tenant_id": "not a tenant",
                "client_id": "12345",
                "client_secret": "x",
                "authority_host": "https://login.microsoftonline.com",
                "sync_frequency": "weekly",
            }
        ),
    )
    page = response.content.decode()
    assert "Directory (tenant) ID" in page and "Application (client) ID" in page


@pytest.mark.django_db
def test_the_users_page_lists_only_this_companys_users(admin_client, company):
    other = Company.objects.create(slug="other", name="Other")
    User.objects.create(company=other, email="stranger@other.test")
    User.objects.create(company=company, email="colleague@acme.test", created_source="dynamics_crm")
    page = admin_client.get(reverse("manage_site:users")).content.decode()
    assert "colleague@acme.test" in page and "stranger@other.test" not in page


@pytest.mark.django_db
def test_posts_without_a_csrf_token_are_refused(site_admin, setting):
    client = Client(enforce_csrf_checks=True)
    client.force_login(site_admin)
    assert client.post(reverse("dynamics_crm:sync_now")).status_code == 403
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_sync_dry_run_and_full_resync_buttons_queue_the_right_runs(admin_client, setting):
    for kind, full, dry in [("sync", False, False), ("dry_run", True, True)]:
        response = admin_client.post(reverse("dynamics_crm:sync_now"), {"kind": kind})
        assert response.status_code == 302
        run = SyncRun.objects.filter(company=setting.company).order_by("-id").first()
        assert (run.full, run.dry_run) == (full, dry)
    # A full resync upgrades the sync already queued instead of queueing a second one.
    admin_client.post(reverse("dynamics_crm:sync_now"), {"kind": "full"})
    assert SyncRun.objects.filter(company=setting.company, dry_run=False).get().full


@pytest.mark.django_db
def test_held_deactivations_are_approved_from_the_runs_page(
    admin_client, setting, site_admin, held_run
):
    run, (learner,) = held_run("leaver")

    page = admin_client.get(reverse("dynamics_crm:run_detail", args=[run.pk])).content.decode()
    assert "1 deactivations are held" in page and "leaver@acme.test" in page

    url = reverse("dynamics_crm:decide_held", args=[run.pk])
    # The button asks first, naming who would be deactivated; nothing is decided yet.
    confirm = admin_client.post(url, {"decision": "approve"}).content.decode()
    assert "Deactivate 1 person" in confirm and "leaver@acme.test" in confirm
    learner.refresh_from_db()
    assert learner.is_active
    through = run.changes.get().pk
    admin_client.post(url, {"decision": "approve", "confirm": "yes", "through": through})

    learner.refresh_from_db()
    run.refresh_from_db()
    assert not learner.is_active and learner.deactivated_by_sync_at
    assert run.hold == "approved" and run.hold_decided_by == site_admin


@pytest.mark.django_db
@pytest.mark.parametrize("decision", ["", "Approve", "approve ", "yes", "delete"])
def test_a_held_decision_other_than_approve_or_reject_changes_nothing(
    admin_client, setting, decision, held_run
):
    run, (learner,) = held_run("leaver")
    response = admin_client.post(
        reverse("dynamics_crm:decide_held", args=[run.pk]), {"decision": decision}
    )
    assert response.status_code == 400
    run.refresh_from_db()
    learner.refresh_from_db()
    assert run.hold == "held" and run.hold_decided_by is None and learner.is_active
    assert run.changes.get().pending


@pytest.mark.django_db
def test_a_decided_hold_cant_be_decided_again(admin_client, setting, site_admin, held_run):
    run, (learner,) = held_run("leaver")
    url = reverse("dynamics_crm:decide_held", args=[run.pk])
    through = run.changes.get().pk
    admin_client.post(url, {"decision": "reject", "confirm": "yes", "through": through})
    run.refresh_from_db()
    assert run.hold == "rejected"

    # Another admin, on a page loaded before the decision, approves.
    other = User.objects.create_site_admin(setting.company, "other@acme.test", ADMIN_PASSWORD)
    other_client = Client()
    other_client.force_login(other)
    response = other_client.post(
        url, {"decision": "approve", "confirm": "yes", "through": through}, follow=True
    )
    page = response.content.decode()
    assert "This hold was already rejected by admin@acme.test: nothing changed." in page
    assert "Approved:" not in page
    run.refresh_from_db()
    learner.refresh_from_db()
    assert run.hold == "rejected" and run.hold_decided_by == site_admin
    assert learner.is_active and run.deactivated == 0


@pytest.mark.django_db
def test_the_lookup_page_refuses_a_huge_email_before_anything_is_sent(
    admin_client, setting, simulator
):
    simulator.clear_request_log()
    response = admin_client.post(
        reverse("dynamics_crm:lookup"), {"email": "a" * 100_000 + "@example.com", "apply": "1"}
    )
    assert response.status_code == 200
    assert "an email has at most 254" in response.content.decode()
    assert simulator.request_log() == []
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_moving_to_another_organization_in_the_form_forgets_the_delta_link(
    admin_client, setting, simulator, connection_form
):
    setting.delta_link = f"{setting.organization_uri}/api/data/v9.2/systemusers?$deltatoken=1"
    setting.delta_fingerprint = "abc"
    setting.save()
    info = simulator.info
    fields = {
        "tenant_id": info["tenant_id"],
        "client_id": info["client_id"],
        "authority_host": info["authority_host"],
    }
    # Saving the same organization keeps it.
    admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(organization_uri=info["organization_uri"], **fields),
    )
    setting.refresh_from_db()
    assert setting.delta_link and setting.delta_fingerprint == "abc"

    response = admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(organization_uri="https://contoso.crm.dynamics.com", **fields),
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.organization_uri == "https://contoso.crm.dynamics.com"
    assert setting.delta_link == "" and setting.delta_fingerprint == ""
    assert setting.needs_full_sync() == "No earlier sync to continue from."


@pytest.mark.django_db
def test_the_changes_export_as_csv_with_formulas_defused(admin_client, setting):
    from learnexa.dynamics_crm.models import SyncChange

    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    SyncChange.objects.create(
        run=run,
        email="a@acme.test",
        action="updated",
        fields={"job_title": ["Old", "=HYPERLINK(1)"]},
    )
    SyncChange.objects.create(
        run=run, email="b@acme.test", action="skipped", reason="No primary email."
    )

    response = admin_client.get(reverse("dynamics_crm:run_changes_csv", args=[run.pk]))

    body = b"".join(response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0] == "action,pending,email,dynamics_systemuser_id,fields,reason"
    assert len(lines) == 3
    assert "job_title: Old -> =HYPERLINK(1)" in body  # inside the cell, not at its start
    assert setting.client_secret() not in body


@pytest.mark.django_db
def test_the_users_page_filters_by_status_source_and_link(admin_client, company):
    User.objects.create(
        company=company,
        email="linked@acme.test",
        created_source="dynamics_crm",
        dynamics_systemuser_id="9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
    )
    User.objects.create(company=company, email="gone@acme.test", is_active=False)
    page = admin_client.get(reverse("manage_site:users"), {"link": "linked"}).content.decode()
    assert (
        "linked@acme.test" in page
        and "gone@acme.test" not in page
        and "admin@acme.test" not in page
    )
    page = admin_client.get(reverse("manage_site:users"), {"status": "inactive"}).content.decode()
    assert "gone@acme.test" in page and "linked@acme.test" not in page
    page = admin_client.get(reverse("manage_site:users"), {"q": "GONE"}).content.decode()
    assert "gone@acme.test" in page and "1 match<" in page


@pytest.mark.django_db
def test_a_users_page_shows_the_dynamics_link_and_history_only_within_the_company(
    admin_client, setting, company
):
    from learnexa.dynamics_crm.models import SyncChange

    person = User.objects.create(
        company=company,
        email="p@acme.test",
        dynamics_systemuser_id="9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80",
    )
    run = SyncRun.objects.create(
        setting=setting, company=company, trigger="manual", status="succeeded"
    )
    SyncChange.objects.create(
        run=run, user=person, email=person.email, action="updated", fields={"job_title": ["A", "B"]}
    )

    page = admin_client.get(reverse("manage_site:user_detail", args=[person.pk])).content.decode()
    assert "9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80" in page and "job_title: A → B" in page
    assert "main.aspx?pagetype=entityrecord" in page

    stranger = User.objects.create(
        company=Company.objects.create(slug="o", name="O"), email="s@o.test"
    )
    assert (
        admin_client.get(reverse("manage_site:user_detail", args=[stranger.pk])).status_code == 404
    )


@pytest.mark.django_db
def test_the_dashboard_shows_the_integrations_problems(admin_client, setting, held_run):
    held_run(*[f"held{i}" for i in range(30)])
    type(setting).objects.filter(pk=setting.pk).update(
        schedule_paused=True, consecutive_failures=5, last_error="The client secret has expired."
    )
    page = admin_client.get(reverse("manage_site:dashboard")).content.decode()
    assert "30 deactivations are waiting for your approval" in page
    assert "The schedule is paused after 5 failed syncs" in page
    assert "The client secret has expired." in page


@pytest.mark.django_db
def test_every_page_carries_a_banner_when_the_integration_needs_attention(
    admin_client, setting, held_run
):
    assert (
        "await your approval" not in admin_client.get(reverse("manage_site:users")).content.decode()
    )
    held_run(*[f"held{i}" for i in range(30)])
    type(setting).objects.filter(pk=setting.pk).update(schedule_paused=True)
    page = admin_client.get(reverse("manage_site:users")).content.decode()
    assert "Deactivations from Dynamics 365 await your approval" in page
    assert "schedule is paused" in page


@pytest.mark.django_db
def test_a_search_pages_without_counting_every_match(admin_client, company):
    for i in range(120):
        User.objects.create(
            company=company, email=f"learner{i:03d}@acme.test", last_name=f"L{i:03d}"
        )
    first = admin_client.get(reverse("manage_site:users"), {"q": "learner"}).content.decode()
    assert "Matches 1–50 of more than 50" in first and 'rel="next"' in first
    last = admin_client.get(
        reverse("manage_site:users"), {"q": "learner", "page": 3}
    ).content.decode()
    assert "120 matches" in last and 'rel="next"' not in last and "learner119@acme.test" in last
    assert "121 users" in admin_client.get(reverse("manage_site:users")).content.decode()
