"""Each request's id (request.id, the X-Request-ID response header, and every line it
logs), and the health endpoints answered before the rest of the middleware."""

from __future__ import annotations

import uuid

from . import views
from .logs import log_context

PROBES = {"/healthz": views.healthz, "/readyz": views.readyz}


def _request_id(request) -> str:
    """A new UUID, or the one a load balancer sent, if it sent a UUID (anything else might
    be a client's attempt to forge log lines)."""
    sent = request.META.get("HTTP_X_REQUEST_ID", "")
    if sent:
        try:
            return str(uuid.UUID(sent))
        except ValueError:
            pass
    return str(uuid.uuid4())


class OpsMiddleware:
    """First in MIDDLEWARE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.id = _request_id(request)
        with log_context(request_id=request.id):
            probe = PROBES.get(request.path_info.rstrip("/") or "/")
            if probe is not None and request.method in ("GET", "HEAD"):
                response = probe(request)
            else:
                response = self.get_response(request)
        response["X-Request-ID"] = request.id
        return response
