"""Access tokens for Dataverse, from Entra ID through MSAL, with one of three credentials:

* **Client secret** — client credentials as the app registration itself, which Dataverse
  knows as an application user; scope `{organization URI}/.default`.
* **Certificate** — the same, proving the app's identity with a signed client assertion
  instead of a secret. The private key is encrypted at rest; the certificate is public.
* **Delegated** ("Sign in with Microsoft") — an admin signs in once (oauth.py); MSAL's token
  cache, with its refresh token, is kept encrypted and the sync acts as that person, with
  scope `{organization URI}/user_impersonation`. The app still authenticates itself with
  its client secret when it redeems the code and refreshes tokens.

`TokenProvider(setting).token()` / `.invalidate()` is the same for all three. MSAL talks
to Entra ID only through an `EntraSession` (entra_session.py): to the authority alone,
without redirects, retried within the run's budget, every failure an AuthenticationError.

Also here: reading an uploaded certificate (`load_certificate`), and Entra ID's errors in
plain words.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from django.conf import settings
from django.utils import timezone

from learnexa import encryption

from .entra_session import AuthenticationError, EntraSession, authority_origin
from .models import DynamicsCrmSetting
from .retries import RetryBudget, budget_from_settings

logger = logging.getLogger(__name__)

CredentialType = DynamicsCrmSetting.CredentialType

SIGN_IN_AGAIN = (
    "Sign in with Microsoft again under Manage site → Integrate Dynamics CRM, as someone "
    "who can read users in Dynamics."
)


# AADSTS codes that mean the admin must change something, and what.
AADSTS_ADVICE = {
    7000215: "The client secret is wrong. Copy the secret's Value (not its Secret ID) from "
    "Certificates & secrets in the app registration, and save it again.",
    7000222: "The client secret has expired. Create a new one under Certificates & secrets "
    "in the app registration, and save it here.",
    7000218: "Entra ID wants the app to prove its identity. Save the app registration's "
    "client secret (or choose the certificate credential).",
    700016: "Entra ID doesn't know this client ID in this tenant. Check the Application "
    "(client) ID and the Directory (tenant) ID on the app registration's Overview page.",
    90002: "The tenant doesn't exist. Check the Directory (tenant) ID on the app "
    "registration's Overview page.",
    900023: "The tenant ID isn't valid. Use the Directory (tenant) ID from the app "
    "registration's Overview page.",
    70011: "Entra ID refused the scope. Check that the organization URI is your "
    "environment's address, e.g. https://contoso.crm.dynamics.com.",
    500011: "Entra ID doesn't know the Dynamics 365 environment as a resource in this "
    "tenant. Check the organization URI and that the environment belongs to this tenant.",
    7000112: "The application is disabled in Entra ID. Enable it, or use another one.",
    700027: "Entra ID doesn't know this certificate: it isn't registered on the app "
    "registration. Upload the certificate (the .cer or .pem file, without its private key) "
    "under Certificates & secrets → Certificates in the app registration, and check that "
    "the thumbprint Entra ID shows there is the one shown here.",
    700024: "Entra ID found the signed request outside its time window: this server's clock "
    "is probably wrong. Ask the operators to check the server's time.",
    700023: "The certificate's assertion names another application. Check the client ID.",
    # Delegated sign-in: the person must sign in again, or the app registration needs a fix.
    700082: "The sign-in with Microsoft has expired: it wasn't used for 90 days. " + SIGN_IN_AGAIN,
    70008: "The sign-in with Microsoft has expired. " + SIGN_IN_AGAIN,
    50173: "The signed-in person's password changed since they signed in. " + SIGN_IN_AGAIN,
    50057: "The account that signed in with Microsoft is disabled in Entra ID. " + SIGN_IN_AGAIN,
    50076: "Entra ID wants multi-factor authentication again. " + SIGN_IN_AGAIN,
    65001: "The app registration hasn't been granted access to Dynamics 365. In the app "
    "registration, API permissions → Add a permission → Dynamics CRM → user_impersonation, "
    "then Grant admin consent; and sign in again.",
    50011: "The redirect URI isn't registered on the app registration. Add the redirect URI "
    "shown on the integration page under Authentication → Web → Redirect URIs.",
    50034: "The account doesn't exist in this tenant. Sign in with an account of the "
    "directory the app registration belongs to.",
}


def explain_token_error(result: dict) -> str:
    description = result.get("error_description") or result.get("error") or "unknown error"
    codes = result.get("error_codes") or []
    match = re.match(r"AADSTS(\d+)", description)
    if match:
        codes = [int(match.group(1)), *codes]
    first_line = description.splitlines()[0]
    for code in codes:
        if code in AADSTS_ADVICE:
            return f"{AADSTS_ADVICE[code]} (Entra ID said: {first_line})"
    if result.get("error") in ("invalid_grant", "interaction_required"):
        return (
            f"Entra ID no longer accepts the sign-in. {SIGN_IN_AGAIN} (Entra ID said: {first_line})"
        )
    return f"Entra ID refused to issue a token: {first_line}"


# -- certificates ---------------------------------------------------------------------------


class CertificateError(ValueError):
    """An uploaded certificate or key can't be used; the message says why, in plain words."""


