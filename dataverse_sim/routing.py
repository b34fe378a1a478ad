"""Routing a request to the Web API or the Entra tenant, with the service protection
limits and the injected faults that apply to it (the control API is in ``control``)."""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import parse_qsl

from .entra import AuthFailure
from .http_util import Response, json_response, odata_error
from .protection import Fault
from .transport import RequestHandler


class RequestRouting:
    """Request dispatch for ``Simulator`` (mixed into it)."""

    def _handle(self, h: RequestHandler, path: str, query: str, body: bytes, log: dict) -> None:
        if path.startswith("/api/data/"):
            log["kind"] = "webapi"
            self._handle_webapi(h, path, query, body, log)
            return
        if path.startswith("/_control/") or path == "/_control":
            log["kind"] = "control"
            h.send_response_obj(self._handle_control(h, path, query, body), log)
            return
        log["kind"] = "entra"
        self._serve_entra(h, path, query, body, log)

    # ------------------------------------------------------------------ Entra
    def _serve_entra(
        self, h: RequestHandler, path: str, query: str, body: bytes, log: dict
    ) -> None:
        """Entra's endpoints, and any path nobody routes (logged all the same, so a test can
        see whether a secret was sent somewhere a redirect pointed)."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        log["credential"] = _credential(form, h.headers.get("Authorization"))
        parts = [p for p in path.split("/") if p]
        endpoint = _entra_endpoint(parts[1:]) if parts else None
        fault = None
        if endpoint is not None:
            fault = self.faults.take(h.path, "entra", lambda f: _fault_fits(f, endpoint, form))
        if fault is None:
            h.send_response_obj(self._handle_entra(h, path, query, form), log)
            return
        log["fault"] = fault.kind
        if fault.kind == "reset":
            log["status"] = 0
            h.hard_close()
        if fault.kind == "slow":
            time.sleep(fault.seconds)
        resp = self._entra_fault_response(h, fault, parts[0], endpoint, form)
        if resp is None:  # slow, truncated, malformed: the real answer, late or damaged
            resp = self._handle_entra(h, path, query, form)
        if fault.kind == "id_token":  # the real answer with another ID token in it
            resp = self._require_entra().tamper_id_token(resp, fault.claims or {}, fault.signature)
        self._send_faulted(h, fault, resp, log)

    def _entra_fault_response(
        self, h: RequestHandler, fault: Fault, segment: str, endpoint: str, form: dict[str, str]
    ) -> Response | None:
        entra = self._require_entra()
        if fault.kind == "status":
            resp = entra.unavailable(fault.status)
            if fault.status == 429 or fault.retry_after is not None:
                retry = fault.retry_after if fault.retry_after is not None else 1
                resp.header("Retry-After", str(retry))
            return resp
        if fault.kind == "redirect":
            return self._redirect(h, fault)
        if fault.kind == "discovery_elsewhere":
            return self._discovery_elsewhere(fault, segment)
        if fault.kind == "tenant_not_found":
            return entra.tenant_not_found(segment, endpoint)
        if fault.kind == "app_disabled":
            return entra.app_disabled(form.get("client_id"))
        if fault.kind == "user_disabled":
            return entra.user_disabled()
        return None

    def _redirect(self, h: RequestHandler, fault: Fault) -> Response:
        # by default the same path under another name for this server, so a client that
        # follows it stays on the simulator and the log shows what it sent there
        location = fault.location or f"https://localhost:{self.port}/redirected{h.path}"
        return Response(fault.status).header("Location", location)

    def _discovery_elsewhere(self, fault: Fault, segment: str) -> Response:
        """The real discovery document, except that it sends clients to another host for
        tokens and sign-ins (the issuer stays the real one)."""
        resp = self._require_entra().openid_configuration(segment)
        if resp.status != 200:
            return resp
        doc = json.loads(resp.body)
        token_endpoint = (
            fault.token_endpoint or f"https://localhost:{self.port}/{segment}/oauth2/v2.0/token"
        )
        doc["token_endpoint"] = token_endpoint
        doc["authorization_endpoint"] = token_endpoint.rsplit("/", 1)[0] + "/authorize"
        return json_response(200, doc)

    def _send_faulted(
        self, h: RequestHandler, fault: Fault | None, resp: Response, log: dict
    ) -> None:
        if fault is not None and fault.kind == "truncated":
            h.send_truncated(resp, log)
            return
        if fault is not None and fault.kind == "malformed":
            broken = resp.body[: max(1, len(resp.body) // 3)] + b'\x00{"value":[,'
            resp = Response(200, broken, resp.headers, resp.content_type)
        h.send_response_obj(resp, log)

    def _handle_entra(
        self, h: RequestHandler, path: str, query: str, form: dict[str, str]
    ) -> Response:
        entra = self._require_entra()
        parts = [p for p in path.split("/") if p]
        if not parts:
            return json_response(
                200,
                {
                    "service": "dataverse_sim",
                    "organization_uri": self._base_url,
                    "tenant_id": self.tenant.tenant_id,
                },
            )
        segment, rest = parts[0], parts[1:]
        method = h.command
        if rest == ["v2.0", ".well-known", "openid-configuration"] and method == "GET":
            return entra.openid_configuration(segment)
        if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]) and method == "GET":
            if not (entra.known_tenant(segment) or segment in ("common", "organizations")):
                return entra.openid_configuration(segment)
            return entra.jwks()
        if rest == ["oauth2", "v2.0", "token"]:
            if method != "POST":
                return entra.error(
                    405,
                    "invalid_request",
                    900561,
                    "The endpoint only accepts POST requests. Received a GET request.",
                )
            ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                return entra.error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                )
            return entra.token(segment, form, h.headers.get("Authorization"))
        if rest == ["oauth2", "token"] and method == "POST":
            return entra.token_v1(segment, form, h.headers.get("Authorization"))
        if rest == ["oauth2", "v2.0", "authorize"] and method == "GET":
            return entra.authorize(segment, dict(parse_qsl(query, keep_blank_values=True)))
        return json_response(404, {"error": "not_found", "error_description": f"No route {path}"})

    # ------------------------------------------------------------------ Web API
    def _challenge(self) -> str:
        return (
            f"Bearer authorization_uri={self._base_url}/{self.tenant.tenant_id}/oauth2/authorize,"
            f" resource_id={self._base_url}"
        )

    def _handle_webapi(
        self, h: RequestHandler, path: str, query: str, body: bytes, log: dict
    ) -> None:
        fault = self.faults.take(h.path)
        if fault is not None:
            log["fault"] = fault.kind
            if fault.kind == "reset":
                log["status"] = 0
                h.hard_close()
            if fault.kind in ("status", "redirect"):
                h.send_response_obj(self._fault_response(h, fault), log)
                return
        entra = self._require_entra()
        try:
            claims = entra.validate(h.headers.get("Authorization"))
        except AuthFailure as exc:
            if exc.kind == "expired":
                resp = odata_error(
                    401,
                    "0x8005F101",
                    "The requested resource requires authentication. The access token has expired.",
                )
            elif exc.kind == "missing":
                resp = odata_error(
                    401, "0x8005F101", "The requested resource requires authentication."
                )
            else:
                resp = odata_error(401, "", f"Bearer token validation failed. {exc.message}")
            resp.header("WWW-Authenticate", self._challenge())
            h.send_response_obj(resp, log)
            return
        client = f"{claims.get('appid')}:{claims.get('oid')}"
        verdict = self.protection.enter(client)
        if verdict is not None:
            resp = odata_error(429, verdict.code, verdict.message)
            resp.header("Retry-After", str(verdict.retry_after))
            h.send_response_obj(resp, log)
            return
        started = time.perf_counter()
        try:
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.seconds)
            rest = path[len("/api/data/") :]
            version, _, sub = rest.partition("/")
            resp = self.webapi.handle(h.command, version, sub, query, h.headers, claims, body)
        finally:
            self.protection.leave(client, (time.perf_counter() - started) * 1000)
        remaining, remaining_ms = self.protection.remaining(client)
        resp.header("x-ms-ratelimit-burst-remaining-xrm-requests", str(remaining))
        resp.header("x-ms-ratelimit-time-remaining-xrm-requests", f"{remaining_ms:,}.00")
        resp.header("x-ms-service-request-id", secrets.token_hex(16))
        self._send_faulted(h, fault, resp, log)

    def _fault_response(self, h: RequestHandler, fault: Fault) -> Response:
        if fault.kind == "redirect":
            return self._redirect(h, fault)
        status = fault.status
        if status == 429:
            limits = self.protection.limits
            resp = odata_error(
                429,
                "0x80072322",
                f"Number of requests exceeded the limit of {limits.requests} over time window "
                f"of {int(limits.window_seconds)} seconds.",
            )
            resp.header(
                "Retry-After", str(fault.retry_after if fault.retry_after is not None else 1)
            )
            return resp
        messages = {
            500: ("0x80040216", "An unexpected error occurred."),
            502: ("", "Bad Gateway"),
            503: ("0x80040265", "The service is temporarily unavailable. Please try again later."),
            504: ("", "The request timed out."),
        }
        code, message = messages.get(status, ("", f"Injected error status {status}."))
        resp = odata_error(status, code, message)
        if fault.retry_after is not None:
            resp.header("Retry-After", str(fault.retry_after))
        return resp


def _entra_endpoint(rest: list[str]) -> str | None:
    """Which Entra endpoint a path (after the tenant segment) is; faults targeted at Entra
    apply to these only, never to unrouted paths such as a redirect's destination."""
    if rest == ["v2.0", ".well-known", "openid-configuration"]:
        return "discovery"
    if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]):
        return "keys"
    if rest in (["oauth2", "v2.0", "token"], ["oauth2", "token"]):
        return "token"
    if rest == ["oauth2", "v2.0", "authorize"]:
        return "authorize"
    return None


def _fault_fits(fault: Fault, endpoint: str, form: dict[str, str]) -> bool:
    """Kinds about one part of Entra leave the other requests alone (and are not used up by
    them): a discovery fault must not be spent on the token request before it."""
    if fault.kind == "discovery_elsewhere":
        return endpoint == "discovery"
    if fault.kind == "app_disabled":
        return endpoint == "token"
    if fault.kind == "user_disabled":
        return endpoint == "token" and form.get("grant_type") in (
            "authorization_code",
            "refresh_token",
        )
    if fault.kind == "id_token":  # the ID token of a sign-in, not of a refresh
        return endpoint == "token" and form.get("grant_type") == "authorization_code"
    return True


def _credential(form: dict[str, str], authorization: str | None) -> str | None:
    """Which client credential a request carried, for the log (never its value)."""
    if form.get("client_assertion"):
        return "client_assertion"
    if form.get("client_secret") or (authorization or "").lower().startswith("basic "):
        return "client_secret"
    return None
