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

    # What the operator can do about it: shown as is to the admin and on the command line.
    ADVICE = (
        "A stored secret was encrypted with a key that is not in LEARNEXA_ENCRYPTION_KEYS. "
        "Put the old key back (after the newest one), restart, and run `learnexa "
        "rotate_secrets`; or enter the secret again."
    )

    def __init__(self, message: str = ""):
        super().__init__(message or self.ADVICE)


GENERATE_KEY_HINT = (
    'Generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def check_keys(keys, source: str = "LEARNEXA_ENCRYPTION_KEYS") -> list[Fernet]:
    """The keys as Fernets, or ImproperlyConfigured naming the first bad one by its position
    (never the key itself, which may be a real key with a typo)."""
    fernets = []
    for position, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"Key {position} of {len(keys)} in {source} is not a Fernet key (32 url-safe "
                f"base64-encoded bytes). {GENERATE_KEY_HINT}"
            ) from None
    return fernets


def configured_keys() -> list[str]:
    if settings.LEARNEXA_ENCRYPTION_KEYS:
        return list(settings.LEARNEXA_ENCRYPTION_KEYS)
    key_file = settings.DATA_DIR / KEY_FILE_NAME
    if key_file.exists():
        return [k.strip() for k in key_file.read_text().split(",") if k.strip()]
    return []


@cache
def _fernet(keys: tuple[str, ...], source: str) -> MultiFernet:
    return MultiFernet(check_keys(keys, source))


def fernet() -> MultiFernet:
    keys = configured_keys()
    if not keys:
        raise ImproperlyConfigured(
            "No encryption key is configured, so secrets can't be stored. Set "
            f"LEARNEXA_ENCRYPTION_KEYS to a Fernet key. {GENERATE_KEY_HINT}"
        )
    source = "LEARNEXA_ENCRYPTION_KEYS"
    if not settings.LEARNEXA_ENCRYPTION_KEYS:
        source = str(settings.DATA_DIR / KEY_FILE_NAME)
    return _fernet(tuple(keys), source)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable() from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable() from exc
