"""Where a bearer token may go.

The organization URI and the authority host come from a company's admin, and the token the
platform obtains is sent to them; so both must be HTTPS on a Microsoft cloud domain, or on
a host the operator allowed explicitly (LEARNEXA_DYNAMICS_ALLOWED_HOSTS: the simulator in
the demo and the tests, never anything in production).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.conf import settings

# Dataverse environments in Microsoft's public, government and national clouds.
DYNAMICS_DOMAINS = (
    ".dynamics.com",
    ".crm.microsoftdynamics.us",
    ".crm.appsplatform.us",
    ".crm.dynamics.cn",
    ".crm.microsoftdynamics.de",
)
AUTHORITY_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
)
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


class HostNotAllowed(ValueError):
    """A URL a token would be sent to is not an allowed HTTPS host."""


def _allowed_extra(netloc: str, host: str) -> bool:
    allowed = {h.lower() for h in settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS}
    return netloc in allowed or host in allowed


def normalize_https_origin(url: str, *, what: str, microsoft_hosts) -> str:
    """Return `https://host[:port]` for `url`, or raise HostNotAllowed saying what to fix.

    `microsoft_hosts(host)` tells whether a host is one of Microsoft's for this kind of URL.
    """
    url = (url or "").strip()
    if not url:
        raise HostNotAllowed(f"Enter the {what}.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HostNotAllowed(f"The {what} '{url}' is not a valid URL: {exc}.") from exc
    if parts.scheme.lower() != "https":
        raise HostNotAllowed(
            f"The {what} must start with https:// (got '{url}'); the access token is only "
            "ever sent over HTTPS."
        )
    if parts.username is not None or parts.password is not None:
        raise HostNotAllowed(f"The {what} must not contain a user name or password.")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise HostNotAllowed(
            f"The {what} is the address alone, like https://contoso.crm.dynamics.com, "
            f"without a path or query (got '{url}')."
        )
    host = (parts.hostname or "").lower().rstrip(".")
    netloc = host if port in (None, 443) else f"{host}:{port}"
    if _allowed_extra(netloc, host):
        return f"https://{netloc}"
    if not host:
        raise HostNotAllowed(f"The {what} has no host name.")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise HostNotAllowed(
            f"The {what} must be a Microsoft host name, not an IP address ({host})."
        )
    if not _HOSTNAME.match(host) or not microsoft_hosts(host):
        raise HostNotAllowed(
            f"'{host}' is not a Microsoft Dynamics 365 host, so no token is sent there. "
            + _hint(what)
        )
    if port not in (None, 443):
        raise HostNotAllowed(f"The {what} must use the standard HTTPS port, not {port}.")
    return f"https://{host}"


def _hint(what: str) -> str:
    if what == "organization URI":
        return (
            "Use your environment's address as shown in the Power Platform admin center, "
            "e.g. https://contoso.crm.dynamics.com."
        )
    return "Use https://login.microsoftonline.com, or your national cloud's sign-in host."


def normalize_organization_uri(url: str) -> str:
    return normalize_https_origin(
        url,
        what="organization URI",
        microsoft_hosts=lambda host: host.endswith(DYNAMICS_DOMAINS),
    )


def normalize_authority_host(url: str) -> str:
    return normalize_https_origin(
        url or DEFAULT_AUTHORITY_HOST,
        what="authority host",
        microsoft_hosts=lambda host: host in AUTHORITY_HOSTS,
    )


def same_origin(url: str, origin: str) -> bool:
    """True if `url` is on exactly `origin` (scheme, host and port); False for anything
    that isn't a well-formed URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError):
        return False
    host = (parts.hostname or "").lower()
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return parts.scheme == "https" and f"https://{netloc}" == origin and parts.username is None
