"""Losing access ends it at once: a deactivation (an admin's, or a sync's) signs the person
out at their next request, and a reactivation doesn't bring the old sessions back. And the
admin's buttons on a user's page: send an invitation, deactivate, reactivate."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import apply_deactivations

PASSWORD = "a-learner-password-77"


def make_learner(company, email="learner@acme.test", *, password=None, **fields) -> User:
    user = User(company=company, email=email, first_name="Lea", last_name="Rner", **fields)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user


@pytest.fixture
def learner(company):
    return make_learner(company, password=PASSWORD)


@pytest.fixture
def signed_in(learner):
    client = Client()
    client.force_login(learner)
    assert client.get(reverse("home")).status_code == 200
    return client


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def signed_out(client) -> bool:
    response = client.get(reverse("home"))
    return response.status_code == 302 and response["Location"].startswith(reverse("login"))


# -- sessions -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_admins_deactivation_ends_the_session_for_good(signed_in, learner):
    learner.set_active(False)
    assert signed_out(signed_in)
    User.objects.get(pk=learner.pk).set_active(True)
    assert signed_out(signed_in)
    # The person can sign in afresh, though.
    fresh = Client()
    fresh.force_login(User.objects.get(pk=learner.pk))
    assert fresh.get(reverse("home")).status_code == 200


@pytest.mark.django_db
def test_reactivating_does_not_restore_a_session_that_ended(signed_in, learner):
    # Only the epoch keeps the session out once is_active is back: prove it does.
    User.objects.filter(pk=learner.pk).update(is_active=False)
    User.objects.filter(pk=learner.pk).update(is_active=True)
    assert not signed_out(signed_in)  # flipping is_active alone ends nothing
    learner.set_active(False)
    learner.set_active(True)
    assert signed_out(signed_in)


@pytest.mark.django_db
def test_a_syncs_deactivation_ends_the_session_for_good(signed_in, learner, setting):
    User.objects.filter(pk=learner.pk).update(dynamics_systemuser_id=uuid.uuid4())
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger="manual", status="succeeded"
    )
    SyncChange.objects.create(
        run=run, user=learner, email=learner.email, action="deactivated", pending=True
    )
    assert apply_deactivations(run.changes.filter(pending=True)) == 1
    assert signed_out(signed_in)
    # The sync's own reactivation (a record back in scope) restores no session either.
    User.objects.filter(pk=learner.pk).update(is_active=True, deactivated_by_sync_at=None)
    assert signed_out(signed_in)


# -- the admin's buttons --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_user_page_says_how_the_person_signs_in(admin_client, company, learner):
    invited = make_learner(company, "invited@acme.test")
    page = admin_client.get(reverse("manage_site:user_detail", args=[learner.pk])).content
    assert b"With a password" in page
    page = admin_client.get(reverse("manage_site:user_detail", args=[invited.pk])).content.decode()
    assert "No invitation sent yet" in page and ">Send invitation<" in page
    admin_client.post(reverse("manage_site:invite_user", args=[invited.pk]))
    page = admin_client.get(reverse("manage_site:user_detail", args=[invited.pk])).content.decode()
    assert "Invitation sent on" in page and "Send the invitation again" in page


@pytest.mark.django_db
def test_the_user_page_names_microsoft_and_not_yet(admin_client, company, connect):
    # Awaits dynamics_crm.learner_sign_in (the provider for the company's choice).
    setting = connect(company, learner_sign_in="microsoft")
    person = make_learner(
        company,
        "ms@acme.test",
        created_source=User.Source.DYNAMICS_CRM,
        dynamics_systemuser_id=uuid.uuid4(),
        entra_object_id=uuid.uuid4(),
    )
    url = reverse("manage_site:user_detail", args=[person.pk])
    page = admin_client.get(url).content.decode()
    assert "With Microsoft" in page
    assert reverse("manage_site:invite_user", args=[person.pk]) not in page
    setting.learner_sign_in = "not_yet"
    setting.save()
    page = admin_client.get(url).content.decode()
    assert "Not yet open to people from Dynamics 365" in page
    assert reverse("manage_site:invite_user", args=[person.pk]) not in page
    assert (
        admin_client.post(reverse("manage_site:invite_user", args=[person.pk])).status_code == 302
    )
    assert mail.outbox == []


@pytest.mark.django_db
def test_send_invitation_emails_a_working_link_even_right_after_another(
    admin_client, company, settings
):
    settings.LEARNEXA_INVITATION_RESEND_SECONDS = 3600
    person = make_learner(company, "invited@acme.test")
    url = reverse("manage_site:invite_user", args=[person.pk])
    for _ in range(2):
        response = admin_client.post(url, follow=True)
        assert "Sent invited@acme.test a link to set a password" in response.content.decode()
    assert len(mail.outbox) == 2
    path = re.search(r"http://testserver(/invitation/\S+/)", mail.outbox[1].body).group(1)
    assert Client().get(path).status_code == 302  # the newest link works


@pytest.mark.django_db
def test_deactivate_asks_first_then_signs_the_person_out(admin_client, learner, signed_in):
    url = reverse("manage_site:deactivate_user", args=[learner.pk])
    page = admin_client.get(url).content.decode()
    assert "Deactivate Lea Rner?" in page and f'action="{url}"' in page
    assert User.objects.get(pk=learner.pk).is_active  # asking changed nothing
    response = admin_client.post(url, follow=True)
    assert "is deactivated and signed out" in response.content.decode()
    assert not User.objects.get(pk=learner.pk).is_active
    assert signed_out(signed_in)

    page = admin_client.get(reverse("manage_site:user_detail", args=[learner.pk])).content
    assert b"Reactivate" in page
    admin_client.post(reverse("manage_site:reactivate_user", args=[learner.pk]))
    assert User.objects.get(pk=learner.pk).is_active
    assert signed_out(signed_in)


@pytest.mark.django_db
def test_an_admin_cannot_deactivate_themselves(admin_client, site_admin):
    page = admin_client.get(reverse("manage_site:user_detail", args=[site_admin.pk])).content
    assert reverse("manage_site:deactivate_user", args=[site_admin.pk]).encode() not in page
    response = admin_client.post(reverse("manage_site:deactivate_user", args=[site_admin.pk]))
    assert response.status_code == 302
    assert User.objects.get(pk=site_admin.pk).is_active
    assert admin_client.get(reverse("manage_site:dashboard")).status_code == 200


ACTIONS = ["invite_user", "deactivate_user", "reactivate_user"]


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
def test_another_companys_people_are_not_found(admin_client, action):
    other = Company.objects.create(slug="globex", name="Globex")
    stranger = make_learner(other, "stranger@globex.test")
    if action == "reactivate_user":
        stranger.set_active(False)
    response = admin_client.post(reverse(f"manage_site:{action}", args=[stranger.pk]))
    assert response.status_code == 404
    stranger.refresh_from_db()
    assert stranger.is_active is (action != "reactivate_user")
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
def test_learners_may_not_use_the_buttons(company, action):
    target = make_learner(company, "target@acme.test")
    if action == "reactivate_user":
        target.set_active(False)
    learner = make_learner(company, "nosy@acme.test", password=PASSWORD)
    client = Client()
    client.force_login(learner)
    assert client.post(reverse(f"manage_site:{action}", args=[target.pk])).status_code == 403
    target.refresh_from_db()
    assert target.is_active is (action != "reactivate_user")
    assert mail.outbox == []


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["invite_user", "reactivate_user"])
def test_the_buttons_take_posts_only(admin_client, learner, action):
    assert admin_client.get(reverse(f"manage_site:{action}", args=[learner.pk])).status_code == 405