@dataclass(frozen=True)
class Certificate:
    private_key_pem: str  # PKCS#8, unencrypted here; the model encrypts it at rest
    certificate_pem: str
    thumbprint: str  # SHA-1, upper-case hex, as Entra ID shows it
    subject: str
    not_after: datetime


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.+?\r?\n-----END \1-----", re.DOTALL)


def load_certificate(
    certificate: bytes, key: bytes | None = None, passphrase: str = "", *, now=None
) -> Certificate:
    """Read a certificate and its private key: one PEM file with both, a certificate and a
    key in two, or a .pfx/.p12; the key may be encrypted with `passphrase`."""
    now = now or timezone.now()
    data = certificate + b"\n" + (key or b"")
    password = passphrase.encode() if passphrase else None
    blocks = [(m.group(1).decode(), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        return _check(*_load_pkcs12(certificate, password), now=now)
    certs = [pem for label, pem in blocks if label == "CERTIFICATE"]
    keys = [pem for label, pem in blocks if label.endswith("PRIVATE KEY")]
    if not certs:
        raise CertificateError(
            "No certificate was found: the PEM text must contain a block starting with "
            "-----BEGIN CERTIFICATE-----."
        )
    if not keys:
        raise CertificateError(
            "No private key was found. Upload the private key too (-----BEGIN PRIVATE KEY-----), "
            "in the same file as the certificate or in the private key field."
        )
    if len(keys) > 1:
        raise CertificateError("More than one private key was uploaded; upload only one.")
    private_key = _load_key(keys[0], password)
    loaded = []
    for pem in certs:
        try:
            loaded.append(x509.load_pem_x509_certificate(pem))
        except ValueError as exc:
            raise CertificateError(f"A certificate in the upload can't be read ({exc}).") from exc
    return _check(private_key, loaded, now=now)


def _load_key(pem: bytes, password: bytes | None):
    encrypted = b"ENCRYPTED" in pem.split(b"\n", 1)[0] or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and not password:
        raise CertificateError("The private key is protected by a passphrase: enter it.")
    try:
        return serialization.load_pem_private_key(pem, password if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise CertificateError("The passphrase doesn't unlock the private key.") from exc
        raise CertificateError(f"The private key can't be read ({exc}).") from exc


def _load_pkcs12(data: bytes, password: bytes | None):
    if not data.startswith(b"\x30"):  # neither PEM nor DER
        raise CertificateError(
            "This isn't a PEM file (text starting with -----BEGIN CERTIFICATE-----) nor a .pfx "
            "file. Upload the certificate and its private key in PEM format."
        )
    try:
        private_key, cert, others = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        if not password:
            raise CertificateError(
                "This .pfx file can't be opened without its password: enter it as the "
                "passphrase (or upload PEM files)."
            ) from exc
        raise CertificateError(
            "This .pfx file can't be opened with that passphrase, or isn't a .pfx file."
        ) from exc
    if private_key is None or cert is None:
        raise CertificateError("The .pfx file must contain both the certificate and its key.")
    return private_key, [cert, *others]


def _check(private_key, certs: list[x509.Certificate], *, now) -> Certificate:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise CertificateError(
            "The private key must be an RSA key: Entra ID accepts RSA certificates as app "
            "credentials."
        )
    public = private_key.public_key().public_numbers()
    matching = [c for c in certs if _public_numbers(c) == public]
    if not matching:
        names = ", ".join(c.subject.rfc4514_string() or "(no subject)" for c in certs)
        raise CertificateError(
            f"The private key doesn't belong to the certificate ({names}). Upload the key "
            "that was created together with this certificate."
        )
    cert = matching[0]
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"The certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}. Create a new "
            "one, register it on the app registration, and upload it here."
        )
    if cert.not_valid_before_utc > now + timedelta(minutes=5):
        raise CertificateError(
            f"The certificate isn't valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
        )
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Certificate(
        private_key_pem=key_pem,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra shows SHA-1
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
    )


def _public_numbers(cert: x509.Certificate):
    key = cert.public_key()
    return key.public_numbers() if isinstance(key, rsa.RSAPublicKey) else None


# -- MSAL -----------------------------------------------------------------------------------


def authority(setting: DynamicsCrmSetting) -> str:
    """The authority URL, its host re-checked against the allowed hosts at each use."""
    return f"{authority_origin(setting.authority_host)}/{setting.tenant_id}"


def delegated_scopes(setting: DynamicsCrmSetting) -> list[str]:
    # MSAL adds openid, profile and offline_access (the refresh token) itself.
    return [f"{setting.organization_uri}/user_impersonation"]


def _app_credential(setting: DynamicsCrmSetting):
    """What the app proves its identity with: the secret, or the certificate."""
    kind = setting.credential_type
    try:
        if kind == CredentialType.CERTIFICATE:
            if not setting.has_certificate:
                raise AuthenticationError(
                    "No certificate is saved for this integration. Upload the app "
                    "registration's certificate with its private key, and save."
                )
            # With the certificate and no SHA-1 thumbprint, MSAL signs PS256 with the SHA-256
            # thumbprint (x5t#S256) and sends the certificate as x5c, as it recommends.
            return {
                "private_key": setting.certificate_private_key(),
                "public_certificate": setting.certificate_pem,
            }
        if not setting.has_client_secret:
            raise AuthenticationError(
                "No client secret is saved for this integration. Enter the app "
                "registration's client secret and save."
            )
        return setting.client_secret()
    except encryption.SecretUnreadable as exc:
        raise AuthenticationError(str(exc)) from exc


def confidential_app(
    setting: DynamicsCrmSetting,
    token_cache: msal.TokenCache | None = None,
    retry: RetryBudget | None = None,
    timeout: float | None = None,
    **options,
) -> msal.ConfidentialClientApplication:
    """MSAL's application for the company's app registration. Building it reads the
    authority's discovery document, so it fails as any call to Entra ID does. `options`
    go to MSAL (exclude_scopes)."""
    where = authority(setting)
    credential = _app_credential(setting)
    session = EntraSession(
        setting.authority_host,
        retry or budget_from_settings(),
        timeout=timeout or settings.LEARNEXA_DYNAMICS_TIMEOUT,
    )
    return call_entra(
        where,
        lambda: msal.ConfidentialClientApplication(
            setting.client_id,
            client_credential=credential,
            authority=where,
            # Instance discovery asks login.microsoftonline.com about the authority; the
            # authority host is the admin's choice (national clouds), so trust it as given.
            instance_discovery=False,
            http_client=session,
            token_cache=token_cache,
            **options,
        ),
    )


def call_entra(where: str, call):
    """Run an MSAL call; what the EntraSession didn't already turn into an
    AuthenticationError (MSAL's own complaints) is turned into one here."""
    try:
        return call()
    except requests.exceptions.RequestException as exc:
        raise AuthenticationError(
            f"Entra ID couldn't be reached at {where}: {type(exc).__name__}. Check the "
            "authority host and the network.",
            retryable=True,
        ) from exc
    except ValueError as exc:
        # MSAL raises ValueError when the authority's metadata can't be read, and when a
        # certificate's key can't be used.
        raise AuthenticationError(
            f"The authority {where} didn't answer like Entra ID, or the credential couldn't "
            "be used. Check the tenant ID and the authority host."
        ) from exc


class _AppOnly:
    """Client credentials, with a secret or a certificate."""

    def __init__(self, setting: DynamicsCrmSetting, retry: RetryBudget):
        self.setting = setting
        self.scope = f"{setting.organization_uri}/.default"
        self.retry = retry
        self.app: msal.ConfidentialClientApplication | None = None

    def token(self) -> str:
        # Built at the first token, not before: building it already talks to Entra ID.
        self.app = self.app or confidential_app(self.setting, retry=self.retry)
        result = call_entra(
            authority(self.setting),
            lambda: self.app.acquire_token_for_client(scopes=[self.scope]),
        )
        if "access_token" not in result:
            message = explain_token_error(result)
            if self.setting.credential_type == CredentialType.CERTIFICATE:
                message += (
                    f" This certificate's SHA-1 thumbprint: {self.setting.certificate_thumbprint}."
                )
            raise AuthenticationError(message)
        return result["access_token"]

    def invalidate(self) -> None:
        if self.app:
            self.app.remove_tokens_for_client()


class _Delegated:
    """Tokens for the person who signed in, from the encrypted cache; written back when MSAL
    refreshed them (the refresh token changes each time)."""

    def __init__(self, setting: DynamicsCrmSetting, retry: RetryBudget):
        if not setting.has_token_cache:
            raise AuthenticationError("Nobody has signed in with Microsoft yet. " + SIGN_IN_AGAIN)
        self.setting = setting
        self.retry = retry
        self.scopes = delegated_scopes(setting)
        self.cache = msal.SerializableTokenCache()
        self.stored = setting.token_cache_encrypted
        try:
            self.cache.deserialize(setting.token_cache())
        except (ValueError, encryption.SecretUnreadable) as exc:
            raise AuthenticationError(
                f"The saved sign-in can't be read ({exc}). " + SIGN_IN_AGAIN
            ) from exc
        self.app: msal.ConfidentialClientApplication | None = None
        self.force_refresh = False

    def token(self) -> str:
        self.app = self.app or confidential_app(
            self.setting, token_cache=self.cache, retry=self.retry
        )
        accounts = self.app.get_accounts()
        if not accounts:
            raise AuthenticationError("The saved sign-in holds no account. " + SIGN_IN_AGAIN)
        force, self.force_refresh = self.force_refresh, False
        result = call_entra(
            authority(self.setting),
            lambda: self.app.acquire_token_silent_with_error(
                self.scopes, account=accounts[0], force_refresh=force
            ),
        )
        self._write_back()
        if not result:
            raise AuthenticationError(
                "The sign-in with Microsoft has no valid refresh token any more. " + SIGN_IN_AGAIN
            )
        if "access_token" not in result:
            raise AuthenticationError(explain_token_error(result))
        return result["access_token"]

    def invalidate(self) -> None:
        self.force_refresh = True

    def _write_back(self) -> None:
        if not self.cache.has_state_changed:
            return
        fresh = encryption.encrypt(self.cache.serialize())
        # Only over the cache this run started from: if an admin signed in again (or
        # disconnected) meanwhile, theirs wins.
        written = DynamicsCrmSetting.objects.filter(
            pk=self.setting.pk, token_cache_encrypted=self.stored
        ).update(token_cache_encrypted=fresh)
        if written:
            self.stored = self.setting.token_cache_encrypted = fresh
        else:
            logger.info(
                "The sign-in of %s changed during the sync; keeping the newer one",
                self.setting.company_id,
            )


class TokenProvider:
    """Hands out a valid access token for one integration, refreshing it when told to,
    with whichever credential the company chose."""

    def __init__(self, setting: DynamicsCrmSetting, retry: RetryBudget | None = None):
        self._lock = threading.Lock()
        retry = retry or budget_from_settings()
        if setting.credential_type == CredentialType.DELEGATED:
            self._source = _Delegated(setting, retry)
        else:
            self._source = _AppOnly(setting, retry)

    def token(self) -> str:
        with self._lock:
            return self._source.token()

    def invalidate(self) -> None:
        """Forget the cached access token, so the next call gets a new one."""
        with self._lock:
            self._source.invalidate()
