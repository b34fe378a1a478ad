"""The holds inbox: every held deactivation of the company, whatever run held it, decided one
person at a time or all at once, always after a confirmation naming who is affected."""

import pytest
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import AuditEvent, SyncChange, SyncRun
from learnexa.dynamics_crm.sync import decide_held

ADMIN_PASSWORD = "a-long-test-password-1"
INBOX = "dynamics_crm:holds"
DECIDE = "dynamics_crm:decide_holds"


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def change_of(user):
    return SyncChange.objects.get(user=user)


def decide(client, decision, **fields):
    """The confirmation's post, as the confirmation page sends it."""
    return client.post(reverse(DECIDE), {"decision": decision, "confirm": "yes", **fields})


def active(*users):
    return [User.objects.get(pk=u.pk).is_active for u in users]


@pytest.mark.django_db
def test_the_inbox_lists_a_hold_from_a_run_older_than_the_latest_20(
    admin_client, setting, held_run
):
    old, people = held_run("ann", "bob", days_ago=30)
    for _ in range(25):
        SyncRun.objects.create(
            setting=setting, company=setting.company, trigger="schedule", status="succeeded"
        )
    assert old.pk not in [r.pk for r in setting.runs.all()[:20]]

    page = admin_client.get(reverse(INBOX)).content.decode()
    assert "ann@acme.test" in page and "bob@acme.test" in page and "Ann" in page
    assert "2 people are waiting" in page
    assert reverse("dynamics_crm:run_detail", args=[old.pk]) in page
    # The integration page, the dashboard and every page's banner count and link to it.
    integration = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert "2 deactivations are waiting for your decision" in integration
    assert f'href="{reverse(INBOX)}"' in integration
    dashboard = admin_client.get(reverse("manage_site:dashboard")).content.decode()
    assert "2 deactivations are waiting for your approval" in dashboard
    assert f'href="{reverse(INBOX)}"' in dashboard
    users = admin_client.get(reverse("manage_site:users")).content.decode()
    assert "await your approval: 2 people" in users


