"""The simulated Entra ID tenant: discovery documents, JWKS, the token endpoints
(``entra_token``), the sign-in flow (``entra_sign_in``) and the validation of its tokens.

Supported grants:

* ``client_credentials`` with a client secret (form field or HTTP Basic) or a signed
  ``client_assertion`` (certificate credential registered with ``register_certificate``);
* ``authorization_code`` with PKCE (S256 or plain) after ``GET /{tenant}/oauth2/v2.0/authorize``;
* ``refresh_token`` for tokens issued by the authorization-code grant.

Each person (a ``systemuser``) also has an account in the tenant, apart from Dynamics:
``enabled`` (the default), ``disabled`` (AADSTS50057) or ``unknown`` (no longer in the
tenant: AADSTS50034), set with ``Entra.set_account``.

Errors follow Entra's shape: ``error``, ``error_description`` starting with the AADSTS code
(followed by trace/correlation ids and a timestamp), ``error_codes``, ``timestamp``,
``trace_id``, ``correlation_id`` and ``error_uri``.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from . import jwt
from .certs import KeyMaterial
from .data import Store, Tenant
from .entra_errors import EntraErrors
from .entra_sign_in import AuthCode, RefreshGrant, SignInFlow
from .entra_token import TokenEndpoint
from .http_util import Response, json_response

# A person's account in the tenant: "enabled" is the default and is not stored.
ACCOUNT_STATES = ("enabled", "disabled", "unknown")


class AuthFailure(Exception):
    """A bearer token was rejected by the Web API."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # missing, invalid, expired, audience
        self.message = message


@dataclass
class Secret:
    value: str
    expired: bool = False


