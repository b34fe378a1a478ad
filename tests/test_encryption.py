import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from learnexa import encryption


def test_secrets_round_trip_and_are_not_stored_in_clear():
    token = encryption.encrypt("s3cret-value")
    assert "s3cret-value" not in token
    assert encryption.decrypt(token) == "s3cret-value"


def test_an_old_key_still_decrypts_after_rotation(settings):
    old = Fernet.generate_key().decode()
    settings.LEARNEXA_ENCRYPTION_KEYS = [old]
    token = encryption.encrypt("s3cret-value")

    new = Fernet.generate_key().decode()
    settings.LEARNEXA_ENCRYPTION_KEYS = [new, old]
    assert encryption.decrypt(token) == "s3cret-value"
    rotated = encryption.rotate(token)

    settings.LEARNEXA_ENCRYPTION_KEYS = [new]
    assert encryption.decrypt(rotated) == "s3cret-value"
    with pytest.raises(encryption.SecretUnreadable) as caught:
        encryption.decrypt(token)
    # What the operator reads (the admin sees it as is): the cause and both ways out.
    assert str(caught.value) == (
        "A stored secret was encrypted with a key that is not in LEARNEXA_ENCRYPTION_KEYS. "
        "Put the old key back (after the newest one), restart, and run `learnexa "
        "rotate_secrets`; or enter the secret again."
    )


def test_without_a_key_storing_a_secret_says_how_to_make_one(settings, tmp_path):
    settings.LEARNEXA_ENCRYPTION_KEYS = []
    settings.DATA_DIR = tmp_path
    with pytest.raises(ImproperlyConfigured, match="Set LEARNEXA_ENCRYPTION_KEYS"):
        encryption.encrypt("x")


def test_a_malformed_key_is_reported_by_its_position_never_its_value(settings):
    good = Fernet.generate_key().decode()
    settings.LEARNEXA_ENCRYPTION_KEYS = [good, "not-a-key-0123"]
    with pytest.raises(ImproperlyConfigured) as caught:
        encryption.encrypt("x")
    message = str(caught.value)
    assert message.startswith("Key 2 of 2 in LEARNEXA_ENCRYPTION_KEYS is not a Fernet key")
    assert "Fernet.generate_key()" in message and "\n" not in message
    assert "not-a-key-0123" not in message and good not in message


@pytest.mark.django_db
def test_rotate_secrets_with_a_malformed_key_says_which_in_one_line(settings):
    from django.core.management import CommandError, call_command

    settings.LEARNEXA_ENCRYPTION_KEYS = ["not-a-key-0123", Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="^Key 1 of 2 in LEARNEXA_ENCRYPTION_KEYS") as caught:
        call_command("rotate_secrets")
    assert "\n" not in str(caught.value) and "not-a-key-0123" not in str(caught.value)


@pytest.mark.parametrize("command", [["rotate_secrets"], ["worker", "--batch"]])
def test_a_malformed_key_stops_any_process_at_start_with_one_line(tmp_path, command):
    """As the operator sees it: the environment is read when the settings load, in the web
    app, the worker and every command; no traceback, a non-zero exit."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNEXA_", "DJANGO_"))}
    env["LEARNEXA_DATA_DIR"] = str(tmp_path)
    env["LEARNEXA_ENCRYPTION_KEYS"] = f"{Fernet.generate_key().decode()},secret-typo-0123"
    result = subprocess.run(
        [sys.executable, "-m", "learnexa.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.startswith(
        "learnexa: Key 2 of 2 in LEARNEXA_ENCRYPTION_KEYS is not a Fernet key"
    )
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "secret-typo-0123" not in result.stderr + result.stdout


@pytest.mark.django_db
def test_rotate_secrets_re_encrypts_every_stored_secret_under_the_newest_key(settings, company):
    from django.core.management import call_command

    from learnexa.dynamics_crm.models import DynamicsCrmSetting

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.LEARNEXA_ENCRYPTION_KEYS = [old]
    setting = DynamicsCrmSetting(
        company=company,
        organization_uri="https://contoso.crm.dynamics.com",
        tenant_id="contoso.onmicrosoft.com",
        client_id="d0835aea-3d68-462f-91a7-38edbbe4ab6f",
    )
    setting.set_client_secret("the-secret")
    setting.save()

    settings.LEARNEXA_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_secrets")

    settings.LEARNEXA_ENCRYPTION_KEYS = [new]
    setting.refresh_from_db()
    assert setting.client_secret() == "the-secret"

    settings.LEARNEXA_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception, match="Put the old key back .* Nothing was changed"):
        call_command("rotate_secrets")
