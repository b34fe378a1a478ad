"""Delegated sign-in: "Sign in with Microsoft" for the company's Dynamics 365 connection.

`start` (a POST from the integration page) begins MSAL's authorization-code flow with PKCE
and sends the admin to `{authority host}/{tenant}/oauth2/v2.0/authorize`; Entra ID sends
them back to the redirect URI, `/dynamics_crm/authenticate` (callback.py), with a code and
the state, and it hands them to `connected`. The flow waits in the session for at most ten
minutes, once, bound to the admin and the company that started it; MSAL checks the state
again, sends the PKCE verifier and checks the ID token's nonce. Only then is MSAL's token
cache stored, encrypted, on the company's settings; the sync takes its tokens from it
(credentials.py).

Entra ID answers with the code in the query string (response_mode=query), not form_post:
the session cookie is SameSite=Lax, so a cross-site POST back would arrive without it, and
the state could not be checked against the session. The code alone is useless: redeeming it
takes the app's secret and the PKCE verifier, which never leave the server; and the callback
redirects at once, with Referrer-Policy same-origin.
"""

from __future__ import annotations

import logging
import secrets
import warnings

import msal
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from learnexa import encryption
from learnexa.accounts.access import site_admin_required

from . import audit, credentials, flow_states
from .jobs import enqueue_sync
from .models import DynamicsCrmSetting, SyncRun

logger = logging.getLogger(__name__)

STATES = flow_states.FlowStates("dynamics_crm_sign_in")


def redirect_uri(request) -> str:
    """The absolute redirect URI to register on the app registration (Authentication → Web)."""
    return request.build_absolute_uri(reverse("dynamics_crm:authenticate"))


def _fingerprint(setting: DynamicsCrmSetting) -> list[str]:
    # A flow started for one app registration and organization completes only for the same.
    return [setting.organization_uri, setting.authority_host, setting.tenant_id, setting.client_id]


def _refuse(request, message: str) -> HttpResponseRedirect:
    messages.error(request, message)
    return redirect("dynamics_crm:integration")


@never_cache
@site_admin_required
@require_POST
def start(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    if setting.credential_type != DynamicsCrmSetting.CredentialType.DELEGATED:
        return _refuse(
            request,
            "Choose “Sign in with Microsoft” as the credential and save before signing in.",
        )
    try:
        app = credentials.confidential_app(setting)
        with warnings.catch_warnings():
            # MSAL recommends form_post; see the module's docstring for why not here.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = credentials.call_entra(
                credentials.authority(setting),
                lambda: app.initiate_auth_code_flow(
                    scopes=credentials.delegated_scopes(setting),
                    redirect_uri=redirect_uri(request),
                    state=secrets.token_urlsafe(32),
                    prompt="select_account",
                ),
            )
    except (credentials.AuthenticationError, ValueError) as exc:
        return _refuse(request, f"Signing in with Microsoft couldn't start: {exc}")
    STATES.keep(
        request,
        flow["state"],
        {
            "flow": flow,
            "company": request.company.pk,
            "user": request.user.pk,
            "connection": _fingerprint(setting),
        },
    )
    logger.info("Sign-in with Microsoft started for %s", request.company.slug)
    return HttpResponseRedirect(flow["auth_uri"])


@site_admin_required
def connected(request):
    """Where Entra ID sends the admin back: check everything, then keep the token cache."""
    params = request.GET.dict()
    state = params.get("state", "")
    start_again = "Start again with “Sign in with Microsoft”."
    if not state:
        return _refuse(
            request, f"The answer from Microsoft had no state, so it was refused. {start_again}"
        )
    try:
        entry = STATES.take(request, state)
    except flow_states.Expired:
        return _refuse(
            request,
            "The sign-in with Microsoft took longer than 10 minutes and has expired. "
            + start_again,
        )
    if entry is None:
        return _refuse(
            request,
            "This answer from Microsoft doesn't match a sign-in started here in this browser: "
            f"it was already used, or it was started elsewhere. Nothing was saved. {start_again}",
        )
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    if (
        entry.get("company") != request.company.pk
        or entry.get("user") != request.user.pk
        or setting is None
    ):
        return _refuse(
            request,
            "This sign-in was started for another company or by another admin, so it was "
            "refused. Nothing was saved.",
        )
    if setting.credential_type != DynamicsCrmSetting.CredentialType.DELEGATED or entry.get(
        "connection"
    ) != _fingerprint(setting):
        return _refuse(
            request,
            "The connection settings changed while you were signing in, so the sign-in was "
            f"refused. {start_again}",
        )
    if "error" in params:
        return _refuse(
            request,
            "Microsoft didn't complete the sign-in: "
            + credentials.explain_token_error(params)
            + " Nothing was saved.",
        )
    cache = msal.SerializableTokenCache()
    try:
        app = credentials.confidential_app(setting, token_cache=cache)
        result = credentials.call_entra(
            credentials.authority(setting),
            lambda: app.acquire_token_by_auth_code_flow(
                entry["flow"], params, scopes=credentials.delegated_scopes(setting)
            ),
        )
    except credentials.AuthenticationError as exc:
        return _refuse(request, f"The sign-in with Microsoft couldn't be completed: {exc}")
    if "access_token" not in result:
        return _refuse(
            request,
            "The sign-in with Microsoft couldn't be completed: "
            + credentials.explain_token_error(result),
        )
    claims = result.get("id_token_claims") or {}
    setting.token_cache_encrypted = encryption.encrypt(cache.serialize())
    setting.delegated_username = str(
        claims.get("preferred_username") or claims.get("email") or claims.get("name") or ""
    )[:255]
    setting.delegated_signed_in_at = timezone.now()
    if setting.next_sync_at is None:
        setting.schedule_next()
    setting.save(
        update_fields=[
            "token_cache_encrypted",
            "delegated_username",
            "delegated_signed_in_at",
            "next_sync_at",
            "updated_at",
        ]
    )
    logger.info("Signed in with Microsoft for %s", request.company.slug)
    run = enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED, full=True)
    audit.record(
        request,
        audit.AuditEvent.Action.CONNECTED,
        f"Signed in with Microsoft as {setting.delegated_username or 'an account'}.",
        run=run,
    )
    messages.success(
        request,
        f"Signed in with Microsoft as {setting.delegated_username or 'your account'}. "
        "A sync of your users has been queued.",
    )
    return redirect("dynamics_crm:run_detail", run_id=run.pk)
