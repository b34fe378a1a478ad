"""Sign in with Microsoft: the authorization-code flow with PKCE through the simulated
Entra ID, the state's checks, the encrypted token cache, and syncs that refresh it."""

from __future__ import annotations

import html
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from learnexa import encryption
from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm import flow_states, oauth
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.sync import execute_run

REDIRECT_URI = "http://testserver/dynamics_crm/authenticate"


@pytest.fixture
def delegated(company, connect):
    return connect(company, credential_type=DynamicsCrmSetting.CredentialType.DELEGATED)


@pytest.fixture
def admin_client(client, site_admin):
    client.force_login(site_admin)
    return client


def start_sign_in(client, setting) -> str:
    """Press "Sign in with Microsoft"; returns the authorize URL the browser is sent to."""
    response = client.post(reverse("dynamics_crm:sign_in"))
    assert response.status_code == 302, response.content.decode()[:2000]
    auth_uri = response["Location"]
    assert auth_uri.startswith(
        f"{setting.authority_host}/{setting.tenant_id}/oauth2/v2.0/authorize?"
    )
    return auth_uri


def sign_in_at_microsoft(sim_browser, auth_uri: str) -> str:
    """Follow the authorize URL to the simulated Entra ID, which signs in and sends the
    browser back; returns the callback's path and query."""
    answer = sim_browser.get(auth_uri, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return location.removeprefix("http://testserver")


def sync(setting) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    return execute_run(run)


def token_requests(simulator) -> list[dict]:
    return [e for e in simulator.request_log() if e["path"].endswith("/oauth2/v2.0/token")]


@pytest.mark.django_db
def test_sign_in_with_microsoft_end_to_end_then_syncs_that_refresh_the_tokens(
    admin_client, delegated, simulator, sim_browser
):
    auth_uri = start_sign_in(admin_client, delegated)
    query = parse_qs(urlsplit(auth_uri).query)
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    scopes = query["scope"][0].split()
    assert f"{delegated.organization_uri}/user_impersonation" in scopes
    assert "offline_access" in scopes
    assert query["client_id"] == [delegated.client_id]

    callback = sign_in_at_microsoft(sim_browser, auth_uri)
    assert parse_qs(urlsplit(callback).query)["state"] == query["state"]
    response = admin_client.get(callback)

    assert response.status_code == 302
    run = SyncRun.objects.get(company=delegated.company)
    assert response["Location"] == reverse("dynamics_crm:run_detail", args=[run.pk])
    delegated.refresh_from_db()
    assert delegated.has_token_cache and delegated.has_credential
    cache = json.loads(delegated.token_cache())
    (refresh_token,) = [t["secret"] for t in cache["RefreshToken"].values()]
    (access_token,) = [t["secret"] for t in cache["AccessToken"].values()]
    assert refresh_token not in delegated.token_cache_encrypted
    assert delegated.delegated_username and "@" in delegated.delegated_username

    # The page says who signed in, and shows no token.
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert delegated.delegated_username in page
    for secret in (refresh_token, access_token, delegated.token_cache_encrypted):
        assert secret not in page
    assert simulator.info["client_secret"] not in page

    # A sync takes the cached access token: no token request.
    simulator.clear_request_log()
    first = sync(delegated)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert first.created > 100
    assert token_requests(simulator) == []

    # The tokens expire: the sync refreshes them, and writes the new cache back.
    for _ in range(2):
        before = DynamicsCrmSetting.objects.get(pk=delegated.pk).token_cache()
        simulator.expire_tokens()
        simulator.clear_request_log()
        again = sync(DynamicsCrmSetting.objects.get(pk=delegated.pk))
        assert again.status == SyncRun.Status.SUCCEEDED, again.error
        assert [e["status"] for e in token_requests(simulator)] == [200]
        after = json.loads(DynamicsCrmSetting.objects.get(pk=delegated.pk).token_cache())
        # The simulator's refresh tokens work once: the second round proves the write-back.
        assert [t["secret"] for t in after["RefreshToken"].values()] != [
            t["secret"] for t in json.loads(before)["RefreshToken"].values()
        ]


@pytest.mark.django_db
def test_an_expired_refresh_token_fails_the_run_with_sign_in_advice(
    admin_client, delegated, simulator, sim_browser
):
    admin_client.get(sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated)))
    delegated.refresh_from_db()
    assert delegated.has_token_cache

    simulator.advance_clock(91 * 86400)  # past the refresh token's 90 days, tokens too
    run = sync(delegated)

    assert run.status == SyncRun.Status.FAILED
    assert "Sign in with Microsoft again" in run.error
    assert "AADSTS700082" in run.error


