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
    with pytest.raises(encryption.SecretUnreadable, match="was a key removed"):
        encryption.decrypt(token)


def test_without_a_key_storing_a_secret_says_how_to_make_one(settings, tmp_path):
    settings.LEARNEXA_ENCRYPTION_KEYS = []
    settings.DATA_DIR = tmp_path
    with pytest.raises(ImproperlyConfigured, match="Set LEARNEXA_ENCRYPTION_KEYS"):
        encryption.encrypt("x")


def test_a_malformed_key_is_reported(settings):
    settings.LEARNEXA_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="not a Fernet key"):
        encryption.encrypt("x")


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
    with pytest.raises(Exception, match="keep the old key"):
        call_command("rotate_secrets")
