"""Learners sign in with Microsoft: identifier-first /login/, the authorization-code flow
through the simulated Entra ID, and every refusal of the callback."""

from __future__ import annotations

import html
import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.sync import execute_run

REDIRECT_URI = "http://testserver/dynamics_crm/authenticate"
MICROSOFT = DynamicsCrmSetting.LearnerSignIn.MICROSOFT


def synced(setting) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    return execute_run(run)


@pytest.fixture
def microsoft(company, connect):
    """Acme, connected, its people synced, and signing in with Microsoft."""
    setting = connect(company, learner_sign_in=MICROSOFT)
    assert synced(setting).status == SyncRun.Status.SUCCEEDED
    return setting


@pytest.fixture
def learner(microsoft):
    return (
        User.objects.filter(company=microsoft.company, entra_object_id__isnull=False)
        .exclude(email="")
        .order_by("pk")
        .first()
    )


def enter_email(client, email: str, **extra):
    return client.post(reverse("login"), {"username": email, **extra})


def at_microsoft(sim_browser, auth_uri: str) -> str:
    """The simulated Entra ID signs in and sends the browser back: the callback's URL."""
    answer = sim_browser.get(auth_uri, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return location.removeprefix("http://testserver")


def sign_in(client, sim_browser, email: str, **extra):
    """Enter the email, go through Microsoft, come back: the callback's response."""
    response = enter_email(client, email, **extra)
    assert response.status_code == 302, response.content.decode()[:1000]
    return client.get(at_microsoft(sim_browser, response["Location"]))


def signed_in_as(client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def refusal(client, response) -> str:
    """The refused callback sends the browser back to /login/, saying why."""
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert signed_in_as(client) is None
    return html.unescape(client.get(response["Location"]).content.decode())


@pytest.mark.django_db
def test_a_learner_enters_their_email_and_is_signed_in_by_microsoft(
    client, learner, simulator, sim_browser
):
    response = enter_email(client, learner.email.upper())
    assert response.status_code == 302
    authorize = urlsplit(response["Location"])
    query = parse_qs(authorize.query)
    assert response["Location"].startswith(
        f"{simulator.info['authority_host']}/{simulator.info['tenant_id']}/oauth2/v2.0/authorize"
    )
    assert query["login_hint"] == [learner.email]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email"}
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT_URI]

    back = client.get(at_microsoft(sim_browser, response["Location"]))
    assert back.status_code == 302 and back["Location"] == "/"
    assert signed_in_as(client) == learner.pk


@pytest.mark.django_db
def test_the_login_page_may_send_the_browser_to_the_authority(client, simulator):
    response = client.get(reverse("login"))
    form_action = next(
        part
        for part in response["Content-Security-Policy"].split(";")
        if part.strip().startswith("form-action")
    )
    assert "https://login.microsoftonline.com" in form_action
    assert simulator.info["authority_host"] in form_action


OTHER_TENANT = "6f1e1a3c-95d2-4c8e-9a0b-3b9d2f1c7e55"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param(
            lambda sim, now: {"iss": f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"},
            "InvalidIssuerError",
            id="issuer",
        ),
        pytest.param(
            lambda sim, now: {"aud": str(uuid.uuid4())}, "InvalidAudienceError", id="audience"
        ),
        pytest.param(lambda sim, now: {"nonce": "not-this-browsers"}, "nonce", id="nonce"),
        pytest.param(
            lambda sim, now: {"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200},
            "ExpiredSignatureError",
            id="expired",
        ),
        pytest.param(
            lambda sim, now: {
                "tid": OTHER_TENANT,
                "iss": f"{sim.info['authority_host']}/{OTHER_TENANT}/v2.0",
            },
            "InvalidIssuerError",
            id="another-tenant",
        ),
        pytest.param(lambda sim, now: {"oid": None}, "MissingRequiredClaimError", id="no-oid"),
    ],
)
@pytest.mark.django_db
def test_the_callback_refuses_an_id_token_that_fails_a_check(
    client, learner, simulator, sim_browser, caplog, fault, reason
):
    claims = fault(simulator, int(time.time()))
    simulator.inject_fault("id_token", target="entra", claims=claims)
    page = refusal(client, sign_in(client, sim_browser, learner.email))
    assert "sign in again" in page.lower()
    assert reason in caplog.text


@pytest.mark.django_db
def test_the_callback_refuses_an_id_token_signed_with_another_key(
    client, learner, simulator, sim_browser, caplog
):
    simulator.inject_fault("id_token", target="entra", claims={}, signature="foreign")
    assert "couldn't be verified" in refusal(client, sign_in(client, sim_browser, learner.email))
    assert "InvalidSignatureError" in caplog.text


@pytest.mark.django_db
def test_a_replayed_callback_is_refused(client, learner, sim_browser):
    response = enter_email(client, learner.email)
    callback = at_microsoft(sim_browser, response["Location"])
    assert client.get(callback)["Location"] == "/"
    client.logout()

    page = refusal(client, client.get(callback))
    assert "already used" in page
    # Nor in another sim_browser, which never started it.
    other = Client()
    assert "already used" in refusal(other, other.get(callback))


@pytest.mark.django_db
def test_the_state_expires_after_ten_minutes(client, learner, sim_browser, monkeypatch):
    response = enter_email(client, learner.email)
    callback = at_microsoft(sim_browser, response["Location"])
    later = time.time() + 601
    monkeypatch.setattr("learnexa.dynamics_crm.flow_states.time.time", lambda: later)
    assert "longer than 10 minutes" in refusal(client, client.get(callback))


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "/\\evil"])
@pytest.mark.django_db
def test_next_never_leads_off_the_site(client, learner, sim_browser, next_url):
    response = sign_in(client, sim_browser, learner.email, next=next_url)
    assert response["Location"] == "/"
    assert signed_in_as(client) == learner.pk