@pytest.mark.django_db
def test_a_signed_in_person_disabled_in_entra_fails_the_run_with_sign_in_advice(
    admin_client, delegated, simulator, sim_browser
):
    admin_client.get(sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated)))
    simulator.inject_fault("user_disabled", count=10_000, target="entra")
    simulator.advance_clock(2 * 3600)  # the access token has expired: a refresh is needed

    run = sync(delegated)

    assert run.status == SyncRun.Status.FAILED and not run.retryable
    assert "disabled in Entra ID" in run.error and "Sign in with Microsoft again" in run.error


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fault, text",
    [
        ({"kind": "tenant_not_found"}, "Entra ID has no tenant"),
        ({"kind": "status", "status": 503, "target": "entra"}, "kept failing with HTTP 503"),
        ({"kind": "refuse"}, "couldn't be reached"),
    ],
)
def test_signing_in_while_entra_id_fails_says_why_on_the_page(
    admin_client, delegated, simulator, fault, text
):
    fault = dict(fault)
    simulator.inject_fault(fault.pop("kind"), count=10_000, **fault)

    response = admin_client.post(reverse("dynamics_crm:sign_in"))

    assert response.status_code == 302
    page = html.unescape(admin_client.get(response["Location"]).content.decode())
    assert "Signing in with Microsoft couldn't start" in page and text in page


def assert_refused(response, client, text: str, setting) -> None:
    assert response.status_code == 302
    assert response["Location"] == reverse("dynamics_crm:integration")
    page = client.get(response["Location"]).content.decode()
    assert text in page, page[:3000]
    setting.refresh_from_db()
    assert not setting.has_token_cache
    assert not SyncRun.objects.filter(setting=setting).exists()


def _with_state(callback: str, state: str | None) -> str:
    path, _, query = callback.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params.pop("state")
    if state is not None:
        params["state"] = state
    return path + "?" + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("forged-state", "doesn&#x27;t match a sign-in started here"),
        (None, "had no state"),
    ],
)
def test_a_wrong_or_missing_state_is_refused(
    admin_client, delegated, simulator, sim_browser, state, text
):
    callback = sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated))
    response = admin_client.get(_with_state(callback, state))
    assert_refused(response, admin_client, text, delegated)


@pytest.mark.django_db
def test_a_replayed_answer_is_refused(admin_client, delegated, simulator, sim_browser):
    callback = sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated))
    assert admin_client.get(callback).status_code == 302
    delegated.refresh_from_db()
    stored = delegated.token_cache_encrypted
    assert stored

    response = admin_client.get(callback)

    assert response["Location"] == reverse("dynamics_crm:integration")
    page = admin_client.get(response["Location"]).content.decode()
    assert "it was already used" in page
    delegated.refresh_from_db()
    assert delegated.token_cache_encrypted == stored
    assert SyncRun.objects.filter(setting=delegated).count() == 1


@pytest.mark.django_db
def test_an_answer_after_ten_minutes_is_refused(
    admin_client, delegated, simulator, sim_browser, monkeypatch
):
    callback = sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated))
    real_time = flow_states.time.time
    monkeypatch.setattr(flow_states.time, "time", lambda: real_time() + 601)

    response = admin_client.get(callback)

    assert_refused(response, admin_client, "took longer than 10 minutes", delegated)


@pytest.mark.django_db
def test_another_companys_admin_cannot_complete_the_sign_in(
    admin_client, delegated, simulator, sim_browser, connect
):
    other_company = Company.objects.create(slug="globex", name="Globex")
    other_setting = connect(other_company, credential_type="delegated")
    other_admin = User.objects.create_site_admin(other_company, "admin@globex.test", "pw-123456789")
    other = Client()
    other.force_login(other_admin)

    callback = sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated))
    response = other.get(callback)

    assert_refused(response, other, "doesn&#x27;t match a sign-in started here", other_setting)
    delegated.refresh_from_db()
    assert not delegated.has_token_cache
    # The state was never this session's: the admin who started can still finish.
    assert admin_client.get(callback).status_code == 302
    delegated.refresh_from_db()
    assert delegated.has_token_cache


