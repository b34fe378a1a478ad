"""The control API (``/_control/...``): loopback clients with the control token change the
simulated organization while it runs (users, throttling, faults, secrets, clock, ...).

Each endpoint is a row of ``ControlApi.ROUTES``: the methods it answers, its path under
``/_control/`` (``{id}`` matches one segment, passed to the handler) and its handler.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .http_util import Response, json_response

if TYPE_CHECKING:
    from .server import Simulator

Handler = Callable[..., Response]
_OK = {"ok": True}
_THROTTLING_FIELDS = {"requests", "window_seconds", "concurrency", "execution_ms"}


def _info(sim: Simulator, data: dict[str, Any]) -> Response:
    info = dict(sim.info)
    info.update(
        users=sim.store.count_users(),
        seed=sim.seed,
        tenant_domain=sim.tenant.tenant_domain,
        application_user_id=sim.tenant.app_user_id,
        now=sim.now(),
    )
    return json_response(200, info)


def _create_user(sim: Simulator, data: dict[str, Any]) -> Response:
    sid = sim.create_user(**data)
    return json_response(201, {"systemuserid": sid, "user": sim.get_user(sid)})


def _count_users(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {"count": sim.store.count_users()})


def _get_user(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    user = sim.get_user(uid)
    if user is None:
        raise KeyError(uid)
    return json_response(200, user)


def _update_user(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    return json_response(200, sim.update_user(uid, **data))


def _delete_user(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    sim.delete_user(uid)
    return Response(204)


def _set_entra_account(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    unknown = sorted(set(data) - {"account"})
    if unknown:
        raise ValueError(f"unknown fields {unknown}; expected only 'account'")
    if "account" not in data:
        raise ValueError('account is required: "enabled", "disabled" or "unknown"')
    return json_response(200, sim.set_entra_account(uid, data["account"]))


def _get_entra_account(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    return json_response(200, sim.entra_account(uid))


def _disable_user(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    return json_response(200, sim.disable_user(uid))


def _enable_user(sim: Simulator, data: dict[str, Any], uid: str) -> Response:
    return json_response(200, sim.enable_user(uid))


def _set_privilege(sim: Simulator, data: dict[str, Any]) -> Response:
    # {"table": "systemuser", "read": false}
    sim.set_read_privilege(str(data.get("table")), bool(data.get("read", True)))
    return json_response(200, {"read_denied": sorted(sim.webapi.read_denied)})


def _set_throttling(sim: Simulator, data: dict[str, Any]) -> Response:
    unknown = set(data) - _THROTTLING_FIELDS
    if unknown:
        raise ValueError(f"unknown throttling fields {sorted(unknown)}")
    return json_response(200, sim.set_limits(**data))


def _get_throttling(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, sim.protection.limits.as_dict())


def _inject_fault(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(201, sim.inject_fault(**data))


def _pending_faults(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {"faults": sim.faults.pending()})


def _clear_faults(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.clear_faults()
    return json_response(200, _OK)


def _expire_tokens(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.expire_tokens()
    return json_response(200, _OK)


def _issue_token(sim: Simulator, data: dict[str, Any]) -> Response:
    token = sim.issue_token(audience=data.get("audience"), lifetime=int(data.get("lifetime", 3600)))
    return json_response(201, {"access_token": token})


def _rotate_secret(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(
        200, {"client_secret": sim.rotate_secret(keep_old=bool(data.get("keep_old")))}
    )


def _revoke_secret(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.revoke_secret()
    return json_response(200, _OK)


def _expire_secret(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.expire_secret()
    return json_response(200, _OK)


def _register_certificate(sim: Simulator, data: dict[str, Any]) -> Response:
    pem = data.get("certificate")
    if not isinstance(pem, str):
        raise ValueError("certificate (PEM text) is required")
    return json_response(201, {"thumbprint": sim.register_certificate(pem)})


def _advance_clock(sim: Simulator, data: dict[str, Any]) -> Response:
    seconds = data.get("seconds")
    if not isinstance(seconds, (int, float)):
        raise ValueError("seconds (number) is required")
    return json_response(200, {"now": sim.advance_clock(seconds)})


def _get_clock(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {"now": sim.now(), "offset": sim._clock_offset})


def _request_log(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {"requests": sim.request_log()})


def _clear_request_log(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.clear_request_log()
    return json_response(200, _OK)


def _reset(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.reset()
    return json_response(200, _OK)


def _set_latency(sim: Simulator, data: dict[str, Any]) -> Response:
    # {"per_request_ms": 400, "per_row_ms": 0.2}; an omitted field keeps its value
    return json_response(200, sim.latency.set(**data))


def _get_latency(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, sim.latency.as_dict())


def _clear_latency(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, sim.latency.clear())


def _create_contact(sim: Simulator, data: dict[str, Any]) -> Response:
    cid = sim.create_contact(**data)
    return json_response(201, {"contactid": cid})


def _update_contact(sim: Simulator, data: dict[str, Any], cid: str) -> Response:
    return json_response(200, sim.update_contact(cid, **data))


def _webhook_registrations(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {**sim.webhooks.registrations(), "settings": sim.webhooks.settings()})


def _webhook_settings(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, sim.webhooks.configure(**data))


def _webhook_privileges(sim: Simulator, data: dict[str, Any]) -> Response:
    unknown = sorted(set(data) - {"register", "deny"})
    if unknown:
        raise ValueError(f"unknown fields {unknown}; expected 'register' or 'deny'")
    register = data.get("register")
    return json_response(
        200,
        sim.webhooks.set_privileges(
            register=None if register is None else bool(register), deny=data.get("deny")
        ),
    )


def _webhook_deliveries(sim: Simulator, data: dict[str, Any]) -> Response:
    return json_response(200, {"deliveries": sim.webhooks.delivery_log()})


def _clear_webhook_deliveries(sim: Simulator, data: dict[str, Any]) -> Response:
    sim.webhooks.clear_deliveries()
    return json_response(200, _OK)


# (methods, path under /_control/, handler(simulator, body, *{id} segments))
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "info", _info),
    ("POST", "users", _create_user),
    ("GET", "users", _count_users),
    ("GET", "users/{id}", _get_user),
    ("PATCH PUT", "users/{id}", _update_user),
    ("DELETE", "users/{id}", _delete_user),
    ("POST", "users/{id}/entra", _set_entra_account),
    ("GET", "users/{id}/entra", _get_entra_account),
    ("POST", "users/{id}/disable", _disable_user),
    ("POST", "users/{id}/enable", _enable_user),
    ("PUT POST", "privileges", _set_privilege),
    ("PUT POST PATCH", "throttling", _set_throttling),
    ("GET", "throttling", _get_throttling),
    ("PUT PATCH", "latency", _set_latency),
    ("GET", "latency", _get_latency),
    ("DELETE", "latency", _clear_latency),
    ("POST", "faults", _inject_fault),
    ("GET", "faults", _pending_faults),
    ("DELETE", "faults", _clear_faults),
    ("POST", "tokens/expire", _expire_tokens),
    ("POST", "tokens", _issue_token),
    ("POST", "secret/rotate", _rotate_secret),
    ("POST", "secret/revoke", _revoke_secret),
    ("POST", "secret/expire", _expire_secret),
    ("POST", "certificates", _register_certificate),
    ("POST", "clock/advance", _advance_clock),
    ("GET", "clock", _get_clock),
    ("GET", "requests", _request_log),
    ("DELETE", "requests", _clear_request_log),
    ("POST", "reset", _reset),
    ("POST", "contacts", _create_contact),
    ("PATCH PUT", "contacts/{id}", _update_contact),
    ("GET", "webhooks", _webhook_registrations),
    ("PUT POST PATCH", "webhooks/settings", _webhook_settings),
    ("PUT POST", "webhooks/privileges", _webhook_privileges),
    ("GET", "webhooks/deliveries", _webhook_deliveries),
    ("DELETE", "webhooks/deliveries", _clear_webhook_deliveries),
)
_TABLE = [(frozenset(methods.split()), tuple(path.split("/")), h) for methods, path, h in ROUTES]


def route(method: str, parts: list[str]) -> tuple[Handler, list[str]] | None:
    """The handler for a request and the path segments its ``{id}`` placeholders matched."""
    for methods, pattern, handler in _TABLE:
        if method not in methods or len(pattern) != len(parts):
            continue
        if all(p == "{id}" or p == s for p, s in zip(pattern, parts, strict=True)):
            return handler, [s for p, s in zip(pattern, parts, strict=True) if p == "{id}"]
    return None


class ControlApi:
    """Authentication and dispatch of control requests (mixed into ``Simulator``)."""

    def _handle_control(self, h: Any, path: str, query: str, body: bytes) -> Response:
        """Answer a control request (``query`` is not used: every endpoint takes a body)."""
        try:
            if not ipaddress.ip_address(h.client_address[0].split("%")[0]).is_loopback:
                return json_response(403, {"error": "control API is for loopback clients only"})
        except ValueError:
            return json_response(403, {"error": "control API is for loopback clients only"})
        auth = h.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.control_token.encode()
        ):
            resp = json_response(401, {"error": "missing or invalid control token"})
            resp.header("WWW-Authenticate", 'Bearer realm="dataverse_sim control"')
            return resp
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return json_response(400, {"error": "body must be JSON"})
        if not isinstance(data, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        parts = [p for p in path.split("/") if p][1:]
        method = h.command
        try:
            return self._control_route(method, parts, data)
        except KeyError as exc:
            return json_response(404, {"error": f"not found: {exc.args[0]}"})
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})

    def _control_route(self, method: str, parts: list[str], data: dict[str, Any]) -> Response:
        found = route(method, parts)
        if found is None:
            return json_response(
                404, {"error": f"no control endpoint {method} /_control/{'/'.join(parts)}"}
            )
        handler, ids = found
        return handler(self, data, *ids)
