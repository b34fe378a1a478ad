"""The HTTPS server: one ``ThreadingHTTPServer`` serves the Entra ID tenant, the Dataverse
Web API and the control API.

Python API::

    from dataverse_sim.server import Simulator

    with Simulator(users=250, seed=1, port=0, state_dir=path) as sim:
        sim.info        # organization_uri, authority_host, tenant_id, client_id, ...
        sim.store       # the in-memory organization data
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import jwt
from .certs import KeyMaterial, ensure_key_material, ensure_untrusted_certificate
from .data import Store, make_tenant
from .entra import AuthFailure, Entra
from .http_util import Response, dumps, json_response, odata_error
from .protection import Fault, FaultQueue, Limits, ServiceProtection
from .webapi import WebApi

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


class _Closed(Exception):
    """The connection was closed on purpose (injected fault)."""


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for idle keep-alive connections
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, handler, simulator: Simulator, context: ssl.SSLContext) -> None:
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.simulator = simulator
        self.ssl_context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        request.settimeout(30)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.simulator._context_for_new_connection(self.ssl_context)
        if context is None:  # the "refuse" fault
            _abort(request)
            return
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with contextlib.suppress(OSError):
                request.close()
            return
        with self.connections_lock:
            self.connections.add(tls)
        try:
            tls.settimeout(120)
            self.RequestHandlerClass(tls, client_address, self)
        except (_Closed, ConnectionError, ssl.SSLError, TimeoutError, OSError):
            pass
        finally:
            with self.connections_lock:
                self.connections.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def shutdown_request(self, request) -> None:
        with contextlib.suppress(OSError):
            request.close()

    def handle_error(self, request, client_address) -> None:  # pragma: no cover - noise
        pass

    def close_all(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP reset instead of an orderly close."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        socket.socket.close(sock)


def _server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dataverse_sim"
    sys_version = ""
    server: _TLSServer

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature from the base class
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                n = 0
            return self.rfile.read(n) if n > 0 else b""
        return b""

    def _dispatch(self) -> None:
        sim = self.server.simulator
        self._started = time.perf_counter()
        self._logged = False
        body = self._read_body()
        split = urlsplit(self.path)
        path = unquote(split.path)
        log_entry: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),  # as sent: shows where a redirect led
            "status": None,
            "timestamp": sim._iso_now(),
        }
        try:
            sim._handle(self, path, split.query, body, log_entry)
        except _Closed:
            self.close_connection = True
            log_entry.setdefault("status", 0)
            raise
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
            raise
        except Exception:  # pragma: no cover - reported as a 500 like a real server would
            traceback.print_exc(file=sys.stderr)
            with contextlib.suppress(Exception):
                self.send_response_obj(
                    odata_error(500, "0x80040216", "An unexpected error occurred."), log_entry
                )
        finally:
            self._log(log_entry)

    def _log(self, log_entry: dict[str, Any]) -> None:
        """Record the request once, before its answer leaves: a client that reads the log
        right after its response must find the request there."""
        if self._logged:
            return
        self._logged = True
        log_entry["duration_ms"] = round((time.perf_counter() - self._started) * 1000, 2)
        if not urlsplit(self.path).path.startswith("/_control/"):
            self.server.simulator._record(log_entry)

    def send_response_obj(self, resp: Response, log_entry: dict[str, Any]) -> None:
        log_entry["status"] = resp.status
        self._log(log_entry)
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers:
            self.send_header(name, value)
        if resp.status not in (204, 304):
            self.send_header("Content-Length", str(len(resp.body)))
        else:
            self.send_header("Content-Length", "0")
        self.end_headers()
        if self.command != "HEAD" and resp.status not in (204, 304):
            self.wfile.write(resp.body)

    def send_truncated(self, resp: Response, log_entry: dict[str, Any]) -> None:
        log_entry["status"] = resp.status
        self._log(log_entry)
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body[: max(1, len(resp.body) // 2)])
        self.wfile.flush()
        self.hard_close()

    def hard_close(self) -> None:
        """Abort the connection (TCP reset)."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
        _abort(self.connection)
        raise _Closed()


