"""The HTTPS transport: a ``ThreadingHTTPServer`` that wraps each accepted connection in TLS
(or refuses it, for the connection-level faults) and a request handler that hands every
request to the simulator and writes its answer (whole, truncated or aborted)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .http_util import Response, odata_error

if TYPE_CHECKING:
    from .server import Simulator


class Closed(Exception):
    """The connection was closed on purpose (injected fault)."""


class TLSServer(ThreadingHTTPServer):
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
            abort_connection(request)
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
        except (Closed, ConnectionError, ssl.SSLError, TimeoutError, OSError):
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


def abort_connection(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP reset instead of an orderly close."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        socket.socket.close(sock)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["http/1.1"])
    return context


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dataverse_sim"
    sys_version = ""
    server: TLSServer

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
            # What the client preferred (page size, annotations, change tracking), as sent.
            "prefer": ",".join(self.headers.get_all("Prefer") or []),
            "status": None,
            "timestamp": sim._iso_now(),
        }
        try:
            sim._handle(self, path, split.query, body, log_entry)
        except Closed:
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
        abort_connection(self.connection)
        raise Closed()
