"""The only way MSAL reaches Entra ID.

Every request MSAL makes (the authority's discovery document, token requests, refreshes)
goes through an `EntraSession` bound to the company's authority:

* it goes to the authority's origin alone, re-checked against the allowed hosts at each
  request, so that a discovery document naming another host, or an authority the operator
  has since disallowed, never receives the app's secret;
* it never follows a redirect, since the secret would travel with it;
* connection failures, timeouts, 5xx and 429 are retried within the run's `RetryBudget`,
  honouring `Retry-After`; then, as every other failure, it raises an
  `AuthenticationError` that says what to check, and whether trying later may help.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import requests

from . import hosts, tls
from .retries import RetryBudget, retry_after_seconds

NO_LONGER_ALLOWED = (
    "This address is no longer allowed on this server: change it, or ask the operator."
)


class AuthenticationError(Exception):
    """No token could be obtained; the message says what to fix."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        # Worth trying again later by itself (Entra ID down or throttling), as opposed to
        # something an admin must fix.
        self.retryable = retryable


def authority_origin(authority_host: str) -> str:
    """The authority host as it may be used now, or AuthenticationError saying why not."""
    try:
        return hosts.normalize_authority_host(authority_host)
    except hosts.HostNotAllowed as exc:
        raise AuthenticationError(f"{exc} {NO_LONGER_ALLOWED}") from exc


class EntraSession(requests.Session):
    def __init__(self, authority_host: str, retry: RetryBudget, *, timeout: float):
        super().__init__()
        self.authority_host = authority_host
        self.origin = authority_origin(authority_host)
        self.retry = retry
        # MSAL passes no timeout to a client it is given.
        self.timeout = timeout
        # Environment variables such as HTTPS_PROXY or REQUESTS_CA_BUNDLE don't decide
        # where the secret goes, nor whom we trust (see tls.py).
        self.trust_env = False
        self.verify = tls.requests_verify()

    def request(self, method, url, *args, **kwargs):
        origin = authority_origin(self.authority_host)
        if not hosts.same_origin(url, origin):
            raise AuthenticationError(
                f"Refused to send the app's credentials to {_where(url)}: it is not the "
                f"authority {origin}. Entra ID's discovery document pointed there; check the "
                "authority host."
            )
        kwargs["allow_redirects"] = False
        kwargs.setdefault("timeout", self.timeout)
        attempt = 0
        while True:
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.exceptions.SSLError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise AuthenticationError(
                        f"The TLS certificate of the authority {origin} isn't trusted, so "
                        "nothing was sent to it. Check the authority host; if the operator "
                        "reaches Entra ID through an inspecting proxy, its CA must be given "
                        "in LEARNEXA_DYNAMICS_CA_BUNDLE."
                    ) from exc
                error = exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = exc
            else:
                status = response.status_code
                if status == 429:
                    if self.retry.throttled(
                        retry_after_seconds(response.headers.get("Retry-After")),
                        f"Entra ID at {origin} throttled a token request",
                    ):
                        continue
                    raise AuthenticationError(
                        f"Entra ID at {origin} kept throttling token requests (HTTP 429) "
                        f"{self.retry.limit_reached()}. This is usually temporary; a background "
                        "sync is retried later.",
                        retryable=True,
                    )
                if status >= 500:
                    attempt += 1
                    if self.retry.backoff(attempt, f"HTTP {status} from Entra ID at {origin}"):
                        continue
                    raise AuthenticationError(
                        f"Entra ID at {origin} kept failing with HTTP {status} "
                        f"({_said(response)}), {attempt} times. This is usually temporary; "
                        "a background sync is retried later.",
                        retryable=True,
                    )
                if 300 <= status < 400:
                    raise AuthenticationError(
                        f"The authority {origin} answered {_where(url)} with a redirect (HTTP "
                        f"{status}) to {_where(response.headers.get('Location', ''))}; it was "
                        "not followed, since the app's credentials would go with it. Check the "
                        "authority host."
                    )
                if status >= 400 and urlsplit(url).path.endswith("openid-configuration"):
                    raise AuthenticationError(_explain_discovery(origin, url, response))
                return response
            attempt += 1
            if not self.retry.backoff(attempt, f"{type(error).__name__} from Entra ID at {origin}"):
                raise AuthenticationError(
                    f"Entra ID at {origin} couldn't be reached ({_network(error)}), "
                    f"{attempt} times. Check the authority host and this server's network; "
                    "a background sync is retried later.",
                    retryable=True,
                ) from error


def _explain_discovery(origin: str, url: str, response: requests.Response) -> str:
    """Why the authority didn't describe the tenant: most often, no such tenant."""
    tenant = urlsplit(url).path.strip("/").split("/")[0]
    body = _json(response)
    description = str(body.get("error_description") or "")
    if body.get("error") == "invalid_tenant" or description.startswith("AADSTS90002"):
        return (
            f"Entra ID has no tenant {tenant}: check the Directory (tenant) ID on the app "
            "registration's Overview page (and, for a national cloud, the authority host)."
        )
    said = f" (Entra ID said: {description.splitlines()[0]})" if description else ""
    return (
        f"The authority {origin} doesn't know the tenant {tenant} (HTTP "
        f"{response.status_code}){said}. Check the Directory (tenant) ID and the authority host."
    )


def _json(response: requests.Response) -> dict:
    try:
        body = json.loads(response.text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _said(response: requests.Response) -> str:
    description = str(_json(response).get("error_description") or "")
    match = re.match(r"(AADSTS\d+)", description)
    return match.group(1) if match else response.reason or "no details"


def _network(error: Exception) -> str:
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return type(error).__name__


def _where(url: str) -> str:
    """A URL without its query, which may carry codes."""
    return url.split("?")[0] or "(nowhere)"