@pytest.mark.django_db
def test_approving_one_person_deactivates_exactly_that_person(
    admin_client, setting, site_admin, held_run
):
    run, (ann, bob, cat) = held_run("ann", "bob", "cat")

    # The row's button asks first, naming the person; nothing happens yet.
    response = admin_client.post(
        reverse(DECIDE), {"decision": "approve", "change": change_of(bob).pk}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Deactivate 1 person" in page and "bob@acme.test" in page
    assert "ann@acme.test" not in page and "Confirm: deactivate 1 person" in page
    assert active(ann, bob, cat) == [True, True, True]

    response = decide(admin_client, "approve", change=change_of(bob).pk)
    assert response.status_code == 302
    assert active(ann, bob, cat) == [True, False, True]
    change = change_of(bob)
    assert not change.pending and change.decided_by == site_admin and change.decided_at
    assert change_of(ann).pending and change_of(cat).pending
    run.refresh_from_db()
    assert run.hold == "held" and run.deactivated == 1
    inbox = admin_client.get(reverse(INBOX)).content.decode()
    assert "2 people are waiting" in inbox and "Approved: deactivated" in inbox


@pytest.mark.django_db
def test_rejecting_one_person_keeps_them_active(admin_client, setting, site_admin, held_run):
    run, (ann, bob) = held_run("ann", "bob")
    decide(admin_client, "reject", change=change_of(ann).pk)
    assert active(ann, bob) == [True, True]
    change = change_of(ann)
    assert (change.pending, change.action) == (False, "skipped")
    assert change.reason == "Deactivation rejected by admin@acme.test."
    assert change.decided_by == site_admin and change.decided_at
    assert change_of(bob).pending
    run.refresh_from_db()
    assert run.hold == "held"


@pytest.mark.django_db
def test_all_decides_everyone_held_across_runs_and_the_decision_is_shown(
    admin_client, setting, site_admin, held_run
):
    old, (ann,) = held_run("ann", days_ago=10)
    new, (bob, cat) = held_run("bob", "cat")
    decide(admin_client, "approve", change=change_of(bob).pk)

    # "Reject all" names everyone still waiting, from both runs.
    page = admin_client.post(reverse(DECIDE), {"decision": "reject", "all": "1"}).content.decode()
    assert "Keep 2 people active" in page and "ann@acme.test" in page and "cat@acme.test" in page
    through = SyncChange.objects.filter(pending=True).order_by("-pk").first().pk
    decide(admin_client, "reject", all="1", through=through)

    assert active(ann, bob, cat) == [True, False, True]
    old.refresh_from_db()
    new.refresh_from_db()
    # Mixed decisions count as approved: someone was deactivated.
    assert (old.hold, new.hold) == ("rejected", "approved")
    assert new.hold_decided_by == site_admin and new.hold_decided_at
    run_page = admin_client.get(reverse("dynamics_crm:run_detail", args=[new.pk])).content
    assert b"Held deactivations approved by admin@acme.test on" in run_page
    inbox = admin_client.get(reverse(INBOX)).content.decode()
    assert "Nobody is waiting for a decision." in inbox
    assert inbox.count("Rejected: kept active") == 2 and "admin@acme.test" in inbox


@pytest.mark.django_db
def test_all_decides_only_the_people_the_admin_confirmed(admin_client, setting, held_run):
    _, (ann,) = held_run("ann")
    through = change_of(ann).pk
    # A later sync holds someone else after the confirmation page was shown.
    _, (bob,) = held_run("bob")
    decide(admin_client, "approve", all="1", through=through)
    assert active(ann, bob) == [False, True]
    assert change_of(bob).pending


@pytest.mark.django_db
def test_nothing_is_decided_without_the_confirmation(admin_client, setting, held_run):
    run, (ann,) = held_run("ann")
    for fields in (
        {"change": change_of(ann).pk},
        {"all": "1"},
        # "All" without the snapshot of whom the admin saw: asked again.
        {"all": "1", "confirm": "yes"},
        {"change": change_of(ann).pk, "confirm": "no"},
    ):
        response = admin_client.post(reverse(DECIDE), {"decision": "approve", **fields})
        assert response.status_code == 200 and b"Confirm: deactivate 1 person" in response.content
    run_page = reverse("dynamics_crm:decide_held", args=[run.pk])
    assert b"Confirm: deactivate" in admin_client.post(run_page, {"decision": "approve"}).content
    assert active(ann) == [True] and change_of(ann).pending
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("decision", ["", "Approve", "approve ", "yes", "delete"])
def test_a_decision_other_than_approve_or_reject_is_refused(
    admin_client, setting, decision, held_run
):
    _, (ann,) = held_run("ann")
    response = decide(admin_client, decision, change=change_of(ann).pk)
    assert response.status_code == 400
    assert "approve" in response.content.decode() and "reject" in response.content.decode()
    assert active(ann) == [True] and change_of(ann).pending


@pytest.mark.django_db
def test_bad_people_are_refused_without_an_error_page(admin_client, setting, held_run):
    held_run("ann")
    assert decide(admin_client, "approve", change="x").status_code == 400
    assert decide(admin_client, "approve", through="x", all="1").status_code == 400
    assert decide(admin_client, "approve").status_code == 400
    assert decide(admin_client, "approve", change=999999).status_code == 404


@pytest.mark.django_db
def test_another_companys_admin_can_neither_see_nor_decide(setting, held_run):
    run, (ann,) = held_run("ann")
    other = Company.objects.create(slug="other", name="Other")
    stranger = Client()
    stranger.force_login(User.objects.create_site_admin(other, "admin@other.test", ADMIN_PASSWORD))

    assert b"ann@acme.test" not in stranger.get(reverse(INBOX)).content
    assert decide(stranger, "approve", change=change_of(ann).pk).status_code == 404
    response = stranger.post(
        reverse("dynamics_crm:decide_held", args=[run.pk]), {"decision": "approve"}
    )
    assert response.status_code == 404
    assert active(ann) == [True] and change_of(ann).pending


@pytest.mark.django_db
def test_of_two_admins_deciding_the_same_person_the_second_is_told(
    admin_client, setting, site_admin, held_run
):
    _, (ann,) = held_run("ann")
    pk = change_of(ann).pk
    other = Client()
    other.force_login(
        User.objects.create_site_admin(setting.company, "other@acme.test", ADMIN_PASSWORD)
    )
    # Both loaded the confirmation page; the first confirms, then the second.
    decide(admin_client, "reject", change=pk)
    response = other.post(
        reverse(DECIDE), {"decision": "approve", "confirm": "yes", "change": pk}, follow=True
    )
    page = response.content.decode()
    assert "This was already rejected by admin@acme.test: nothing changed." in page
    assert "Approved:" not in page
    assert active(ann) == [True] and change_of(ann).decided_by == site_admin
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_decide_held_still_decides_a_whole_run_and_a_subset(setting, site_admin, held_run):
    run, (ann, bob) = held_run("ann", "bob")
    assert decide_held(run, approve=True, by=site_admin, change_ids=[change_of(ann).pk]) == 1
    run.refresh_from_db()
    assert run.hold == "held"
    assert decide_held(run, approve=False, by=site_admin) == 0
    run.refresh_from_db()
    assert active(ann, bob) == [False, True]
    assert run.hold == "approved" and run.hold_decided_by == site_admin and run.hold_decided_at
    # A decided run decides nothing more.
    assert decide_held(run, approve=True, by=site_admin) == 0
    assert active(bob) == [True]


@pytest.mark.django_db
def test_the_inbox_is_paginated(admin_client, setting, held_run):
    held_run(*[f"p{i:03d}" for i in range(60)])
    first = admin_client.get(reverse(INBOX)).content.decode()
    assert "p000@acme.test" in first and "p059@acme.test" not in first
    assert "Page 1 of 2" in first and "60 people are waiting" in first
    second = admin_client.get(reverse(INBOX), {"page": 2}).content.decode()
    assert "p059@acme.test" in second and "p000@acme.test" not in second
