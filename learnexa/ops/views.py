"""Health endpoints for a load balancer, /metrics for Prometheus, and the 500 page.

/healthz and /readyz answer without a session, a CSRF token or a sign-in, and say nothing
but up or down and which check failed; OpsMiddleware answers them before the rest of the
middleware (so that a probe by IP address is not refused by ALLOWED_HOSTS, nor redirected
to HTTPS). /metrics is for loopback clients, or a scraper with LEARNEXA_METRICS_TOKEN.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)


@csrf_exempt
@never_cache
def healthz(request):
    """The process answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


_migrated = False


def _check_migrations() -> None:
    # Reading the migration graph takes a while; once all were applied, they stay applied
    # for as long as this process runs this code.
    global _migrated
    if _migrated:
        return
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise RuntimeError("migrations are not all applied")
    _migrated = True


def _check_queue() -> None:
    from django_tasks_db.models import DBTaskResult

    list(DBTaskResult.objects.values_list("pk", flat=True)[:1])


CHECKS = {
    "database": _check_database,
    "migrations": _check_migrations,
    "queue": _check_queue,
}


@csrf_exempt
@never_cache
def readyz(request):
    """The database answers, its migrations are all applied, the job queue is readable."""
    failed = []
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("Readiness check %s failed: %s", name, exc)
            failed.append(name)
            if name == "database":
                break  # the others can only fail with it
    if failed:
        response = JsonResponse({"status": "failing", "failed": failed}, status=503)
        # Logged above, once per check: not again as a server error by django.request.
        response._has_been_logged = True
        return response
    return JsonResponse({"status": "ok"})


FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED")


def from_loopback(request) -> bool:
    """The request came from this machine, and not through a proxy on it: behind one
    (LEARNEXA_BEHIND_PROXY), a request it forwarded comes from loopback too."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    if settings.LEARNEXA_BEHIND_PROXY and any(h in request.META for h in FORWARDING_HEADERS):
        return False
    return True


def has_metrics_token(request) -> bool:
    token = getattr(settings, "LEARNEXA_METRICS_TOKEN", "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, presented = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


@csrf_exempt
@never_cache
def metrics(request):
    if not (from_loopback(request) or has_metrics_token(request)):
        return HttpResponseForbidden("Forbidden\n", content_type="text/plain")
    from .metrics import render

    try:
        body = render()
    except Exception:
        logger.exception("Could not read the metrics")
        return HttpResponse("Metrics unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def server_error(request, *args, **kwargs):
    """The 500 page: static (no context processors, nothing that may need the database
    that just failed), with the request's id to quote."""
    request_id = getattr(request, "id", "")
    html = loader.get_template("500.html").render({"request_id": request_id})
    response = HttpResponse(html, status=500)
    if request_id:
        response["X-Request-ID"] = request_id
    return response
