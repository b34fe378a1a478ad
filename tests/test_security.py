"""Headers, sign-in throttling and the deployment checklist."""

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import User

ADMIN_PASSWORD = "a-long-test-password-1"  # the site_admin fixture's


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy_with_a_nonce(client, site_admin):
    client.force_login(site_admin)
    response = client.get(reverse("manage_site:dashboard"))
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("style-src-attr")[0]
    assert f'<style nonce="{nonce}">' in response.content.decode()
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_email_out_for_a_while(site_admin):
    client = Client()
    for _ in range(5):
        response = client.post(
            reverse("login"), {"username": site_admin.email, "password": "wrong"}
        )
        assert "don&#x27;t match an account" in response.content.decode()
    # Now even the right password is refused, with a message that says what to do.
    response = client.post(
        reverse("login"), {"username": site_admin.email, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    assert "Too many failed attempts. Wait 15 minutes" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account is not locked by them.
    other = User.objects.create_site_admin(site_admin.company, "other@acme.test", ADMIN_PASSWORD)
    response = client.post(reverse("login"), {"username": other.email, "password": ADMIN_PASSWORD})
    assert response.status_code == 302


def test_the_deployment_checklist_is_clean_with_the_production_settings(tmp_path):
    env = {
        **os.environ,
        "LEARNEXA_DATA_DIR": str(tmp_path),
        "LEARNEXA_SECRET_KEY": secrets.token_urlsafe(50),
        "LEARNEXA_HTTPS": "true",
        "LEARNEXA_ALLOWED_HOSTS": "learn.example.com",
        "LEARNEXA_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    }
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "learnexa.cli", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_a_secret_never_reaches_a_log_or_an_error_report(
    client, site_admin, setting, simulator, caplog, connection_form
):
    import logging

    from django.views.debug import SafeExceptionReporterFilter

    from learnexa.dynamics_crm.models import SyncRun
    from learnexa.dynamics_crm.sync import execute_run

    caplog.set_level(logging.DEBUG)
    wrong = "this-secret-must-not-leak-0001"
    setting.set_client_secret(wrong)
    setting.save(update_fields=["client_secret_encrypted"])
    run = execute_run(
        SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    )
    assert run.status == "failed"
    simulator.inject_fault("status", count=2, status=503)
    setting.set_client_secret(simulator.info["client_secret"])
    setting.save(update_fields=["client_secret_encrypted"])
    execute_run(SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert wrong not in logged and simulator.info["client_secret"] not in logged

    # An error report of the settings page shows the secret as stars.
    client.force_login(site_admin)
    info = simulator.info
    request = client.post(
        "/dynamics_crm/",
        connection_form(
            organization_uri=info["organization_uri"],
            tenant_id=info["tenant_id"],
            client_id=info["client_id"],
            client_secret=wrong,
            credential_type="secret",
            authority_host=info["authority_host"],
        ),
    ).wsgi_request
    cleansed = SafeExceptionReporterFilter().get_post_parameters(request)
    assert cleansed["client_secret"] != wrong and "*" in cleansed["client_secret"]