@pytest.mark.django_db
def test_next_on_the_site_is_kept(client, learner, sim_browser):
    response = sign_in(client, sim_browser, learner.email, next="/password/")
    assert response["Location"] == "/password/"


@pytest.mark.django_db
def test_a_token_of_the_same_person_in_another_company_opens_only_that_company(
    client, learner, simulator, sim_browser, connect
):
    # Globex syncs the same directory: the same person, the same oid, another user row.
    globex = Company.objects.create(slug="globex", name="Globex")
    other_setting = connect(globex, learner_sign_in=MICROSOFT)
    synced(other_setting)
    twin = User.objects.get(company=globex, entra_object_id=learner.entra_object_id)

    response = sign_in(client, sim_browser, learner.email, company="globex")
    assert response["Location"] == "/"
    assert signed_in_as(client) == twin.pk != learner.pk


@pytest.mark.django_db
def test_nobody_is_found_by_email(client, learner, simulator, sim_browser):
    # The token's oid is nobody's here, although its email is the learner's.
    simulator.inject_fault("id_token", target="entra", claims={"oid": str(uuid.uuid4())})
    page = refusal(client, sign_in(client, sim_browser, learner.email))
    assert "has no account on Learnexa" in page


@pytest.mark.django_db
def test_a_person_deactivated_during_the_sign_in_is_refused(client, learner, sim_browser):
    response = enter_email(client, learner.email)
    callback = at_microsoft(sim_browser, response["Location"])
    learner.set_active(False)
    assert "deactivated" in refusal(client, client.get(callback))


@pytest.mark.parametrize(
    ("account", "words"),
    [("disabled", "is disabled in Acme"), ("unknown", "doesn't know this account in Acme")],
)
@pytest.mark.django_db
def test_entra_id_refusing_the_person_is_said_in_plain_words(
    client, learner, simulator, sim_browser, account, words
):
    requests.post(
        f"{simulator.info['control_url']}/users/{learner.dynamics_systemuser_id}/entra",
        json={"account": account},
        headers={"Authorization": f"Bearer {simulator.info['control_token']}"},
        verify=simulator.info["ca_bundle"],
        timeout=10,
    ).raise_for_status()
    assert words in refusal(client, sign_in(client, sim_browser, learner.email))


@pytest.mark.django_db
def test_site_admins_and_people_added_by_hand_get_the_password_step(client, microsoft, site_admin):
    site_admin.entra_object_id = uuid.uuid4()
    site_admin.dynamics_systemuser_id = uuid.uuid4()
    site_admin.save()
    page = enter_email(client, site_admin.email)
    assert page.status_code == 200
    assert 'name="password"' in page.content.decode()


@pytest.mark.parametrize(
    "choice",
    [DynamicsCrmSetting.LearnerSignIn.INVITATION, DynamicsCrmSetting.LearnerSignIn.NOT_YET],
)
@pytest.mark.django_db
def test_without_microsoft_the_learner_is_not_sent_there(client, learner, microsoft, choice):
    microsoft.learner_sign_in = choice
    microsoft.save(update_fields=["learner_sign_in"])
    page = enter_email(client, learner.email)
    assert page.status_code == 200
    assert "we have emailed it a link" in page.content.decode()


@pytest.mark.django_db
def test_an_unknown_email_gets_the_same_answer_as_a_person_without_password(
    client, learner, microsoft
):
    microsoft.learner_sign_in = DynamicsCrmSetting.LearnerSignIn.INVITATION
    microsoft.save(update_fields=["learner_sign_in"])
    known = main_part(enter_email(client, learner.email), learner.email)
    unknown = main_part(enter_email(Client(), "nobody@contoso.com"), "nobody@contoso.com")
    assert "we have emailed it a link" in known
    assert known == unknown


def main_part(response, email: str) -> str:
    """The page's content, without what differs on every page (the CSRF token)."""
    page = response.content.decode().split("<main>")[1]
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page).replace(email, "EMAIL")


@pytest.mark.django_db
def test_an_email_that_is_not_one_is_asked_again(client, db):
    page = enter_email(client, "not an email").content.decode()
    assert "Enter your email address" in page
    assert 'name="password"' not in page


@pytest.mark.django_db
def test_an_unreachable_authority_is_said_without_a_500(client, learner, simulator):
    simulator.inject_fault("refuse", target="entra", count=100)
    response = enter_email(client, learner.email)
    assert response.status_code == 302 and response["Location"] == reverse("login")
    page = html.unescape(client.get(reverse("login")).content.decode())
    assert "isn't possible for Acme right now" in page
