"""Signing a person in: ``GET /{tenant}/oauth2/v2.0/authorize`` (who the ``login_hint``
reaches, the redirect back with a code or an error), the ``authorization_code`` and
``refresh_token`` grants that redeem it, the ID token, and the ``id_token`` fault."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from . import jwt
from .entra_errors import trace_text
from .http_util import Response, json_response


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


class SignInFlow:
    """The authorization-code flow (mixed into ``Entra``)."""

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
        if not redirect_uri:
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
        description = f"AADSTS{code}: {message} " + trace_text(
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
