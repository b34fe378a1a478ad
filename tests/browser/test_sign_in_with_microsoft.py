"""Sign in with Microsoft in a real browser, under the app's Content-Security-Policy:
Chromium checks a form's redirects against form-action, and the sign-in button's post is
redirected to Entra ID (here the simulated one) and back."""

import re

import pytest
from playwright.sync_api import expect

from learnexa.dynamics_crm.models import DynamicsCrmSetting

PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


@pytest.mark.django_db(transaction=True)
def test_sign_in_with_microsoft_goes_to_entra_id_and_back(
    browser, live_server, site_admin, simulator, connect
):
    setting = connect(
        site_admin.company, credential_type=DynamicsCrmSetting.CredentialType.DELEGATED
    )
    # Chromium doesn't know the simulator's certificate authority.
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    blocked = []
    page.on("console", lambda message: blocked.append(message.text))
    try:
        page.goto(live_server.url + "/dynamics_crm/")
        page.get_by_label("Email").fill(site_admin.email)
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign in with Microsoft").click()
        # Entra ID signed in and sent the browser back; the first sync is queued.
        expect(page).to_have_url(re.compile(r"/dynamics_crm/runs/\d+/$"))
        assert not [text for text in blocked if "Content Security Policy" in text], blocked
        setting.refresh_from_db()
        assert setting.has_token_cache
    finally:
        context.close()
