"""Secrets at rest: Fernet with rotation.

LEARNEXA_ENCRYPTION_KEYS holds one or more Fernet keys, comma-separated, newest first. The
newest encrypts; every key decrypts, so an old key stays until `learnexa rotate_secrets`
has re-encrypted everything under the new one. Without the variable, the key file that
`learnexa demo` writes into the data folder is used, so the demo needs no setup.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEY_FILE_NAME = "encryption.keys"


class SecretUnreadable(Exception):
    """A stored secret can't be decrypted with any configured key."""


def configured_keys() -> list[str]:
    if settings.LEARNEXA_ENCRYPTION_KEYS:
        return list(settings.LEARNEXA_ENCRYPTION_KEYS)
    key_file = settings.DATA_DIR / KEY_FILE_NAME
    if key_file.exists():
        return [k.strip() for k in key_file.read_text().split(",") if k.strip()]
    return []


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "LEARNEXA_ENCRYPTION_KEYS holds a key that is not a Fernet key (32 url-safe "
            'base64-encoded bytes). Generate one with: python -c "from cryptography.fernet '
            'import Fernet; print(Fernet.generate_key().decode())"'
        ) from exc


def fernet() -> MultiFernet:
    keys = configured_keys()
    if not keys:
        raise ImproperlyConfigured(
            "No encryption key is configured, so secrets can't be stored. Set "
            "LEARNEXA_ENCRYPTION_KEYS to a Fernet key; generate one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    return _fernet(tuple(keys))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret can't be decrypted with the configured keys: was a key removed "
            "from LEARNEXA_ENCRYPTION_KEYS? Restore it, or enter the secret again."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret can't be decrypted with the configured keys: keep the old key in "
            "LEARNEXA_ENCRYPTION_KEYS (after the new one) until every secret is re-encrypted."
        ) from exc
