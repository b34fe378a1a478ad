"""Invitations: a link by email to set a password. It works once, for N days, and never
again after the person lost access; asking for one says nothing about who has an account."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.http import urlsafe_base64_encode

from learnexa.accounts import invitations
from learnexa.accounts.invitations import invitation_tokens, request_links, send_invitation
from learnexa.accounts.models import Company, LinkRequest, User
from learnexa.dynamics_crm import notifications

BASE = "http://testserver"
NEW_PASSWORD = "a-fresh-learner-password-9"
LINK = re.compile(r"http://testserver(/invitation/[^/\s]+/[^/\s]+/)")


def make_user(company, email="learner@acme.test", **fields) -> User:
    """A person without a password, as the sync creates them."""
    user = User(company=company, email=email, first_name="Lea", last_name="Rner", **fields)
    user.set_unusable_password()
    user.save()
    return user


def from_dynamics(company, email="synced@acme.test", **fields) -> User:
    return make_user(
        company,
        email,
        created_source=User.Source.DYNAMICS_CRM,
        dynamics_systemuser_id=uuid.uuid4(),
        **fields,
    )


@pytest.fixture
def learner(company):
    return make_user(company)


def link_in(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def set_password(client, path: str, password: str = NEW_PASSWORD):
    """Open the link, then post the new password, as a browser does."""
    opened = client.get(path)
    if opened.status_code != 302:
        return opened
    return client.post(opened["Location"], {"new_password1": password, "new_password2": password})


def token_of(user) -> str:
    return invitation_tokens.make_token(user)


def fresh(user) -> User:
    return User.objects.get(pk=user.pk)


# -- the link -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_email_names_the_company_the_link_its_lifetime_and_that_it_works_once(learner):
    assert send_invitation(learner, base_url=BASE) is True
    (message,) = mail.outbox
    assert message.to == [learner.email]
    assert "Acme" in message.subject and "Acme has invited you" in message.body
    assert link_in(message)
    assert "works once, for 7 days" in message.body
    assert fresh(learner).invitation_sent_at is not None


@pytest.mark.django_db
def test_a_link_sets_the_password_once_and_signs_in(client, learner):
    send_invitation(learner, base_url=BASE)
    path = link_in(mail.outbox[0])

    response = set_password(client, path)
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert fresh(learner).check_password(NEW_PASSWORD)
    home = client.get(reverse("home"))
    assert home.status_code == 200 and "Lea Rner" in home.content.decode()

    again = set_password(Client(), path, "another-password-entirely-7")
    assert again.status_code == 200
    assert "has already been used, has expired, or was replaced" in again.content.decode()
    assert fresh(learner).check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_the_set_password_page_lives_only_in_the_session_that_opened_the_link(learner):
    send_invitation(learner, base_url=BASE)
    opened = Client().get(link_in(mail.outbox[0]))
    assert opened.status_code == 302
    # Another browser at the tokenless address gets nothing.
    stranger = Client().post(
        opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert stranger.status_code == 200 and not fresh(learner).has_usable_password()


@pytest.mark.django_db
def test_a_link_fails_after_deactivation_even_once_reactivated(learner):
    token = token_of(learner)
    learner.set_active(False)
    assert not invitation_tokens.check_token(fresh(learner), token)
    learner.set_active(True)
    assert not invitation_tokens.check_token(fresh(learner), token)
    uidb64 = urlsafe_base64_encode(str(learner.pk).encode())
    path = reverse("accept_invitation", kwargs={"uidb64": uidb64, "token": token})
    assert Client().get(path).status_code == 200  # the "no longer works" page, no redirect


@pytest.mark.django_db
def test_a_link_fails_after_a_password_change(learner):
    token = token_of(learner)
    assert invitation_tokens.check_token(fresh(learner), token)
    learner.set_password("changed-by-someone-else-3")
    learner.save()
    assert not invitation_tokens.check_token(fresh(learner), token)


@pytest.mark.django_db
def test_a_link_fails_after_an_email_change(learner):
    token = token_of(learner)
    learner.email = "renamed@acme.test"
    learner.save()
    assert not invitation_tokens.check_token(fresh(learner), token)


@pytest.mark.django_db
def test_a_link_fails_once_the_person_signed_in(client, learner):
    learner.set_password(NEW_PASSWORD)
    learner.save()
    token = token_of(fresh(learner))  # a reset-style link for someone with a password
    client.force_login(fresh(learner))  # updates last_login, as every sign-in does
    assert not invitation_tokens.check_token(fresh(learner), token)


@pytest.mark.django_db
def test_a_newer_invitation_replaces_the_older(learner):
    send_invitation(learner, base_url=BASE)
    first = link_in(mail.outbox[0])
    assert send_invitation(fresh(learner), base_url=BASE, force=True)
    second = link_in(mail.outbox[1])
    assert first != second
    assert set_password(Client(), first).status_code == 200  # refused
    assert set_password(Client(), second).status_code == 302
    assert fresh(learner).check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_a_link_expires_after_the_configured_days(learner, monkeypatch, settings):
    token = token_of(learner)
    now = datetime.now()
    monkeypatch.setattr(invitation_tokens, "_now", lambda: now + timedelta(days=6, hours=23))
    assert invitation_tokens.check_token(learner, token)
    monkeypatch.setattr(invitation_tokens, "_now", lambda: now + timedelta(days=7, minutes=1))
    assert not invitation_tokens.check_token(learner, token)
    settings.PASSWORD_RESET_TIMEOUT = 10 * 24 * 3600
    assert invitation_tokens.check_token(learner, token)


@pytest.mark.django_db
def test_invitation_and_password_reset_tokens_do_not_cross(learner):
    assert not default_token_generator.check_token(learner, token_of(learner))
    assert not invitation_tokens.check_token(learner, default_token_generator.make_token(learner))


@pytest.mark.django_db
def test_an_invitation_is_not_resent_within_the_resend_window_unless_forced(learner, settings):
    settings.LEARNEXA_INVITATION_RESEND_SECONDS = 300
    assert send_invitation(learner, base_url=BASE)
    assert send_invitation(fresh(learner), base_url=BASE) is False
    assert len(mail.outbox) == 1
    assert send_invitation(fresh(learner), base_url=BASE, force=True)
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_a_failed_send_leaves_the_previous_link_working(learner, monkeypatch):
    send_invitation(learner, base_url=BASE)
    first = link_in(mail.outbox[0])

    def broken(*args, **kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(invitations, "send_mail", broken)
    with pytest.raises(OSError):
        send_invitation(fresh(learner), base_url=BASE, force=True)
    monkeypatch.undo()
    assert set_password(Client(), first).status_code == 302


@pytest.mark.django_db
def test_inactive_people_are_sent_nothing(learner):
    learner.set_active(False)
    assert send_invitation(learner, base_url=BASE, force=True) is False
    assert mail.outbox == []


# -- asking for a link ----------------------------------------------------------------------


def _normalized(response, email: str) -> str:
    text = response.content.decode().replace(email, "EMAIL")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)
    return re.sub(r'nonce="[^"]+"', "", text)


@pytest.mark.django_db
def test_asking_for_an_unknown_email_sends_nothing_and_answers_the_same(learner):
    unknown = Client().post(reverse("login_link"), {"email": "nobody@acme.test"})
    assert mail.outbox == []
    known = Client().post(reverse("login_link"), {"email": learner.email})
    assert len(mail.outbox) == 1
    assert unknown.status_code == known.status_code == 200
    assert _normalized(unknown, "nobody@acme.test") == _normalized(known, learner.email)
    page = known.content.decode()
    assert f"If an account can sign in with {learner.email}" in page
    assert "The link works once and for 7 days" in page
    assert 'action="/login/link/"' in page and "Send it again" in page


@pytest.mark.django_db
def test_the_link_page_takes_posts_only_with_a_csrf_token(learner):
    assert Client().get(reverse("login_link")).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(reverse("login_link"), {"email": learner.email}).status_code == 403
    assert mail.outbox == []


@pytest.mark.django_db
def test_link_requests_are_limited_per_email(learner, settings):
    settings.LEARNEXA_INVITATION_RESEND_SECONDS = 0
    for _ in range(invitations.MAX_PER_EMAIL):
        request_links(learner.email.upper(), ip="10.0.0.1", base_url=BASE)
    assert len(mail.outbox) == invitations.MAX_PER_EMAIL
    request_links(learner.email, ip="10.0.0.2", base_url=BASE)
    assert len(mail.outbox) == invitations.MAX_PER_EMAIL


@pytest.mark.django_db
def test_link_requests_are_limited_per_address(learner):
    for number in range(invitations.MAX_PER_ADDRESS):
        request_links(f"nobody{number}@acme.test", ip="10.0.0.1", base_url=BASE)
    request_links(learner.email, ip="10.0.0.1", base_url=BASE)
    assert mail.outbox == []
    request_links(learner.email, ip="10.0.0.2", base_url=BASE)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_link_requests_older_than_the_window_no_longer_count(learner, settings):
    settings.LEARNEXA_INVITATION_RESEND_SECONDS = 0
    for _ in range(invitations.MAX_PER_EMAIL):
        request_links(learner.email, ip="10.0.0.1", base_url=BASE)
    LinkRequest.objects.update(at=invitations.timezone.now() - timedelta(hours=2))
    mail.outbox.clear()
    request_links(learner.email, ip="10.0.0.1", base_url=BASE)
    assert len(mail.outbox) == 1
    assert LinkRequest.objects.count() == 1  # the old ones are cleared out


@pytest.mark.django_db
def test_a_link_request_reaches_the_email_in_every_company_but_not_inactive_people(learner):
    other = Company.objects.create(slug="globex", name="Globex")
    make_user(other, "LEARNER@acme.test")
    gone = make_user(Company.objects.create(slug="initech", name="Initech"), learner.email)
    gone.set_active(False)
    request_links(" Learner@Acme.test ", ip="10.0.0.1", base_url=BASE)
    assert sorted(m.subject for m in mail.outbox) == [
        "Your invitation to Learnexa at Acme",
        "Your invitation to Learnexa at Globex",
    ]


# -- how each company's people sign in (awaits dynamics_crm.learner_sign_in) ----------------


@pytest.mark.django_db
def test_people_of_a_company_not_yet_open_are_sent_nothing(company, connect):
    connect(company, learner_sign_in="not_yet")
    person = from_dynamics(company)
    request_links(person.email, ip="10.0.0.1", base_url=BASE)
    assert send_invitation(person, base_url=BASE, force=True) is False
    assert mail.outbox == []


@pytest.mark.django_db
def test_people_who_sign_in_with_microsoft_are_sent_no_link(company, connect):
    connect(company, learner_sign_in="microsoft")
    person = from_dynamics(company, entra_object_id=uuid.uuid4())
    # ...but those without an account in the tenant get one.
    contact = from_dynamics(company, "contact@acme.test")
    request_links(person.email, ip="10.0.0.1", base_url=BASE)
    request_links(contact.email, ip="10.0.0.1", base_url=BASE)
    assert [m.to for m in mail.outbox] == [[contact.email]]


@pytest.mark.django_db
def test_people_of_a_company_with_invitations_are_sent_links(company, connect):
    connect(company, learner_sign_in="invitation")
    person = from_dynamics(company, entra_object_id=uuid.uuid4())
    request_links(person.email, ip="10.0.0.1", base_url=BASE)
    assert [m.to for m in mail.outbox] == [[person.email]]


@pytest.mark.django_db
def test_a_pending_link_stops_working_once_the_company_chose_microsoft(company, connect):
    setting = connect(company, learner_sign_in="invitation")
    person = from_dynamics(company, entra_object_id=uuid.uuid4())
    send_invitation(person, base_url=BASE)
    path = link_in(mail.outbox[0])
    setting.learner_sign_in = "microsoft"
    setting.save()
    assert set_password(Client(), path).status_code == 200
    assert not fresh(person).has_usable_password()


# -- welcome emails -------------------------------------------------------------------------


def welcomed(users) -> dict[str, str]:
    notifications.welcome(User.objects.filter(pk__in=[u.pk for u in users]).order_by("pk"))
    return {m.to[0]: m.body for m in mail.outbox if m.subject == "Welcome to Learnexa"}


@pytest.mark.django_db
def test_a_welcome_is_the_invitation_when_the_company_chose_invitations(company, connect, settings):
    settings.LEARNEXA_BASE_URL = BASE
    connect(company, learner_sign_in="invitation")
    person = from_dynamics(company)
    body = welcomed([person])[person.email]
    path = LINK.search(body).group(1)
    assert "works once, for 7 days" in body and "Microsoft" not in body
    assert fresh(person).invitation_sent_at is not None
    assert set_password(Client(), path).status_code == 302


@pytest.mark.django_db
def test_a_welcome_sends_microsoft_people_to_the_sign_in_page(company, connect, settings):
    settings.LEARNEXA_BASE_URL = "https://learn.example.com"
    connect(company, learner_sign_in="microsoft")
    person = from_dynamics(company, entra_object_id=uuid.uuid4())
    body = welcomed([person])[person.email]
    assert (
        f"Sign in at https://learn.example.com/login/ with your work account: enter "
        f"{person.email}, and you will sign in with Microsoft" in body
    )
    assert "/invitation/" not in body and "password" not in body.lower()
    assert fresh(person).invitation_sent_at is None


@pytest.mark.django_db
def test_a_welcome_promises_no_way_in_before_the_company_opened_sign_in(company, connect):
    connect(company, learner_sign_in="not_yet")
    person = from_dynamics(company)
    body = welcomed([person])[person.email]
    assert "hasn't opened sign-in" in body
    for promise in ("/invitation/", "/login/", "password", "Microsoft"):
        assert promise not in body
    assert fresh(person).invitation_sent_at is None


@pytest.mark.django_db
def test_a_welcome_to_someone_with_a_password_sends_them_to_sign_in(company, settings):
    settings.LEARNEXA_BASE_URL = "http://127.0.0.1:8000"
    person = User.objects.create(company=company, email="has@acme.test")
    person.set_password("already-has-one-42")
    person.save()
    body = welcomed([person])[person.email]
    assert "Sign in at http://127.0.0.1:8000/login/" in body and "/invitation/" not in body


@pytest.mark.django_db(transaction=True)
def test_a_worker_emails_the_links_the_page_asked_for(learner, monkeypatch):
    # As in production (the tests' autouse fixture sends them at once): the request only
    # queues a job, the same for an email nobody has, so its time reveals nothing.
    monkeypatch.undo()
    request_links(learner.email, ip="10.0.0.1", base_url=BASE)
    request_links("nobody@acme.test", ip="10.0.0.1", base_url=BASE)
    assert mail.outbox == []
    call_command("worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)
    assert [m.to for m in mail.outbox] == [[learner.email]]
