"""Access tokens for Dataverse, from Entra ID through MSAL.

Client credentials with a secret: the app registration's own identity, which Dataverse
knows as an application user. The token's scope is `{organization URI}/.default`.
"""

from __future__ import annotations

import logging
import re
import threading

import msal
import requests

from . import tls
from .models import DynamicsCrmSetting

logger = logging.getLogger(__name__)


class AuthenticationError(Exception):
    """No token could be obtained; the message says what to fix."""


# AADSTS codes that mean the admin must change something, and what.
AADSTS_ADVICE = {
    7000215: "The client secret is wrong. Copy the secret's Value (not its Secret ID) from "
    "Certificates & secrets in the app registration, and save it again.",
    7000222: "The client secret has expired. Create a new one under Certificates & secrets "
    "in the app registration, and save it here.",
    700016: "Entra ID doesn't know this client ID in this tenant. Check the Application "
    "(client) ID and the Directory (tenant) ID on the app registration's Overview page.",
    90002: "The tenant doesn't exist. Check the Directory (tenant) ID on the app "
    "registration's Overview page.",
    900023: "The tenant ID isn't valid. Use the Directory (tenant) ID from the app "
    "registration's Overview page.",
    70011: "Entra ID refused the scope. Check that the organization URI is your "
    "environment's address, e.g. https://contoso.crm.dynamics.com.",
    500011: "Entra ID doesn't know the Dynamics 365 environment as a resource in this "
    "tenant. Check the organization URI and that the environment belongs to this tenant.",
    7000112: "The application is disabled in Entra ID. Enable it, or use another one.",
    700027: "The certificate's signature was rejected. Upload the certificate that is "
    "registered on the app registration.",
}


def explain_token_error(result: dict) -> str:
    description = result.get("error_description") or result.get("error") or "unknown error"
    codes = result.get("error_codes") or []
    match = re.match(r"AADSTS(\d+)", description)
    if match:
        codes = [int(match.group(1)), *codes]
    first_line = description.splitlines()[0]
    for code in codes:
        if code in AADSTS_ADVICE:
            return f"{AADSTS_ADVICE[code]} (Entra ID said: {first_line})"
    return f"Entra ID refused to issue a token: {first_line}"


class TokenProvider:
    """Hands out a valid access token for one integration, refreshing it when told to."""

    def __init__(self, setting: DynamicsCrmSetting):
        if not setting.has_client_secret:
            raise AuthenticationError(
                "No client secret is saved for this integration. Enter the app "
                "registration's client secret and save."
            )
        self.scope = f"{setting.organization_uri}/.default"
        self.authority = f"{setting.authority_host}/{setting.tenant_id}"
        self._lock = threading.Lock()
        self._app = msal.ConfidentialClientApplication(
            setting.client_id,
            client_credential=setting.client_secret(),
            authority=self.authority,
            # Instance discovery asks login.microsoftonline.com about the authority; the
            # authority host is the admin's choice (national clouds), so trust it as given.
            instance_discovery=False,
            http_client=tls.requests_session(),
            timeout=30,
        )

    def token(self) -> str:
        with self._lock:
            try:
                result = self._app.acquire_token_for_client(scopes=[self.scope])
            except requests.exceptions.SSLError as exc:
                raise AuthenticationError(
                    f"The authority host's TLS certificate isn't trusted ({self.authority})."
                ) from exc
            except requests.exceptions.RequestException as exc:
                raise AuthenticationError(
                    f"Entra ID couldn't be reached at {self.authority}: "
                    f"{type(exc).__name__}. Check the authority host and the network."
                ) from exc
            except ValueError as exc:
                # MSAL raises ValueError when the authority's metadata can't be read.
                raise AuthenticationError(
                    f"The authority {self.authority} didn't answer like Entra ID. Check the "
                    "tenant ID and the authority host."
                ) from exc
        if "access_token" not in result:
            raise AuthenticationError(explain_token_error(result))
        return result["access_token"]

    def invalidate(self) -> None:
        """Forget the cached token, so the next call asks Entra ID for a new one."""
        with self._lock:
            self._app.remove_tokens_for_client()
