"""Entra's error answers: the JSON error shape of its endpoints (``error``,
``error_description`` starting with the AADSTS code, trace and correlation ids, ...) and the
sign-in page's error page."""

from __future__ import annotations

import datetime as dt
import uuid

from .http_util import Response, json_response

# The app registration's display name (its application user: generate.application_users).
APP_NAME = "Learnexa"


def trace_text(trace_id: str, correlation_id: str, now: dt.datetime) -> str:
    """The tail Entra appends to an error description."""
    return (
        f"Trace ID: {trace_id} Correlation ID: {correlation_id} "
        f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%S')}Z"
    )


class EntraErrors:
    """Error responses in Entra's shape (mixed into ``Entra``)."""

    def error(
        self, status: int, error: str, code: int, message: str, extra_codes: list[int] | None = None
    ) -> Response:
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        description = f"AADSTS{code}: {message} " + trace_text(trace_id, correlation_id, now)
        body = {
            "error": error,
            "error_description": description,
            "error_codes": [code, *(extra_codes or [])],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        resp = json_response(status, body)
        resp.header("Cache-Control", "no-store, no-cache")
        resp.header("Pragma", "no-cache")
        if status == 401:
            resp.header("WWW-Authenticate", 'Basic realm="dataverse_sim"')
        return resp

    def tenant_not_found(self, segment: str, endpoint: str) -> Response:
        """Entra's answer for an unknown tenant: an error page from authorize, ``invalid_tenant``
        from discovery and the keys, ``invalid_request`` from the token endpoints."""
        if endpoint == "authorize":
            return self._authorize_page_error(f"AADSTS90002: Tenant '{segment}' not found.")
        return self.error(
            400,
            "invalid_tenant" if endpoint in ("discovery", "keys") else "invalid_request",
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant "
            "ID and are signing into the correct cloud. Check with your subscription "
            "administrator, this may happen if there are no active subscriptions for the "
            "tenant.",
        )

    def app_disabled(self, client_id: str | None) -> Response:
        """The token endpoint's answer once the app registration is disabled in the tenant."""
        client_id = client_id or self.tenant.client_id
        return self.error(
            400,
            "unauthorized_client",
            7000112,
            f"Application '{client_id}'({APP_NAME}) is disabled.",
        )

    def user_disabled(self) -> Response:
        return self.error(400, "invalid_grant", 50057, "The user account is disabled.")

    def user_unknown(self, name: str) -> Response:
        """The token endpoint's answer for a person no longer in the tenant."""
        return self.error(400, "invalid_grant", 50034, self._not_in_directory(name))

    def _not_in_directory(self, name: str) -> str:
        return (
            f"The user account {name} does not exist in the {self.tenant.tenant_domain} "
            "directory. To sign into this application, the account must be added to the "
            "directory."
        )

    def unavailable(self, status: int) -> Response:
        """An injected outage or throttling answer in Entra's shape (the codes are the ones
        Entra's error reference lists for throttled tenants and transient service failures)."""
        if status == 429:
            error, code, message = (
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Please try again later.",
            )
        elif status == 500:
            error, code, message = ("server_error", 90033, "A transient error has occurred.")
        elif status < 500:  # any other client error asked for: a generic invalid request
            error, code, message = ("invalid_request", 90100, "The request is not valid.")
        else:
            error, code, message = (
                "temporarily_unavailable",
                90006,
                "The service is temporarily unavailable. Please try again later.",
            )
        return self.error(status, error, code, message)

    def _authorize_page_error(self, message: str) -> Response:
        html = (
            "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p><p>{message}"
            "</p></body></html>"
        )
        return Response(400, html.encode(), content_type="text/html; charset=utf-8")