class Simulator:
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
        self.control_token = secrets.token_urlsafe(32)
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._log_lock = threading.Lock()
        self._server: _TLSServer | None = None
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
        context = _server_context(self._keys.server_cert_path, self._keys.server_key_path)
        server = _TLSServer((self.host, self.requested_port), _Handler, self, context)
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
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.server_address[1]

    @property
    def organization_uri(self) -> str:
        return self._base_url

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
    def create_user(self, **fields: Any) -> str:
        return self.store.create_user(**fields)

    def update_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        return self.store.update_user(user_id, **fields)

    def disable_user(self, user_id: str) -> dict[str, Any]:
        return self.store.disable_user(user_id)

    def enable_user(self, user_id: str) -> dict[str, Any]:
        return self.store.enable_user(user_id)

    def delete_user(self, user_id: str) -> None:
        self.store.delete_user(user_id)

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
        secret, clock not advanced, empty request log."""
        self._clock_offset = 0.0
        self.store.generate()
        self.protection.reset(Limits(**self._default_limits.as_dict()))
        self.faults.clear()
        self.webapi.read_denied.clear()
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
                self._untrusted_context = _server_context(cert, key)
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

    # ------------------------------------------------------------------ routing
    def _handle(self, h: _Handler, path: str, query: str, body: bytes, log: dict) -> None:
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
    def _serve_entra(self, h: _Handler, path: str, query: str, body: bytes, log: dict) -> None:
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
        self, h: _Handler, fault: Fault, segment: str, endpoint: str, form: dict[str, str]
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

    def _redirect(self, h: _Handler, fault: Fault) -> Response:
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

    def _send_faulted(self, h: _Handler, fault: Fault | None, resp: Response, log: dict) -> None:
        if fault is not None and fault.kind == "truncated":
            h.send_truncated(resp, log)
            return
        if fault is not None and fault.kind == "malformed":
            broken = resp.body[: max(1, len(resp.body) // 3)] + b'\x00{"value":[,'
            resp = Response(200, broken, resp.headers, resp.content_type)
        h.send_response_obj(resp, log)

    def _handle_entra(self, h: _Handler, path: str, query: str, form: dict[str, str]) -> Response:
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

    def _handle_webapi(self, h: _Handler, path: str, query: str, body: bytes, log: dict) -> None:
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

    def _fault_response(self, h: _Handler, fault: Fault) -> Response:
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

    # ------------------------------------------------------------------ control API
    def _handle_control(self, h: _Handler, path: str, query: str, body: bytes) -> Response:
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
        ok = {"ok": True}
        if parts == ["info"] and method == "GET":
            info = dict(self.info)
            info.update(
                users=self.store.count_users(),
                seed=self.seed,
                tenant_domain=self.tenant.tenant_domain,
                application_user_id=self.tenant.app_user_id,
                now=self.now(),
            )
            return json_response(200, info)
        if parts == ["users"]:
            if method == "POST":
                sid = self.create_user(**data)
                return json_response(201, {"systemuserid": sid, "user": self.get_user(sid)})
            if method == "GET":
                return json_response(200, {"count": self.store.count_users()})
        if len(parts) >= 2 and parts[0] == "users":
            uid = parts[1]
            if len(parts) == 2:
                if method == "GET":
                    user = self.get_user(uid)
                    if user is None:
                        raise KeyError(uid)
                    return json_response(200, user)
                if method in ("PATCH", "PUT"):
                    return json_response(200, self.update_user(uid, **data))
                if method == "DELETE":
                    self.delete_user(uid)
                    return Response(204)
            if parts[2:] == ["entra"]:
                if method == "POST":
                    unknown = sorted(set(data) - {"account"})
                    if unknown:
                        raise ValueError(f"unknown fields {unknown}; expected only 'account'")
                    if "account" not in data:
                        raise ValueError('account is required: "enabled", "disabled" or "unknown"')
                    return json_response(200, self.set_entra_account(uid, data["account"]))
                if method == "GET":
                    return json_response(200, self.entra_account(uid))
            if parts[2:] == ["disable"] and method == "POST":
                return json_response(200, self.disable_user(uid))
            if parts[2:] == ["enable"] and method == "POST":
                return json_response(200, self.enable_user(uid))
        if parts == ["privileges"] and method in ("PUT", "POST"):
            # {"table": "systemuser", "read": false}
            self.set_read_privilege(str(data.get("table")), bool(data.get("read", True)))
            return json_response(200, {"read_denied": sorted(self.webapi.read_denied)})
        if parts == ["throttling"]:
            if method in ("PUT", "POST", "PATCH"):
                allowed = {"requests", "window_seconds", "concurrency", "execution_ms"}
                unknown = set(data) - allowed
                if unknown:
                    raise ValueError(f"unknown throttling fields {sorted(unknown)}")
                return json_response(200, self.set_limits(**data))
            if method == "GET":
                return json_response(200, self.protection.limits.as_dict())
        if parts == ["faults"]:
            if method == "POST":
                return json_response(201, self.inject_fault(**data))
            if method == "GET":
                return json_response(200, {"faults": self.faults.pending()})
            if method == "DELETE":
                self.clear_faults()
                return json_response(200, ok)
        if parts == ["tokens", "expire"] and method == "POST":
            self.expire_tokens()
            return json_response(200, ok)
        if parts == ["tokens"] and method == "POST":
            return json_response(
                201,
                {
                    "access_token": self.issue_token(
                        audience=data.get("audience"), lifetime=int(data.get("lifetime", 3600))
                    )
                },
            )
        if parts == ["secret", "rotate"] and method == "POST":
            return json_response(
                200, {"client_secret": self.rotate_secret(keep_old=bool(data.get("keep_old")))}
            )
        if parts == ["secret", "revoke"] and method == "POST":
            self.revoke_secret()
            return json_response(200, ok)
        if parts == ["secret", "expire"] and method == "POST":
            self.expire_secret()
            return json_response(200, ok)
        if parts == ["certificates"] and method == "POST":
            pem = data.get("certificate")
            if not isinstance(pem, str):
                raise ValueError("certificate (PEM text) is required")
            return json_response(201, {"thumbprint": self.register_certificate(pem)})
        if parts == ["clock", "advance"] and method == "POST":
            seconds = data.get("seconds")
            if not isinstance(seconds, (int, float)):
                raise ValueError("seconds (number) is required")
            return json_response(200, {"now": self.advance_clock(seconds)})
        if parts == ["clock"] and method == "GET":
            return json_response(200, {"now": self.now(), "offset": self._clock_offset})
        if parts == ["requests"]:
            if method == "GET":
                return json_response(200, {"requests": self.request_log()})
            if method == "DELETE":
                self.clear_request_log()
                return json_response(200, ok)
        if parts == ["reset"] and method == "POST":
            self.reset()
            return json_response(200, ok)
        return json_response(
            404, {"error": f"no control endpoint {method} /_control/{'/'.join(parts)}"}
        )


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


__all__ = ["Simulator", "INFO_KEYS", "dumps"]
