"""Entra's token endpoints: ``/{tenant}/oauth2/v2.0/token`` (client authentication by
secret or certificate assertion, scope checks, the ``client_credentials`` grant and the
access tokens) and the legacy ``/{tenant}/oauth2/token``."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from typing import Any
from urllib.parse import unquote_plus

from . import jwt
from .http_util import Response, json_response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenEndpoint:
    """The token endpoints (mixed into ``Entra``)."""

    TOKEN_MIN = 3600
    TOKEN_MAX = 5400

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
