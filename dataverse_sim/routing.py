"""Routing a request to the Web API or the Entra tenant, with the service protection
limits, the injected faults and the latency model that apply to it (the control API is in
``control``)."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from urllib.parse import parse_qsl

from .entra import AuthFailure
from .http_util import Response, json_response, odata_error
from .protection import Fault
from .transport import RequestHandler

ROW_MARKER = b'"@odata.etag":'  # every record the Web API returns has this key, once
LATENCY_FIELDS = ("per_request_ms", "per_row_ms")
MAX_PER_REQUEST_MS = 600_000.0  # ten minutes
MAX_PER_ROW_MS = 1_000.0


class Latency:
    """How long the Web API takes to answer, as a model of a real organization: a fixed
    ``per_request_ms`` plus ``per_row_ms`` for every record in the response (0 and 0, the
    default: at once).  Entra ID and the control API are never delayed.

    Real figures vary with the environment (region, tier, storage, plug-ins) and its load;
    this is a model to measure whether a client hides its own work behind waiting, not a
    prediction."""

    def __init__(self, per_request_ms: float = 0.0, per_row_ms: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._initial = self._validated(
            {"per_request_ms": per_request_ms, "per_row_ms": per_row_ms}, (0.0, 0.0)
        )
        self._model = self._initial  # a tuple, replaced whole: read without the lock

    @staticmethod
    def _validated(data: dict, current: tuple[float, float]) -> tuple[float, float]:
        unknown = sorted(set(data) - set(LATENCY_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown latency fields {unknown}; expected per_request_ms, per_row_ms"
            )
        values = list(current)
        for i, (name, limit) in enumerate(
            zip(LATENCY_FIELDS, (MAX_PER_REQUEST_MS, MAX_PER_ROW_MS), strict=True)
        ):
            if name not in data:
                continue
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of milliseconds")
            if not math.isfinite(value) or not 0 <= value <= limit:
                raise ValueError(f"{name} must be between 0 and {limit:g}")
            values[i] = float(value)
        return values[0], values[1]

    def set(self, **fields: float) -> dict[str, float]:
        """Change the model (an omitted field keeps its value); ``ValueError`` when a
        field is unknown, not a number, negative or too large."""
        with self._lock:
            self._model = self._validated(fields, self._model)
            return self.as_dict()

    def clear(self) -> dict[str, float]:
        """No latency at all."""
        with self._lock:
            self._model = (0.0, 0.0)
            return self.as_dict()

    def reset(self) -> None:
        """Back to the model the simulator was started with (none unless given)."""
        with self._lock:
            self._model = self._initial

    def as_dict(self) -> dict[str, float]:
        per_request, per_row = self._model
        return {"per_request_ms": per_request, "per_row_ms": per_row}

    def delay_ms(self, resp: Response) -> tuple[float, int]:
        """The delay for a response already built, and the records it holds."""
        per_request, per_row = self._model
        if not (per_request or per_row):
            return 0.0, 0
        rows = _rows_in(resp.body) if per_row else 0
        return per_request + per_row * rows, rows


def _rows_in(body: bytes) -> int:
    """The records in a Web API response: each has one ``@odata.etag`` key (the exact bytes
    ``"@odata.etag":`` cannot occur inside a JSON string, whose quotes are escaped). A
    collection whose entries have no etag (EntityDefinitions) is counted by parsing it."""
    rows = body.count(ROW_MARKER)
    if rows or b'"value":[' not in body:
        return rows
    try:
        value = json.loads(body).get("value")
    except (ValueError, AttributeError):
        return 0
    return len(value) if isinstance(value, list) else 0


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
                resp = self._fault_response(h, fault)
                self._delay(resp, log)
                h.send_response_obj(resp, log)
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
            self._delay(resp, log)
            h.send_response_obj(resp, log)
            return
        client = f"{claims.get('appid')}:{claims.get('oid')}"
        verdict = self.protection.enter(client)
        if verdict is not None:
            resp = odata_error(429, verdict.code, verdict.message)
            resp.header("Retry-After", str(verdict.retry_after))
            self._delay(resp, log)
            h.send_response_obj(resp, log)
            return
        started = time.perf_counter()
        try:
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.seconds)
            rest = path[len("/api/data/") :]
            version, _, sub = rest.partition("/")
            resp = self.webapi.handle(h.command, version, sub, query, h.headers, claims, body)
            # within the request's execution time, as a real organization's would be
            self._delay(resp, log)
        finally:
            self.protection.leave(client, (time.perf_counter() - started) * 1000)
        remaining, remaining_ms = self.protection.remaining(client)
        resp.header("x-ms-ratelimit-burst-remaining-xrm-requests", str(remaining))
        resp.header("x-ms-ratelimit-time-remaining-xrm-requests", f"{remaining_ms:,}.00")
        resp.header("x-ms-service-request-id", secrets.token_hex(16))
        self._send_faulted(h, fault, resp, log)

    def _delay(self, resp: Response, log: dict) -> None:
        """Wait as the latency model says for this Web API response, once it is built (in
        this request's thread, holding no lock)."""
        delay_ms, rows = self.latency.delay_ms(resp)
        if delay_ms <= 0:
            return
        log["latency_ms"] = round(delay_ms, 3)
        log["rows"] = rows
        time.sleep(delay_ms / 1000)

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