@pytest.mark.django_db
def test_a_sign_in_started_in_this_session_by_another_company_is_refused(
    delegated, simulator, sim_browser, connect, site_admin
):
    """Even with the state in the session, the company and admin that started must finish."""
    client = Client()
    client.force_login(site_admin)
    callback = sign_in_at_microsoft(sim_browser, start_sign_in(client, delegated))
    session = client.session
    pending = session[oauth.STATES.session_key]
    other_company = Company.objects.create(slug="globex", name="Globex")
    for entry in pending.values():
        entry["company"] = other_company.pk
    session[oauth.STATES.session_key] = pending
    session.save()

    response = client.get(callback)

    assert_refused(response, client, "started for another company", delegated)


@pytest.mark.django_db
def test_an_error_from_microsoft_is_explained_and_nothing_is_stored(
    admin_client, delegated, simulator
):
    auth_uri = start_sign_in(admin_client, delegated)
    state = parse_qs(urlsplit(auth_uri).query)["state"][0]
    response = admin_client.get(
        reverse("dynamics_crm:authenticate"),
        {
            "error": "access_denied",
            "error_description": "AADSTS65001: The user or administrator has not consented.",
            "state": state,
        },
    )
    assert_refused(response, admin_client, "Grant admin consent", delegated)


@pytest.mark.django_db
def test_signing_in_needs_a_post_and_a_site_admin(client, delegated, company):
    learner = User.objects.create(company=company, email="learner@acme.test")
    client.force_login(learner)
    assert client.post(reverse("dynamics_crm:sign_in")).status_code == 403
    # The redirect URI is shared with learners' sign-in: anyone but a site admin is answered
    # as a learner whose sign-in doesn't match, and nothing is stored.
    response = client.get(reverse("dynamics_crm:authenticate"), {"state": "x", "code": "c"})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    anonymous = Client()
    assert anonymous.get(reverse("dynamics_crm:authenticate"))["Location"] == reverse("login")
    delegated.refresh_from_db()
    assert not delegated.has_token_cache


@pytest.mark.django_db
def test_choosing_sign_in_in_the_form_shows_the_redirect_uri_and_waits_for_the_sign_in(
    admin_client, setting, simulator, connection_form
):
    info = simulator.info
    page = admin_client.get(reverse("dynamics_crm:integration")).content.decode()
    assert REDIRECT_URI in page and "Sign in with Microsoft" in page

    response = admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(
            organization_uri=info["organization_uri"],
            tenant_id=info["tenant_id"],
            client_id=info["client_id"],
            authority_host=info["authority_host"],
            credential_type="delegated",
        ),
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("dynamics_crm:integration")
    assert not SyncRun.objects.exists()  # nothing to sync with until someone signs in
    page = admin_client.get(response["Location"]).content.decode()
    assert "Now sign in with Microsoft" in page
    assert f'action="{reverse("dynamics_crm:sign_in")}"' in page
    setting.refresh_from_db()
    assert setting.credential_type == "delegated" and setting.has_client_secret


@pytest.mark.django_db
def test_changing_the_app_registration_or_switching_away_forgets_the_sign_in(
    admin_client, delegated, simulator, sim_browser, connection_form
):
    info = simulator.info
    admin_client.get(sign_in_at_microsoft(sim_browser, start_sign_in(admin_client, delegated)))
    delegated.refresh_from_db()
    assert delegated.has_token_cache

    fields = {
        "organization_uri": info["organization_uri"],
        "tenant_id": info["tenant_id"],
        "client_id": info["client_id"],
        "authority_host": info["authority_host"],
    }
    # Saving other settings keeps the sign-in.
    admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(**fields, credential_type="delegated", sync_frequency="daily"),
    )
    delegated.refresh_from_db()
    assert delegated.has_token_cache and delegated.sync_frequency == "daily"

    # Another tenant spelling (the domain) is another connection: sign in again.
    admin_client.post(
        reverse("dynamics_crm:integration"),
        connection_form(
            **{**fields, "tenant_id": simulator.tenant_domain}, credential_type="delegated"
        ),
    )
    delegated.refresh_from_db()
    assert not delegated.has_token_cache and delegated.has_client_secret

    # Switching to the secret alone forgets a sign-in, keeps the secret.
    delegated.token_cache_encrypted = encryption.encrypt("{}")
    delegated.save()
    admin_client.post(
        reverse("dynamics_crm:integration"), connection_form(**fields, credential_type="secret")
    )
    delegated.refresh_from_db()
    assert delegated.credential_type == "secret"
    assert not delegated.has_token_cache and delegated.delegated_username == ""
    assert delegated.has_client_secret
