"""The simulated Entra ID tenant: discovery documents, JWKS and the v2.0 token endpoint.

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

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import html
import json
import random
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from . import jwt
from .certs import KeyMaterial
from .data import Store, Tenant
from .http_util import Response, json_response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
APP_NAME = "Learnexa"  # the app registration's display name (its application user in data.py)
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
    secret_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    user_id: str
    issued: float


@dataclass
class RefreshGrant:
    client_id: str
    scope: str
    user_id: str
    issued: float


def seeded_secret(seed: int) -> str:
    digest = hashlib.sha256(f"dataverse_sim:{seed}:secret".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-"
    body = "".join(alphabet[b % len(alphabet)] for b in digest[:37])
    return body[:3] + "8Q~" + body[3:37]


class Entra:
    TOKEN_MIN = 3600
    TOKEN_MAX = 5400

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
        self.redirect_uris: set[str] = set()
        self.issued = 0
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

    # ------------------------------------------------------------------ errors
    def error(
        self, status: int, error: str, code: int, message: str, extra_codes: list[int] | None = None
    ) -> Response:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        description = f"AADSTS{code}: {message} " + _trace(trace_id, correlation_id, now)
        body = {
            "error": error,
            "error_description": description,
            "error_codes": [code, *(extra_codes or [])],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        resp = json_response(status, body)
        resp.header("Cache-Control", "no-store, no-cache")
        resp.header("Pragma", "no-cache")
        if status == 401:
            resp.header("WWW-Authenticate", 'Basic realm="dataverse_sim"')
        return resp

    def tenant_not_found(self, segment: str, endpoint: str) -> Response:
        """Entra's answer for an unknown tenant: an error page from authorize, ``invalid_tenant``
        from discovery and the keys, ``invalid_request`` from the token endpoints."""
        if endpoint == "authorize":
            return self._authorize_page_error(f"AADSTS90002: Tenant '{segment}' not found.")
        return self.error(
            400,
            "invalid_tenant" if endpoint in ("discovery", "keys") else "invalid_request",
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant "
            "ID and are signing into the correct cloud. Check with your subscription "
            "administrator, this may happen if there are no active subscriptions for the "
            "tenant.",
        )

    def app_disabled(self, client_id: str | None) -> Response:
        """The token endpoint's answer once the app registration is disabled in the tenant."""
        client_id = client_id or self.tenant.client_id
        return self.error(
            400,
            "unauthorized_client",
            7000112,
            f"Application '{client_id}'({APP_NAME}) is disabled.",
        )

    def user_disabled(self) -> Response:
        return self.error(400, "invalid_grant", 50057, "The user account is disabled.")

    def user_unknown(self, name: str) -> Response:
        """The token endpoint's answer for a person no longer in the tenant."""
        return self.error(400, "invalid_grant", 50034, self._not_in_directory(name))

    def _not_in_directory(self, name: str) -> str:
        return (
            f"The user account {name} does not exist in the {self.tenant.tenant_domain} "
            "directory. To sign into this application, the account must be added to the "
            "directory."
        )

    def unavailable(self, status: int) -> Response:
        """An injected outage or throttling answer in Entra's shape (the codes are the ones
        Entra's error reference lists for throttled tenants and transient service failures)."""
        if status == 429:
            error, code, message = (
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Please try again later.",
            )
        elif status == 500:
            error, code, message = ("server_error", 90033, "A transient error has occurred.")
        elif status < 500:  # any other client error asked for: a generic invalid request
            error, code, message = ("invalid_request", 90100, "The request is not valid.")
        else:
            error, code, message = (
                "temporarily_unavailable",
                90006,
                "The service is temporarily unavailable. Please try again later.",
            )
        return self.error(status, error, code, message)

    # ------------------------------------------------------------------ token endpoint
    def token(self, segment: str, form: dict[str, str], authorization: str | None) -> Response:
        if not self.known_tenant(segment):
            return self.tenant_not_found(segment, "token")
        basic_id = basic_secret = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authorization[6:].strip()).decode("utf-8")
                user, _, pw = raw.partition(":")
                basic_id, basic_secret = unquote_plus(user), unquote_plus(pw)
            except (binascii.Error, UnicodeDecodeError):
                return self.error(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' "
                    "or 'client_secret'.",
                )
        grant_type = form.get("grant_type")
        if not grant_type:
            return self.error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        client_id = form.get("client_id") or basic_id
        if not client_id:
            return self.error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
            return self.error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        if client_id.lower() != self.tenant.client_id:
            return self.error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant.tenant_domain}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        denied = self._authenticate_client(form, basic_secret)
        if denied is not None:
            return denied
        if grant_type == "client_credentials":
            return self._client_credentials(form)
        if grant_type == "authorization_code":
            return self._authorization_code(form)
        return self._refresh_token(form)

    def token_v1(self, segment: str, form: dict[str, str], authorization: str | None) -> Response:
        """The legacy ``/{tenant}/oauth2/token`` endpoint (ADAL): ``resource`` instead of
        ``scope``; string ``expires_in``/``expires_on`` and the resource echoed back."""
        if form.get("grant_type") != "client_credentials":
            return self.error(
                400,
                "unsupported_grant_type",
                70003,
                "This simulator's v1.0 endpoint supports only the client_credentials grant.",
            )
        resource = form.get("resource")
        if not resource:
            return self.error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'resource'.",
            )
        v2_form = dict(form)
        v2_form.pop("resource", None)
        v2_form["scope"] = resource.rstrip("/") + "/.default"
        resp = self.token(segment, v2_form, authorization)
        if resp.status != 200:
            return resp
        body = json.loads(resp.body)
        now = int(self.clock())
        lifetime = int(body["expires_in"])
        v1 = {
            "token_type": "Bearer",
            "expires_in": str(lifetime),
            "ext_expires_in": str(lifetime),
            "expires_on": str(now + lifetime),
            "not_before": str(now),
            "resource": resource,
            "access_token": body["access_token"],
        }
        return json_response(200, v1)

    def _authenticate_client(self, form: dict[str, str], basic_secret: str | None):
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return self.error(
                    400,
                    "invalid_request",
                    50027,
                    "JWT token is invalid or malformed. The client_assertion_type must be "
                    f"'{ASSERTION_TYPE}'.",
                )
            return self._check_assertion(assertion)
        if not secret:
            return self.error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        with self.lock:
            matches = [s for s in self.secrets if hmac.compare_digest(s.value, secret)]
        if not matches:
            return self.error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.tenant.client_id}'.",
            )
        if all(s.expired for s in matches):
            return self.error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{self.tenant.client_id}' are "
                "expired. Visit the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
                "added security: https://aka.ms/certCreds.",
            )
        return None

    def _check_assertion(self, assertion: str):
        try:
            header, claims, _, _ = jwt.decode_unverified(assertion)
        except jwt.TokenError:
            return self.error(
                401,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed.",
            )
        thumb = header.get("x5t#S256") or header.get("x5t") or ""
        with self.lock:
            key = self.certificates.get(_thumbprint_hex(thumb))
        if key is None:
            return self.error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                f"registered on application. [Reason - The key was not found., Thumbprint of key "
                f"used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer or "
                "directly use MS Graph to see configured keys for app Id "
                f"'{self.tenant.client_id}'.]",
            )
        try:
            jwt.verify(assertion, key, alg=header.get("alg", "RS256"))
        except jwt.TokenError:
            return self.error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            )
        now = self.clock()
        if claims.get("iss") != self.tenant.client_id or claims.get("sub") != self.tenant.client_id:
            return self.error(
                401,
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer.",
            )
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < now - 300:
            return self.error(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )
        aud = claims.get("aud")
        if (
            not isinstance(aud, str)
            or self.tenant.tenant_id not in aud
            and (self.tenant.tenant_domain not in aud)
        ):
            return self.error(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        return None

    def _resource_of(self, scope_param: str | None, *, delegated: bool):
        """Validate the scope parameter; returns (resource, scopes) or an error Response."""
        if scope_param is None or not scope_param.strip():
            return self.error(
                400,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter.",
            )
        scopes = scope_param.split()
        org = self.organization_uri
        resource_scopes = []
        for s in scopes:
            if s in ("openid", "profile", "offline_access", "email") and delegated:
                continue
            resource_scopes.append(s)
        if not resource_scopes:
            return org, scopes
        resources = set()
        for s in resource_scopes:
            if s.endswith("//.default"):
                resource, name = s[: -len("//.default")], ".default"
            else:
                resource, _, name = s.rpartition("/")
            if not resource or not name or "://" not in resource:
                return self.error(
                    400,
                    "invalid_scope",
                    70011,
                    f"The provided value for the input parameter 'scope' is not valid. The scope "
                    f"{s} is not valid.",
                )
            if not delegated and name != ".default":
                return self.error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {s} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            resources.add(resource.rstrip("/"))
        if len(resources) > 1:
            return self.error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"{scope_param} is not valid. All scopes included must be for a single resource.",
            )
        resource = resources.pop()
        if resource.lower() != org.lower():
            return self.error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant.tenant_domain}. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You might have sent your authentication request to the wrong tenant.",
            )
        return org, scopes

    def _lifetime(self) -> int:
        with self.lock:
            return self._rng.randint(self.TOKEN_MIN, self.TOKEN_MAX)

    def _access_token(self, *, oid: str, scope_claim: str | None, user: dict | None) -> tuple:
        now = int(self.clock())
        lifetime = self._lifetime()
        claims: dict[str, Any] = {
            "aud": self.organization_uri,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": secrets.token_urlsafe(24),
            "appid": self.tenant.client_id,
            "appidacr": "1",
            "azp": self.tenant.client_id,
            "azpacr": "1",
            "idp": self.issuer(),
            "oid": oid,
            "rh": "0." + secrets.token_urlsafe(16),
            "sub": oid,
            "tid": self.tenant.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if user is None:
            claims["idtyp"] = "app"
        else:
            claims["idtyp"] = "user"
            claims["scp"] = scope_claim or "user_impersonation"
            claims["name"] = user.get("fullname")
            claims["upn"] = user.get("domainname")
            claims["preferred_username"] = user.get("domainname")
        token = jwt.encode(claims, self.keys.signing_key, self.keys.signing_kid)
        with self.lock:
            self.issued += 1
            self._live_utis.add(claims["uti"])
        return token, lifetime

    def _client_credentials(self, form: dict[str, str]) -> Response:
        checked = self._resource_of(form.get("scope"), delegated=False)
        if isinstance(checked, Response):
            return checked
        token, lifetime = self._access_token(
            oid=self.tenant.app_object_id, scope_claim=None, user=None
        )
        resp = json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )
        resp.header("Cache-Control", "no-store, no-cache")
        resp.header("Pragma", "no-cache")
        return resp

    # ------------------------------------------------------------------ auth code flow
    def authorize(self, segment: str, params: dict[str, str]) -> Response:
        """``GET /{tenant}/oauth2/v2.0/authorize``: signs in as ``login_hint`` (or the first
        enabled licensed user) without a page, and redirects back with a code."""
        if not self.known_tenant(segment):
            return self.tenant_not_found(segment, "authorize")
        client_id = params.get("client_id", "")
        if client_id.lower() != self.tenant.client_id:
            return self._authorize_page_error(
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{self.tenant.tenant_domain}'."
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (self.redirect_uris and redirect_uri not in self.redirect_uris):
            return self._authorize_page_error(
                "AADSTS50011: The redirect URI specified in the request does not match the "
                f"redirect URIs configured for the application '{self.tenant.client_id}'."
            )
        state = params.get("state")
        if params.get("response_type") != "code":
            return self._redirect_error(
                redirect_uri,
                state,
                "unsupported_response_type",
                70000,
                "The provided response_type is not supported.",
            )
        checked = self._resource_of(params.get("scope"), delegated=True)
        if isinstance(checked, Response):
            body = json.loads(checked.body)
            return self._redirect_raw(redirect_uri, state, body["error"], body["error_description"])
        response_mode = params.get("response_mode")
        hint = params.get("login_hint") or None
        verdict, user = self._sign_in_target(hint)
        if verdict == "disabled":
            return self._redirect_traced(
                redirect_uri,
                state,
                response_mode,
                50057,
                "The user account is disabled.",
            )
        if verdict == "unknown":
            return self._redirect_traced(
                redirect_uri, state, response_mode, 50034, self._not_in_directory(hint or "")
            )
        if user is None:
            return self._redirect_error(
                redirect_uri,
                state,
                "access_denied",
                50034,
                "The user account does not exist in the directory.",
                response_mode,
            )
        code = secrets.token_urlsafe(48)
        with self.lock:
            self._codes[code] = AuthCode(
                client_id=client_id.lower(),
                redirect_uri=redirect_uri,
                scope=params.get("scope", ""),
                code_challenge=params.get("code_challenge"),
                code_challenge_method=params.get("code_challenge_method"),
                nonce=params.get("nonce"),
                user_id=user["systemuserid"],
                issued=self.clock(),
            )
        query = {"code": code}
        if state is not None:
            query["state"] = state
        query["session_state"] = str(uuid.uuid4())
        if response_mode == "form_post":
            return _form_post(redirect_uri, query)
        sep = "&" if "?" in redirect_uri else "?"
        resp = Response(302, b"")
        resp.header("Location", redirect_uri + sep + urlencode(query))
        return resp

    def _authorize_page_error(self, message: str) -> Response:
        html = (
            "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p><p>{message}"
            "</p></body></html>"
        )
        return Response(400, html.encode(), content_type="text/html; charset=utf-8")

    def _redirect_error(
        self, redirect_uri, state, error, code, message, response_mode=None
    ) -> Response:
        return self._redirect_raw(
            redirect_uri, state, error, f"AADSTS{code}: {message}", response_mode
        )

    def _redirect_traced(self, redirect_uri, state, response_mode, code, message) -> Response:
        """A sign-in refused for the person (``access_denied``), described the way Entra
        describes it on the redirect: the AADSTS text, then trace and correlation ids and a
        timestamp, plus ``error_uri``."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        description = f"AADSTS{code}: {message} " + _trace(
            str(uuid.uuid4()), str(uuid.uuid4()), now
        )
        return self._redirect_raw(
            redirect_uri,
            state,
            "access_denied",
            description,
            response_mode,
            error_uri=f"{self.base_url}/error?code={code}",
        )

    def _redirect_raw(
        self, redirect_uri, state, error, description, response_mode=None, error_uri=None
    ) -> Response:
        query = {"error": error, "error_description": description}
        if error_uri is not None:
            query["error_uri"] = error_uri
        if state is not None:
            query["state"] = state
        if response_mode == "form_post":
            return _form_post(redirect_uri, query)
        sep = "&" if "?" in redirect_uri else "?"
        resp = Response(302, b"")
        resp.header("Location", redirect_uri + sep + urlencode(query))
        return resp

    def _pick_user(self, hint: str | None) -> dict | None:
        """The person who signs in for ``login_hint`` (or the first one with an email when
        there is no hint), or None."""
        verdict, user = self._sign_in_target(hint)
        return user if verdict == "ok" else None

    def _sign_in_target(self, hint: str | None) -> tuple[str, dict | None]:
        """Who a sign-in with this ``login_hint`` reaches: ``("ok", user)``;
        ``("disabled", user)`` or ``("unknown", user)`` when the only people matching the hint
        have that account state in the tenant (the first of them); ``("nobody", None)``
        otherwise.  Application users and support/delegated-admin users are passed over, and
        so are people disabled in Dynamics (``isdisabled``) whose tenant account is enabled:
        a tenant account set to disabled or unknown decides first."""
        wanted = hint.lower() if hint else None
        blocked: tuple[str, dict] | None = None
        for user in self.store.users():
            if user.get("applicationid") or user.get("accessmode") not in (0, 1, 2):
                continue
            account = self.account(user["systemuserid"])
            if wanted is None:
                if account == "enabled" and not user.get("isdisabled"):
                    if user.get("internalemailaddress"):
                        return "ok", user
                continue
            names = {
                (user.get(column) or "").lower()
                for column in ("domainname", "internalemailaddress")
            }
            if wanted not in names:
                continue
            if account != "enabled":
                blocked = blocked or (account, user)
                continue
            if user.get("isdisabled"):
                continue
            return "ok", user
        return blocked or ("nobody", None)

    def _authorization_code(self, form: dict[str, str]) -> Response:
        code = form.get("code", "")
        with self.lock:
            grant = self._codes.pop(code, None)
        if grant is None or self.clock() - grant.issued > 600:
            return self.error(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity."
                " Send a new interactive authorization request for this user and resource.",
            )
        if form.get("redirect_uri") != grant.redirect_uri:
            return self.error(
                400,
                "invalid_grant",
                500112,
                "The reply address does not match the reply address provided when requesting "
                "Authorization code.",
            )
        if grant.code_challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                return self.error(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
            if (grant.code_challenge_method or "plain") == "S256":
                computed = jwt.b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                computed = verifier
            if computed != grant.code_challenge:
                return self.error(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
        return self._user_tokens(grant.user_id, form.get("scope") or grant.scope, grant.nonce)

    def _refresh_token(self, form: dict[str, str]) -> Response:
        rt = form.get("refresh_token", "")
        with self.lock:
            grant = self._refresh.pop(rt, None)
        if grant is None or self.clock() - grant.issued > 90 * 86400:
            return self.error(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                "an unknown date and was inactive for 90.00:00:00.",
            )
        return self._user_tokens(grant.user_id, form.get("scope") or grant.scope, None)

    def _user_tokens(self, user_id: str, scope_param: str, nonce: str | None) -> Response:
        checked = self._resource_of(scope_param, delegated=True)
        if isinstance(checked, Response):
            return checked
        user = self.store.get_user(user_id)
        if user is None:
            return self.user_disabled()
        account = self.account(user_id)
        if account == "disabled":
            return self.user_disabled()
        if account == "unknown":
            return self.user_unknown(
                user.get("domainname") or user.get("internalemailaddress") or user_id
            )
        if user.get("isdisabled"):
            return self.user_disabled()
        oid = user.get("azureactivedirectoryobjectid") or user_id
        token, lifetime = self._access_token(oid=oid, scope_claim="user_impersonation", user=user)
        id_token = jwt.encode(
            self._id_claims(user, oid, nonce), self.keys.signing_key, self.keys.signing_kid
        )
        refresh = secrets.token_urlsafe(64)
        with self.lock:
            self._refresh[refresh] = RefreshGrant(
                client_id=self.tenant.client_id,
                scope=scope_param,
                user_id=user_id,
                issued=self.clock(),
            )
        client_info = jwt.b64url(json.dumps({"uid": oid, "utid": self.tenant.tenant_id}).encode())
        scopes = " ".join(
            s for s in scope_param.split() if s not in ("openid", "profile", "offline_access")
        )
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "scope": scopes or f"{self.organization_uri}/user_impersonation",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": client_info,
            },
        )

    def _id_claims(self, user: dict[str, Any], oid: str, nonce: str | None) -> dict[str, Any]:
        """A v2.0 ID token's claims, as Entra issues them to this app for this person.
        Claims the person has no value for are left out (never null); ``nonce`` is the
        authorize request's, as sent (none on a refresh)."""
        now = int(self.clock())
        client_id = self.tenant.client_id
        tid = self.tenant.tenant_id
        # sub is pairwise: the same person has another sub in every app registration
        sub = jwt.b64url(hashlib.sha256(f"{client_id}:{tid}:{oid}".encode()).digest())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.get("fullname") or None,
            "oid": oid,
            "preferred_username": user.get("domainname")
            or user.get("internalemailaddress")
            or None,
            "email": user.get("internalemailaddress") or None,
            "sub": sub,
            "tid": tid,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return {k: v for k, v in claims.items() if v is not None}

    def tamper_id_token(
        self, resp: Response, claims: dict[str, Any], signature: str | None
    ) -> Response:
        """The ``id_token`` fault: the token response with its ID token's claims overridden
        by ``claims`` (a None value removes the claim), signed again with the tenant's key or,
        for ``signature="foreign"``, with a key that is not in the JWKS (same ``kid``)."""
        if resp.status != 200:
            return resp
        try:
            body = json.loads(resp.body)
        except ValueError:
            return resp
        token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            return resp
        _, real, _, _ = jwt.decode_unverified(token)
        real.update(claims)
        tampered = {k: v for k, v in real.items() if v is not None}
        key = self._foreign_signing_key() if signature == "foreign" else self.keys.signing_key
        body["id_token"] = jwt.encode(tampered, key, self.keys.signing_kid)
        new = json_response(resp.status, body, resp.content_type or "application/json")
        new.headers = list(resp.headers)
        return new

    def _foreign_signing_key(self) -> rsa.RSAPrivateKey:
        with self.lock:
            if self._foreign_key is None:
                self._foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._foreign_key

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


def _trace(trace_id: str, correlation_id: str, now: dt.datetime) -> str:
    return (
        f"Trace ID: {trace_id} Correlation ID: {correlation_id} "
        f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%S')}Z"
    )


def _thumbprint_hex(value: str) -> str:
    """A JWT x5t / x5t#S256 header (base64url, padded or not, or hex) as upper-case hex."""
    text = value.strip()
    if len(text) in (40, 64) and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.upper()
    try:
        raw = base64.urlsafe_b64decode(
            text.replace("+", "-").replace("/", "_").rstrip("=")
            + "=" * (-len(text.rstrip("=")) % 4)
        )
    except (binascii.Error, ValueError):
        return text
    return raw.hex().upper()


def _form_post(redirect_uri: str, fields: dict[str, str]) -> Response:
    """The auto-submitting page Entra returns for ``response_mode=form_post``."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}" />'
        for k, v in fields.items()
    )
    page = (
        "<html><head><title>Working...</title></head><body>"
        f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{inputs}'
        "<noscript><p>Script is disabled. Click Submit to continue.</p>"
        '<input type="submit" value="Submit" /></noscript></form>'
        '<script language="javascript">document.forms[0].submit();</script></body></html>'
    )
    return Response(200, page.encode(), content_type="text/html; charset=utf-8")