def seeded_secret(seed: int) -> str:
    digest = hashlib.sha256(f"dataverse_sim:{seed}:secret".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-"
    body = "".join(alphabet[b % len(alphabet)] for b in digest[:37])
    return body[:3] + "8Q~" + body[3:37]


class Entra(EntraErrors, TokenEndpoint, SignInFlow):
    """The tenant: its app registration's credentials, people's accounts, discovery
    documents, and the validation of the access tokens it issued."""

    def __init__(
        self,
        *,
        tenant: Tenant,
        keys: KeyMaterial,
        store: Store,
        clock: Callable[[], float],
        base_url: Callable[[], str],
    ) -> None:
        self.tenant = tenant
        self.keys = keys
        self.store = store
        self.clock = clock
        self._base_url = base_url
        self.lock = threading.RLock()
        self.secrets: list[Secret] = [Secret(seeded_secret(tenant.seed))]
        self.certificates: dict[str, Any] = {}  # thumbprint (hex / b64url) -> public key
        self._live_utis: set[str] = set()
        self._revoked_utis: set[str] = set()
        self._rng = random.Random(f"{tenant.seed}:tokens")
        self._codes: dict[str, AuthCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._verified: dict[str, dict[str, Any]] = {}
        self._public_key = keys.signing_key.public_key()
        self._accounts: dict[str, str] = {}  # systemuserid -> "disabled" | "unknown"
        self._foreign_key: rsa.RSAPrivateKey | None = None  # signs tampered ID tokens

    # ------------------------------------------------------------------ config
    @property
    def base_url(self) -> str:
        return self._base_url()

    @property
    def organization_uri(self) -> str:
        return self.base_url

    @property
    def client_secret(self) -> str:
        with self.lock:
            valid = [s for s in self.secrets if not s.expired] or self.secrets
            return valid[-1].value if valid else ""

    def issuer(self) -> str:
        return f"{self.base_url}/{self.tenant.tenant_id}/v2.0"

    def known_tenant(self, segment: str) -> bool:
        return segment.lower() in (self.tenant.tenant_id, self.tenant.tenant_domain.lower())

    def rotate_secret(self, keep_old: bool = False) -> str:
        with self.lock:
            new = Secret(secrets.token_urlsafe(30)[:37].replace("-", "~"))
            if keep_old:
                self.secrets.append(new)
            else:
                self.secrets = [new]
            return new.value

    def revoke_secret(self) -> None:
        with self.lock:
            self.secrets = []

    def expire_secret(self) -> None:
        with self.lock:
            for s in self.secrets:
                s.expired = True

    def reset(self) -> None:
        with self.lock:
            self.secrets = [Secret(seeded_secret(self.tenant.seed))]
            self.certificates.clear()
            self._revoked_utis.clear()
            self._codes.clear()
            self._refresh.clear()
            self._verified.clear()
            self._accounts.clear()

    # ------------------------------------------------------------------ people's accounts
    def set_account(self, user_id: str, account: str) -> str:
        """Set a person's account in the tenant: ``enabled``, ``disabled`` (sign-ins and
        their tokens are refused with AADSTS50057) or ``unknown`` (the person is no longer in
        the tenant: AADSTS50034)."""
        if account not in ACCOUNT_STATES:
            raise ValueError(f"account must be one of {list(ACCOUNT_STATES)}, not {account!r}")
        with self.lock:
            if account == "enabled":
                self._accounts.pop(user_id.lower(), None)
            else:
                self._accounts[user_id.lower()] = account
        return account

    def account(self, user_id: str) -> str:
        with self.lock:
            return self._accounts.get(user_id.lower(), "enabled")

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid (as if they all expired now)."""
        with self.lock:
            self._revoked_utis |= self._live_utis
            self._live_utis = set()
            self._verified.clear()

    def register_certificate(self, certificate_pem: str | bytes) -> str:
        """Accept client assertions signed by this certificate's key; returns its SHA-1 hex."""
        if isinstance(certificate_pem, str):
            certificate_pem = certificate_pem.encode()
        cert = x509.load_pem_x509_certificate(certificate_pem)
        sha1 = cert.fingerprint(hashes.SHA1())  # noqa: S303 - that is what x5t is
        sha256 = cert.fingerprint(hashes.SHA256())
        with self.lock:
            for digest in (sha1, sha256):
                self.certificates[digest.hex().upper()] = cert.public_key()
        return sha1.hex().upper()

    # ------------------------------------------------------------------ documents
    def openid_configuration(self, segment: str) -> Response:
        if not (self.known_tenant(segment) or segment in ("common", "organizations")):
            return self.tenant_not_found(segment, "discovery")
        base = self.base_url
        tid = self.tenant.tenant_id if self.known_tenant(segment) else "{tenantid}"
        doc = {
            "token_endpoint": f"{base}/{segment}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{segment}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{segment}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{segment}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{segment}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/{segment}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "127.0.0.1",
            "cloud_graph_host_name": "127.0.0.1",
            "msgraph_host": "127.0.0.1",
            "rbac_url": base,
        }
        return json_response(200, doc)

    def jwks(self) -> Response:
        return json_response(200, {"keys": [jwt.jwk(self._public_key, self.keys.signing_kid)]})

    # ------------------------------------------------------------------ validation
    def validate(self, authorization: str | None) -> dict[str, Any]:
        """Validate a Web API request's Authorization header; returns the token claims."""
        if not authorization:
            raise AuthFailure("missing", "The request does not contain a bearer token.")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailure("missing", "The request does not contain a bearer token.")
        with self.lock:
            claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.verify(token, self._public_key)
            except jwt.TokenError as exc:
                raise AuthFailure("invalid", f"Bearer token is not valid: {exc}.") from exc
            with self.lock:
                if len(self._verified) > 10000:
                    self._verified.clear()
                self._verified[token] = claims
        now = self.clock()
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud.rstrip("/").lower() != self.organization_uri.lower():
            raise AuthFailure(
                "audience",
                f"The access token audience '{aud}' does not match this organization "
                f"'{self.organization_uri}'.",
            )
        if claims.get("tid") != self.tenant.tenant_id:
            raise AuthFailure("invalid", "The access token was issued by another tenant.")
        exp = claims.get("exp")
        if (
            not isinstance(exp, (int, float))
            or exp <= now
            or claims.get("uti") in self._revoked_utis
        ):
            raise AuthFailure("expired", "The access token has expired.")
        nbf = claims.get("nbf", 0)
        if isinstance(nbf, (int, float)) and nbf > now + 300:
            raise AuthFailure("invalid", "The access token is not yet valid.")
        return claims
