"""The simulator: one HTTPS server (``transport``) serves the Entra ID tenant, the Dataverse
Web API (both routed in ``routing``) and the control API (``control``).

Python API::

    from dataverse_sim.server import Simulator

    with Simulator(users=250, seed=1, port=0, state_dir=path) as sim:
        sim.info        # organization_uri, authority_host, tenant_id, client_id, ...
        sim.store       # the in-memory organization data
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from . import jwt
from .certs import KeyMaterial, ensure_key_material, ensure_untrusted_certificate
from .control import ControlApi
from .data import Store, make_tenant
from .entra import Entra
from .http_util import dumps
from .layout import ORGANIZATION_ID, ROOT_BUSINESS_UNIT_ID
from .protection import Fault, FaultQueue, Limits, ServiceProtection
from .routing import Latency, RequestRouting
from .transport import RequestHandler, TLSServer, server_context
from .webapi import WebApi
from .webhooks import Webhooks

INFO_KEYS = (
    "organization_uri",
    "authority_host",
    "tenant_id",
    "client_id",
    "client_secret",
    "ca_bundle",
    "control_url",
    "control_token",
)


class Simulator(RequestRouting, ControlApi):
    """A local Dataverse organization plus its Entra ID tenant, served over HTTPS.

    Parameters:
        users: number of ``systemuser`` rows to generate (the built-in special users are
            always present, so very small numbers are rounded up to include them).
        seed: makes the data, tenant id, client id and client secret deterministic.
        host, port: where to listen (port 0 picks a free port).
        state_dir: directory for the CA, server certificate and token-signing key
            (created if needed, reused on later starts).  Defaults to a temporary directory.
        requests_per_window, window_seconds, concurrency, execution_ms: service protection
            limits per client.
        change_tracking: whether ``systemuser`` reports ChangeTrackingEnabled and accepts
            ``Prefer: odata.track-changes``.
        latency_per_request_ms, latency_per_row_ms: the latency model (``routing.Latency``):
            every Web API response waits this long per request plus per record it returns
            (0 = at once); ``reset()`` comes back to these values.
    """

    def __init__(
        self,
        users: int = 250,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        requests_per_window: int = 6000,
        window_seconds: float = 300,
        concurrency: int = 52,
        execution_ms: int = 1_200_000,
        change_tracking: bool = True,
        change_tracking_days: int = 30,
        log_size: int = 10_000,
        latency_per_request_ms: float = 0.0,
        latency_per_row_ms: float = 0.0,
    ) -> None:
        self.users = users
        self.seed = seed
        self.host = host
        self.requested_port = port
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        if state_dir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="dataverse_sim-")
            state_dir = self._tmpdir.name
        self.state_dir = Path(state_dir)
        self._clock_offset = 0.0
        self.tenant = make_tenant(seed)
        self.store = Store(users=users, seed=seed, clock=self.now, tenant=self.tenant)
        self._default_limits = Limits(
            requests=requests_per_window,
            window_seconds=float(window_seconds),
            concurrency=concurrency,
            execution_ms=execution_ms,
        )
        self.protection = ServiceProtection(self.now, Limits(**self._default_limits.as_dict()))
        self.faults = FaultQueue()
        self.latency = Latency(latency_per_request_ms, latency_per_row_ms)
        self.control_token = secrets.token_urlsafe(32)
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._log_lock = threading.Lock()
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._keys: KeyMaterial | None = None
        self._untrusted_context: ssl.SSLContext | None = None
        self._untrusted_lock = threading.Lock()
        self._base_url = ""
        self.entra: Entra | None = None
        self.webapi = WebApi(
            store=self.store,
            base_url=lambda: self._base_url,
            clock=self.now,
            change_tracking=change_tracking,
            change_tracking_days=change_tracking_days,
        )
        self.webhooks = Webhooks(
            clock=self.now,
            base_url=lambda: self._base_url,
            organization_id=ORGANIZATION_ID,
            organization_name=f"unqsim{seed}",
            business_unit_id=ROOT_BUSINESS_UNIT_ID,
        )
        self.webapi.webhooks = self.webhooks

    # ------------------------------------------------------------------ lifecycle
    def now(self) -> float:
        """The simulator's clock (Unix time plus any advance)."""
        return time.time() + self._clock_offset

    def _iso_now(self) -> str:
        t = self.now()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self._keys = ensure_key_material(self.state_dir, self.host)
        context = server_context(self._keys.server_cert_path, self._keys.server_key_path)
        server = TLSServer((self.host, self.requested_port), RequestHandler, self, context)
        port = server.server_address[1]
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        display = f"[{host}]" if ":" in host else host
        self._base_url = f"https://{display}:{port}"
        self.entra = Entra(
            tenant=self.tenant,
            keys=self._keys,
            store=self.store,
            clock=self.now,
            base_url=lambda: self._base_url,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="dataverse_sim",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        self.webhooks.stop()
        server.shutdown()
        server.close_all()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def close(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.server_address[1]

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def tenant_domain(self) -> str:
        return self.tenant.tenant_domain

    @property
    def client_id(self) -> str:
        return self.tenant.client_id

    @property
    def application_user_id(self) -> str:
        return self.tenant.app_user_id

    @property
    def info(self) -> dict[str, str]:
        if self._server is None or self.entra is None or self._keys is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return {
            "organization_uri": self._base_url,
            "authority_host": self._base_url,
            "tenant_id": self.tenant.tenant_id,
            "client_id": self.tenant.client_id,
            "client_secret": self.entra.client_secret,
            "ca_bundle": str(self._keys.ca_cert_path),
            "control_url": f"{self._base_url}/_control",
            "control_token": self.control_token,
        }

    def write_info_file(self, path: str | os.PathLike[str]) -> None:
        """Write ``info`` as one JSON object, atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".info-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.info, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)

    # ------------------------------------------------------------------ control (Python)
    # Changes made here are events: registered webhooks are called (see webhooks.py).
    def create_user(self, **fields: Any) -> str:
        sid = self.store.create_user(**fields)
        self.webhooks.notify("Create", "systemuser", sid, self.store.get_user(sid))
        return sid

    def update_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        user = self.store.update_user(user_id, **fields)
        changed = {k: user.get(k) for k in (*fields, "modifiedon")}
        self.webhooks.notify("Update", "systemuser", user_id.lower(), changed)
        return user

    def disable_user(self, user_id: str) -> dict[str, Any]:
        return self.update_user(user_id, isdisabled=True)

    def enable_user(self, user_id: str) -> dict[str, Any]:
        return self.update_user(user_id, isdisabled=False)

    def delete_user(self, user_id: str) -> None:
        self.store.delete_user(user_id)
        self.webhooks.notify("Delete", "systemuser", user_id.lower())

    def create_contact(self, **fields: Any) -> str:
        cid = self.store.create_contact(**fields)
        with self.store.lock:
            record = self.store.contacts.record_dict(self.store.contacts.get(cid))
        self.webhooks.notify("Create", "contact", cid, record)
        return cid

    def update_contact(self, contact_id: str, **fields: Any) -> dict[str, Any]:
        contact = self.store.update_contact(contact_id.lower(), **fields)
        changed = {k: contact.get(k) for k in (*fields, "modifiedon")}
        self.webhooks.notify("Update", "contact", contact_id.lower(), changed)
        return contact

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        return self.store.get_user(user_id)

    def set_entra_account(self, user_id: str, account: str) -> dict[str, str]:
        """Set a person's account in the Entra tenant, apart from Dynamics' ``isdisabled``:
        ``"enabled"`` (the default), ``"disabled"`` (sign-ins answer AADSTS50057, their codes
        and refresh tokens are refused) or ``"unknown"`` (the person no longer exists in the
        tenant: AADSTS50034).  ``reset()`` makes every account enabled again."""
        user_id = user_id.lower()
        if self.store.get_user(user_id) is None:
            raise KeyError(user_id)
        return {
            "systemuserid": user_id,
            "account": self._require_entra().set_account(user_id, account),
        }

    def entra_account(self, user_id: str) -> dict[str, str]:
        user_id = user_id.lower()
        if self.store.get_user(user_id) is None:
            raise KeyError(user_id)
        return {"systemuserid": user_id, "account": self._require_entra().account(user_id)}

    def set_limits(
        self,
        requests: int | None = None,
        window_seconds: float | None = None,
        concurrency: int | None = None,
        execution_ms: int | None = None,
        *,
        reset_counters: bool = True,
    ) -> dict[str, Any]:
        """Change the service protection limits (None keeps a value)."""
        limits = self.protection.configure(
            requests=requests,
            window_seconds=window_seconds,
            concurrency=concurrency,
            execution_ms=execution_ms,
        )
        if reset_counters:
            self.protection.reset()
        return limits.as_dict()

    def set_read_privilege(self, logical_name: str, allowed: bool) -> None:
        """Give or take the application user's Read privilege on a table (systemuser,
        contact, businessunit): without it, reads of the table answer 403."""
        if logical_name not in ("systemuser", "contact", "businessunit"):
            raise ValueError(f"No table named {logical_name!r}.")
        (self.webapi.read_denied.discard if allowed else self.webapi.read_denied.add)(logical_name)

    def inject_fault(self, kind: str, count: int | None = None, **options: Any) -> dict[str, Any]:
        """Make the next ``count`` (default 1; ``times`` is a synonym) matching requests fail;
        see ``Fault`` for options (status, retry_after, seconds, path_contains, target
        "webapi" or "entra", location, token_endpoint; claims and signature for
        ``id_token``).  ``refuse`` and ``untrusted_certificate`` apply to the next ``count``
        new TCP connections instead, whatever they are for.  A huge ``count`` lasts until
        ``clear_faults``."""
        if count is not None:
            options["count"] = count
        fault = Fault.from_dict({"kind": kind, **options})
        if fault.kind == "untrusted_certificate":
            self._untrusted_tls()  # make the certificate now, not during a handshake
        self.faults.add(fault)
        return fault.as_dict()

    def clear_faults(self) -> None:
        self.faults.clear()

    def expire_tokens(self) -> None:
        self._require_entra().expire_tokens()

    def rotate_secret(self, keep_old: bool = False) -> str:
        return self._require_entra().rotate_secret(keep_old=keep_old)

    def revoke_secret(self) -> None:
        self._require_entra().revoke_secret()

    def expire_secret(self) -> None:
        self._require_entra().expire_secret()

    def register_certificate(self, certificate_pem: str | bytes) -> str:
        return self._require_entra().register_certificate(certificate_pem)

    def issue_token(
        self,
        *,
        audience: str | None = None,
        lifetime: int = 3600,
        oid: str | None = None,
        issued_at: float | None = None,
    ) -> str:
        """Mint an access token directly (for tests), optionally for another audience."""
        entra = self._require_entra()
        now = int(self.now() if issued_at is None else issued_at)
        claims = {
            "aud": audience or self._base_url,
            "iss": entra.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": self.tenant.client_id,
            "azp": self.tenant.client_id,
            "idtyp": "app",
            "oid": oid or self.tenant.app_object_id,
            "sub": oid or self.tenant.app_object_id,
            "tid": self.tenant.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        assert self._keys is not None
        token = jwt.encode(claims, self._keys.signing_key, self._keys.signing_kid)
        with entra.lock:
            entra._live_utis.add(claims["uti"])
        return token

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator's clock forward; returns the new time (Unix seconds)."""
        self._clock_offset += float(seconds)
        return self.now()

    def request_log(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def reset(self) -> None:
        """Back to the initial state: regenerated data, default limits, no faults, original
        secret, clock not advanced, empty request log, the start-up latency model."""
        self._clock_offset = 0.0
        self.store.generate()
        self.protection.reset(Limits(**self._default_limits.as_dict()))
        self.faults.clear()
        self.latency.reset()
        self.webapi.read_denied.clear()
        self.webhooks.reset()
        if self.entra is not None:
            self.entra.reset()
        self.clear_request_log()

    def _require_entra(self) -> Entra:
        if self.entra is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self.entra

    def _untrusted_tls(self) -> ssl.SSLContext:
        with self._untrusted_lock:
            if self._untrusted_context is None:
                cert, key = ensure_untrusted_certificate(self.state_dir, self.host)
                self._untrusted_context = server_context(cert, key)
            return self._untrusted_context

    def _context_for_new_connection(self, usual: ssl.SSLContext) -> ssl.SSLContext | None:
        """The TLS context for a connection just accepted, after the connection-level faults:
        None means refuse it."""
        fault = self.faults.take("", "connection")
        if fault is None:
            return usual
        if fault.kind == "refuse":
            return None
        return self._untrusted_tls()

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(entry)


__all__ = ["Simulator", "INFO_KEYS", "dumps"]
