"""A learner's way in, in a real browser: a synced person signs in with Microsoft (the
simulated Entra ID) from their email alone and lands on their own page; the Manage site is
closed to them; disabled in Dynamics and synced, their open session ends and a new sign-in
fails. A contact accepts an invitation, sets a password once, and the link then fails."""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun
from learnexa.dynamics_crm.sync import execute_run

MICROSOFT = DynamicsCrmSetting.LearnerSignIn.MICROSOFT
NEW_PASSWORD = "a-learners-own-password-7"


def sync(setting) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    run = execute_run(run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


def enter_email(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Email").press("Enter")


@pytest.mark.django_db(transaction=True)
def test_a_synced_learner_signs_in_with_microsoft_until_disabled_in_dynamics(
    browser, live_server, company, simulator, connect, screenshot, accessible
):
    setting = connect(company, learner_sign_in=MICROSOFT)
    sync(setting)
    learner = (
        User.objects.filter(company=company, entra_object_id__isnull=False, is_active=True)
        .exclude(email="")
        .order_by("last_name")
        .first()
    )
    # Chromium doesn't know the simulator's certificate authority.
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    blocked = []
    page.on("console", lambda message: blocked.append(message.text))
    try:
        page.goto(live_server.url + "/login/")
        accessible(page)
        enter_email(page, live_server.url, learner.email)
        # Through the simulated Entra ID and back, to the learner's own page.
        expect(page).to_have_url(live_server.url + "/")
        expect(page.get_by_role("heading", name=learner.full_name)).to_be_visible()
        expect(page.get_by_text(learner.email).first).to_be_visible()
        assert not [text for text in blocked if "Content Security Policy" in text], blocked
        screenshot("learner-home")
        accessible(page)

        for path in ("/manage/", "/manage/users/", "/dynamics_crm/"):
            assert page.goto(live_server.url + path).status in (403, 404), path

        # Disabled in Dynamics, then synced: the open session ends.
        simulator.disable_user(str(learner.dynamics_systemuser_id))
        assert sync(setting).deactivated == 1
        page.goto(live_server.url + "/")
        expect(page).to_have_url(re.compile(r"/login/"))

        # And a new sign-in gets nobody in: no Microsoft, the answer anyone gets.
        enter_email(page, live_server.url, learner.email)
        expect(page.get_by_text("we have emailed it a link")).to_be_visible()
        page.goto(live_server.url + "/")
        expect(page).to_have_url(re.compile(r"/login/"))
        screenshot("learner-after-deactivation")
    finally:
        context.close()


@pytest.mark.django_db(transaction=True)
def test_a_contact_accepts_an_invitation_once(
    browser, live_server, simulator, connect, screenshot, accessible
):
    partners = Company.objects.create(slug="partners", name="Partners Inc")
    setting = connect(partners, source_table="contacts", learner_sign_in=MICROSOFT)
    sync(setting)
    contact = (
        User.objects.filter(company=partners, dynamics_contact_id__isnull=False, is_active=True)
        .exclude(email="")
        .order_by("last_name")
        .first()
    )
    page = browser.new_page()
    page.set_default_timeout(15_000)
    try:
        # Contacts have no account in the tenant: their email brings an invitation.
        enter_email(page, live_server.url, contact.email)
        expect(page.get_by_text("we have emailed it a link")).to_be_visible()
        accessible(page)
        [invitation] = [m for m in mail.outbox if contact.email in m.to]
        link = re.search(r"https?://\S+/invitation/\S+/", invitation.body).group(0)

        page.goto(link)
        accessible(page)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
        page.get_by_role("button", name=re.compile("password", re.IGNORECASE)).click()
        expect(page).to_have_url(live_server.url + "/")
        expect(page.get_by_role("heading", name=contact.full_name)).to_be_visible()
        screenshot("contact-home")
        page.get_by_role("banner").get_by_role("button", name="Sign out").click()

        # The link worked once.
        page.goto(link)
        expect(page.get_by_text("already been used")).to_be_visible()
        expect(page.get_by_label("New password", exact=True)).to_have_count(0)
        accessible(page)

        # The password now signs them in.
        enter_email(page, live_server.url, contact.email)
        accessible(page)
        page.get_by_label("Password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(live_server.url + "/")
    finally:
        page.close()
