"""Headers, sign-in throttling and the deployment checklist."""

import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
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


def readme_production_environment() -> dict[str, str]:
    """The variables the README's "Running it in production" block exports, as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Running it in production", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    env = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])
    return env


def test_the_deployment_checklist_is_clean_with_the_readmes_production_settings(tmp_path):
    readme = readme_production_environment()
    assert {"DATABASE_URL", "LEARNEXA_SECRET_KEY", "LEARNEXA_ENCRYPTION_KEYS"} <= readme.keys()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LEARNEXA_", "DJANGO_")) and name != "DATABASE_URL"
    }
    env.update(readme)
    # Only the README's placeholders (…) are filled in: a test database, real keys.
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'check.sqlite3'}",
        LEARNEXA_DATA_DIR=str(tmp_path),
        LEARNEXA_SECRET_KEY=secrets.token_urlsafe(50),
        LEARNEXA_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
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


@pytest.mark.django_db
def test_forms_may_post_only_to_the_app_itself(client, site_admin):
    client.force_login(site_admin)
    policy = client.get(reverse("manage_site:dashboard"))["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["form-action"] == ["'self'"]


@pytest.mark.django_db
def test_the_sign_in_with_microsoft_page_may_post_on_to_its_authority_only(
    client, site_admin, company, connect, simulator
):
    """oauth.start redirects the post to Entra ID, which Chromium checks against
    form-action: the integration page allows the saved authority host, and nothing else."""
    setting = connect(company, credential_type="delegated")
    client.force_login(site_admin)
    policy = client.get(reverse("dynamics_crm:integration"))["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["form-action"] == ["'self'", setting.authority_host]
    # Other pages, and a company signing in otherwise, allow the app only.
    setting.credential_type = "secret"
    setting.save(update_fields=["credential_type"])
    policy = client.get(reverse("dynamics_crm:integration"))["Content-Security-Policy"]
    assert "form-action 'self'" in policy and setting.authority_host not in policy


def sign_in_attempts(forwarded_for: str, count: int, remote_addr: str = "10.0.0.1") -> str:
    """`count` failed sign-ins, then one more; returns the last page."""
    client = Client(REMOTE_ADDR=remote_addr, HTTP_X_FORWARDED_FOR=forwarded_for)
    for number in range(count + 1):
        response = client.post(
            reverse("login"), {"username": f"nobody{number}@acme.test", "password": "wrong"}
        )
    return response.content.decode()


@pytest.mark.django_db
def test_behind_the_proxy_each_client_has_its_own_address_limit(settings, monkeypatch):
    from learnexa.accounts import login

    monkeypatch.setattr(login, "MAX_PER_ADDRESS", 3)
    settings.LEARNEXA_BEHIND_PROXY = True
    settings.LEARNEXA_TRUSTED_PROXIES = 1
    # An attacker's header says anything left of what the proxy appended: only that counts.
    assert "Too many failed attempts" in sign_in_attempts("1.1.1.1, 203.0.113.7", 3)
    assert "Too many failed attempts" in sign_in_attempts("9.9.9.9, 203.0.113.7", 0)
    # Another client, through the same proxy (same REMOTE_ADDR), isn't throttled by them.
    assert "Too many failed attempts" not in sign_in_attempts("198.51.100.2", 0)
    # Two proxies: the client is the second entry from the right.
    settings.LEARNEXA_TRUSTED_PROXIES = 2
    assert "Too many failed attempts" in sign_in_attempts("203.0.113.7, 10.0.0.9", 0)
    assert "Too many failed attempts" not in sign_in_attempts("198.51.100.3, 10.0.0.9", 0)


@pytest.mark.django_db
def test_without_the_proxy_setting_x_forwarded_for_is_ignored(settings, monkeypatch):
    from learnexa.accounts import login

    monkeypatch.setattr(login, "MAX_PER_ADDRESS", 3)
    settings.LEARNEXA_BEHIND_PROXY = False
    assert "Too many failed attempts" in sign_in_attempts("1.1.1.1", 3, "192.0.2.5")
    # A spoofed header doesn't escape the limit on the connection's address.
    assert "Too many failed attempts" in sign_in_attempts("198.51.100.9", 0, "192.0.2.5")


@pytest.mark.parametrize("header", ["", "not-an-address", "203.0.113.7:443, 10.0.0.9"])
def test_a_short_or_malformed_forwarded_header_falls_back_to_the_connection(settings, header):
    from django.test import RequestFactory

    from learnexa.accounts.login import client_ip

    settings.LEARNEXA_BEHIND_PROXY = True
    settings.LEARNEXA_TRUSTED_PROXIES = 2 if "," in header else 1
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=header)
    assert client_ip(request) == "10.0.0.1"


def test_server_errors_are_logged_to_stderr_with_their_traceback(client, settings):
    """Django prints a 500's traceback itself only with DEBUG on: production must log it."""
    import io
    import logging

    from django.urls import path

    def broken(request):
        raise RuntimeError("the-broken-view-failed")

    urls = type("urls", (), {"urlpatterns": [path("broken/", broken)]})
    settings.ROOT_URLCONF = urls
    settings.DEBUG = False
    stream = io.StringIO()
    # The handlers a django.request record reaches, bar pytest's own (caplog and friends).
    logger, handlers = logging.getLogger("django.request"), []
    while logger:
        handlers += [h for h in logger.handlers if type(h).__module__.split(".")[0] != "_pytest"]
        logger = logger.parent if logger.propagate else None
    # StreamHandler's default stream is stderr; a FileHandler would be a file.
    consoles = [
        h
        for h in handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    previous = [h.setStream(stream) for h in consoles]
    try:
        client.raise_request_exception = False
        assert client.get("/broken/").status_code == 500
    finally:
        for handler, old in zip(consoles, previous, strict=True):
            handler.setStream(old)
    logged = stream.getvalue()
    assert "ERROR django.request: Internal Server Error: /broken/" in logged
    assert "Traceback" in logged and "RuntimeError: the-broken-view-failed" in logged


def test_the_sqlite_database_and_its_wal_are_readable_by_their_owner_only(tmp_path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNEXA_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env["LEARNEXA_DATA_DIR"] = str(data)
    result = subprocess.run(
        [sys.executable, "-m", "learnexa.cli", "migrate", "-v", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        umask=0o022,  # the usual one, under which files would be world-readable
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert data.stat().st_mode & 0o777 == 0o700
    files = sorted(data.glob("learnexa.sqlite3*"))
    assert data / "learnexa.sqlite3" in files
    for file in files:
        assert file.stat().st_mode & 0o777 == 0o600, file


def test_sqlite_files_made_before_are_made_private_on_connecting(tmp_path, django_db_blocker):
    from django.db.utils import ConnectionHandler

    name = tmp_path / "old.sqlite3"
    old = os.umask(0o022)
    try:
        name.touch(mode=0o644)
        handler = ConnectionHandler(
            {
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": str(name),
                    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"},
                }
            }
        )
        connection = handler["default"]
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x integer)")
            cursor.execute("INSERT INTO t VALUES (1)")
            wal = [name, Path(f"{name}-wal"), Path(f"{name}-shm")]
            assert all(path.exists() for path in wal)
            assert {path.stat().st_mode & 0o777 for path in wal} == {0o600}
        connection.close()
    finally:
        os.umask(old)
