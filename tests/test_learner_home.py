"""A learner's own page: their name and profile, read-only; changing their password; and
nothing of Manage site or the Dynamics integration."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from learnexa.accounts.models import User
from learnexa.dynamics_crm import urls as dynamics_urls
from learnexa.manage_site import urls as manage_urls

PASSWORD = "a-learner-password-77"


@pytest.fixture
def learner(company):
    user = User(
        company=company,
        email="ada@acme.test",
        first_name="Ada",
        last_name="Lovelace",
        job_title="Analyst",
        department="Engines",
        phone="+44 20 7946 0000",
        city="London",
        country="United Kingdom",
        employee_id="E-1815",
        created_source=User.Source.DYNAMICS_CRM,
        dynamics_systemuser_id=uuid.uuid4(),
    )
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def learner_client(client, learner):
    client.force_login(learner)
    return client


@pytest.mark.django_db
def test_the_learner_page_shows_their_name_and_profile_read_only(learner_client):
    response = learner_client.get(reverse("home"))
    assert response.status_code == 200
    page = response.content.decode()
    for value in (
        "Ada Lovelace",
        "ada@acme.test",
        "Analyst",
        "Engines",
        "+44 20 7946 0000",
        "London, United Kingdom",
        "E-1815",
    ):
        assert value in page
    assert "These details come from Acme's own records" in page
    main = page.split("<main>")[1]
    # Nothing to edit: the only inputs are the forms' CSRF tokens (Sign out).
    assert main.count("<input") == main.count('name="csrfmiddlewaretoken"')


@pytest.mark.django_db
def test_people_added_by_hand_are_told_to_ask_a_site_admin(client, company, site_admin):
    person = User.objects.create(company=company, email="hand@acme.test", first_name="Hand")
    client.force_login(person)
    page = client.get(reverse("home")).content.decode()
    assert "ask a site admin at Acme (admin@acme.test)" in page
    assert "own records" not in page


@pytest.mark.django_db
def test_a_learner_sees_the_brand_their_name_and_sign_out_but_no_manage_site(learner_client):
    page = learner_client.get(reverse("home")).content.decode()
    assert "Learnexa · Acme" in page and "Ada Lovelace" in page
    assert 'action="/logout/"' in page and "Sign out" in page
    assert 'aria-label="Manage site"' not in page
    assert reverse("manage_site:users") not in page
    assert reverse("dynamics_crm:integration") not in page


@pytest.mark.django_db
def test_a_site_admin_still_sees_the_manage_site_navigation(client, site_admin):
    client.force_login(site_admin)
    page = client.get(reverse("manage_site:dashboard")).content.decode()
    assert 'aria-label="Manage site"' in page and reverse("dynamics_crm:integration") in page


@pytest.mark.django_db
def test_anonymous_visitors_go_to_sign_in_and_site_admins_to_manage_site(client, site_admin):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    client.force_login(site_admin)
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"] == reverse("manage_site:dashboard")


@pytest.mark.django_db
def test_changing_the_password_keeps_this_session_and_ends_the_others(learner_client, learner):
    elsewhere = Client()
    elsewhere.force_login(learner)
    page = learner_client.get(reverse("home")).content.decode()
    assert f'href="{reverse("password_change")}"' in page
    response = learner_client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-brand-new-password-88",
            "new_password2": "a-brand-new-password-88",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert learner_client.get(reverse("home")).status_code == 200
    assert elsewhere.get(reverse("home")).status_code == 302
    assert User.objects.get(pk=learner.pk).check_password("a-brand-new-password-88")


@pytest.mark.django_db
def test_a_wrong_old_password_changes_nothing(learner_client, learner):
    response = learner_client.post(
        reverse("password_change"),
        {
            "old_password": "wrong",
            "new_password1": "x-y-z-1234567",
            "new_password2": "x-y-z-1234567",
        },
    )
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert User.objects.get(pk=learner.pk).check_password(PASSWORD)


@pytest.mark.django_db
def test_people_without_a_password_get_no_change_password_link(client, learner):
    learner.set_unusable_password()
    learner.save()
    client.force_login(learner)
    page = client.get(reverse("home")).content.decode()
    assert reverse("password_change") not in page
    assert client.get(reverse("password_change"))["Location"] == reverse("home")


def _sample(value_type) -> object:
    return 1 if value_type == "int" else "x"


def _urls(module, namespace):
    for pattern in module.urlpatterns:
        assert isinstance(pattern, URLPattern)
        converters = pattern.pattern.converters
        kwargs = {
            name: _sample("int" if type(conv).__name__ == "IntConverter" else "str")
            for name, conv in converters.items()
        }
        yield reverse(f"{namespace}:{pattern.name}", kwargs=kwargs)


ADMIN_URLS = [*_urls(manage_urls, "manage_site"), *_urls(dynamics_urls, "dynamics_crm")]
# The redirect URI registered with Entra ID is also where a learner's Microsoft sign-in comes
# back; without a flow of theirs in the session it refuses and sends them to sign in.
SHARED_CALLBACK = reverse("dynamics_crm:authenticate")
# Where Dynamics posts its webhook events: no session counts there, only the key.
WEBHOOK = reverse("dynamics_crm:webhook", kwargs={"webhook_id": _sample("str")})


@pytest.mark.django_db
@pytest.mark.parametrize("url", ADMIN_URLS)
def test_a_learner_gets_nothing_of_manage_site_or_the_integration(learner_client, url):
    statuses = [learner_client.get(url).status_code, learner_client.post(url).status_code]
    if url == SHARED_CALLBACK:
        # Answered as a learner's sign-in coming back: refused, never the admin's flow.
        response = learner_client.get(url)
        assert response.status_code in (302, 400, 403, 404)
        assert not response.get("Location", "").startswith(("/manage", "/dynamics_crm"))
        return
    if url == WEBHOOK:
        # A learner's session is no key: refused like a wrong key, and never queues a sync.
        assert statuses == [405, 401], statuses
        return
    # Refused, or (for the method a view doesn't take, before it looks at who asks) 405;
    # never a page, never a redirect into it.
    assert all(status in (403, 404, 405) for status in statuses), statuses
    assert any(status in (403, 404) for status in statuses), statuses
