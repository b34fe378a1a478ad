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
