"""Learners sign in with Microsoft: OpenID Connect in their company's Entra ID tenant.

It applies to the people a sync brought in with an Entra object id, when their company chose
"with Microsoft" (`DynamicsCrmSetting.learner_sign_in`); the sign-in page asks `method` how
each person signs in. `start` begins MSAL's authorization-code flow with PKCE (scopes openid,
profile and email; `login_hint` the person's email) at the integration's authority and
tenant. The flow waits in the session for at most ten minutes, once. Entra ID sends the
browser back to the one redirect URI the admin registered, `/dynamics_crm/authenticate`,
which tells a learner's sign-in from an admin's connection by the state and hands the
learner's to `complete`.

`complete` trusts nothing it is handed: MSAL checks the state, sends the PKCE verifier and
checks the nonce; PyJWT checks the ID token's signature against the tenant's published keys,
its issuer (this company's tenant, as the tenant's discovery document names it), its
audience (the company's client id) and its expiry. Then the person is the one user of this
company whose `entra_object_id` is the token's `oid`: never found by email, never in
another company, never a site admin (they sign in with their password), never an inactive
user.
"""

from __future__ import annotations

import logging
import re
import secrets
import warnings

import jwt
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

from learnexa.accounts import sign_in
from learnexa.accounts.models import User

from . import credentials, flow_states, hosts
from .entra_session import AuthenticationError, EntraSession
from .models import DynamicsCrmSetting
from .oauth import redirect_uri
from .retries import budget_from_settings

logger = logging.getLogger(__name__)

STATES = flow_states.FlowStates("dynamics_crm_learner_sign_in")
# MSAL adds openid and profile itself; no refresh token is wanted (offline_access).
SCOPES = ["email"]
EXCLUDED_SCOPES = ["offline_access"]
# Clocks differ a little between Entra ID and this server.
LEEWAY_SECONDS = 120
# A person waits on this page: retry a failing Entra ID once, briefly, then say so.
INTERACTIVE_TIMEOUT = 10.0
BACKEND = "learnexa.accounts.backends.EmailBackend"

_GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)

LearnerSignIn = DynamicsCrmSetting.LearnerSignIn


class SignInRefused(Exception):
    """The sign-in can't go on; the message says why, in words for the person signing in."""


# -- which people sign in this way ---------------------------------------------------------


def method(user: User) -> sign_in.Method | None:
    """How a person this integration brought in signs in (see accounts.sign_in)."""
    if not (user.dynamics_systemuser_id or user.dynamics_contact_id):
        return None
    # Through the company, which keeps it: people sharing a company instance (a sync's
    # welcome emails) cost one query, not one each.
    try:
        choice = user.company.dynamics_crm_setting.learner_sign_in
    except DynamicsCrmSetting.DoesNotExist:
        return None
    if choice == LearnerSignIn.NOT_YET:
        return sign_in.NOT_YET
    if choice == LearnerSignIn.MICROSOFT and user.entra_object_id:
        return MICROSOFT
    # With invitations, and the people without an account in the tenant (contacts): a
    # password, set through a link.
    return None


def redirect_origins() -> list[str]:
    """Where the sign-in page's form may lead (its Content-Security-Policy's form-action):
    the authority hosts a company may use."""
    return [f"https://{host}" for host in (*hosts.AUTHORITY_HOSTS, *_allowed_extra_hosts())]


def _allowed_extra_hosts() -> list[str]:
    return [h for h in settings.LEARNEXA_DYNAMICS_ALLOWED_HOSTS if h]


# -- the flow --------------------------------------------------------------------------------


def _fingerprint(setting: DynamicsCrmSetting) -> list[str]:
    # A flow completes only against the app registration and tenant it started with.
    return [setting.authority_host, setting.tenant_id, setting.client_id]


def _app(setting: DynamicsCrmSetting):
    retry = budget_from_settings(max_retries=1, max_throttle_wait=INTERACTIVE_TIMEOUT)
    return credentials.confidential_app(
        setting, retry=retry, timeout=INTERACTIVE_TIMEOUT, exclude_scopes=EXCLUDED_SCOPES
    )


def start(request, user: User, next_url: str):
    """Send the browser to the company's Entra ID tenant to sign `user` in."""
    setting = DynamicsCrmSetting.objects.filter(company_id=user.company_id).first()
    if setting is None:
        return _refuse(request, "Signing in with Microsoft isn't set up for your company.")
    try:
        app = _app(setting)
        with warnings.catch_warnings():
            # MSAL recommends form_post; oauth.py's docstring says why query mode is kept.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = credentials.call_entra(
                credentials.authority(setting),
                lambda: app.initiate_auth_code_flow(
                    scopes=SCOPES,
                    redirect_uri=redirect_uri(request),
                    state=secrets.token_urlsafe(32),
                    login_hint=user.email,
                ),
            )
    except AuthenticationError as exc:
        logger.warning("Learner sign-in for %s couldn't start: %s", setting.company.slug, exc)
        return _refuse(
            request,
            f"Signing in with Microsoft isn't possible for {setting.company.name} right now: "
            "Microsoft's sign-in service couldn't be reached or refused the company's settings. "
            "Try again in a few minutes; if it keeps failing, tell your administrator.",
        )
    STATES.keep(
        request,
        flow["state"],
        {
            "flow": flow,
            "company": setting.company_id,
            "connection": _fingerprint(setting),
            "next": next_url,
        },
    )
    return redirect(flow["auth_uri"])


def owns(request, state: str) -> bool:
    """Whether `state` is a learner's sign-in started in this browser (even an expired one)."""
    return STATES.knows(request, state)


def complete(request):
    """Where Entra ID sends the learner back (through callback.authenticate)."""
    params = request.GET.dict()
    try:
        try:
            entry = STATES.take(request, params.get("state", ""))
        except flow_states.Expired:
            raise SignInRefused(
                "The sign-in with Microsoft took longer than 10 minutes and has expired."
            ) from None
        if entry is None:
            raise SignInRefused(
                "This answer from Microsoft doesn't match a sign-in started in this browser: "
                "it was already used, or it was started elsewhere."
            )
        user = _signed_in_user(request, entry, params)
    except SignInRefused as exc:
        return _refuse(request, f"{exc} Enter your email to sign in again.")
    login(request, user, backend=BACKEND)
    logger.info("Learner %s signed in with Microsoft", user.pk)
    next_url = entry.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    return redirect(next_url)


def _signed_in_user(request, entry: dict, params: dict) -> User:
    setting = (
        DynamicsCrmSetting.objects.filter(company_id=entry.get("company"))
        .select_related("company")
        .first()
    )
    if setting is None or setting.learner_sign_in != LearnerSignIn.MICROSOFT:
        raise SignInRefused("Your company no longer lets its people sign in with Microsoft.")
    company = setting.company
    if entry.get("connection") != _fingerprint(setting):
        raise SignInRefused(
            f"{company.name}'s Microsoft settings changed while you were signing in."
        )
    if "error" in params:
        raise SignInRefused(explain_refusal(params, company.name))
    try:
        app = _app(setting)
        result = credentials.call_entra(
            credentials.authority(setting),
            lambda: app.acquire_token_by_auth_code_flow(entry["flow"], params, scopes=SCOPES),
        )
    except RuntimeError as exc:
        # MSAL: the ID token's nonce isn't the one this browser's sign-in sent.
        logger.warning("Learner sign-in for %s refused: %s", company.slug, exc)
        raise SignInRefused(
            "Microsoft's answer doesn't belong to the sign-in started in this browser."
        ) from exc
    except AuthenticationError as exc:
        logger.warning("Learner sign-in for %s failed: %s", company.slug, exc)
        raise SignInRefused(
            "Microsoft's sign-in service couldn't complete the sign-in. Try again in a few "
            "minutes; if it keeps failing, tell your administrator."
        ) from exc
    if "error" in result or "id_token" not in result:
        raise SignInRefused(explain_refusal(result, company.name))
    try:
        claims = verify_id_token(setting, result["id_token"])
    except IdTokenRejected as exc:
        logger.warning("Learner sign-in for %s: ID token refused: %s", company.slug, exc)
        raise SignInRefused(
            "Microsoft's answer couldn't be verified, so nobody was signed in."
        ) from exc
    user = User.objects.filter(company=company, entra_object_id=claims["oid"]).first()
    who = claims.get("preferred_username") or claims.get("email") or "this Microsoft account"
    if user is None:
        raise SignInRefused(
            f"{company.name} has no account on Learnexa for {who}. If you signed in with "
            "another Microsoft account, try again with your work account; otherwise ask your "
            "administrator to add you."
        )
    if not user.is_active:
        raise SignInRefused(
            f"Your account at {company.name} is deactivated. Ask your administrator if this is "
            "a mistake."
        )
    if not isinstance(sign_in.method_for(user), sign_in.External):
        raise SignInRefused("This account signs in with its password, not with Microsoft.")
    return user


def _refuse(request, message: str):
    messages.error(request, message)
    return redirect("login")


# -- the ID token ----------------------------------------------------------------------------


class IdTokenRejected(Exception):
    """The ID token failed a check; the message says which, for the log."""


def verify_id_token(setting: DynamicsCrmSetting, id_token: str) -> dict:
    """The ID token's claims once PyJWT has checked its signature against the tenant's keys,
    its issuer, audience and expiry; and its tenant against the issuer's."""
    issuer, keys = _tenant_keys(setting)
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
        key = keys[kid]
    except (jwt.PyJWTError, KeyError) as exc:
        raise IdTokenRejected(f"no key of the tenant signed it ({exc})") from exc
    try:
        claims = jwt.decode(
            id_token,
            key,
            algorithms=["RS256"],
            audience=setting.client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "oid", "tid"]},
        )
    except jwt.PyJWTError as exc:
        raise IdTokenRejected(f"{type(exc).__name__}: {exc}") from exc
    if claims["tid"] not in issuer.split("/") or not _GUID.match(str(claims["oid"])):
        raise IdTokenRejected("its tid or oid doesn't fit the tenant")
    return claims


def _tenant_keys(setting: DynamicsCrmSetting) -> tuple[str, dict]:
    """The tenant's issuer and signing keys by kid, from its discovery document, read through
    an EntraSession: from the authority alone, as everything sent to Entra ID."""
    session = EntraSession(
        setting.authority_host,
        budget_from_settings(max_retries=1, max_throttle_wait=INTERACTIVE_TIMEOUT),
        timeout=INTERACTIVE_TIMEOUT,
    )
    try:
        metadata = session.get(
            f"{credentials.authority(setting)}/v2.0/.well-known/openid-configuration"
        ).json()
        keys = jwt.PyJWKSet.from_dict(session.get(metadata["jwks_uri"]).json())
        return metadata["issuer"], {key.key_id: key for key in keys.keys}
    except (AuthenticationError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        raise IdTokenRejected(f"the tenant's keys couldn't be read ({exc})") from exc


# -- Entra ID's refusals, in words for the learner ----------------------------------------------

LEARNER_ADVICE = {
    50057: "Your Microsoft account is disabled in {company}'s directory. Ask your IT department.",
    50034: "Microsoft doesn't know this account in {company}'s directory. Check the email, "
    "or sign in with your {company} work account.",
    50020: "This Microsoft account isn't part of {company}'s directory. Sign in with your "
    "{company} work account.",
    50105: "You haven't been given access to Learnexa in {company}'s directory. Ask your IT "
    "department to assign it to you.",
    53003: "{company}'s sign-in policy blocked this sign-in. Ask your IT department.",
    65004: "The sign-in was cancelled.",
}


def explain_refusal(result: dict, company: str) -> str:
    """What Entra ID's refusal means for the person signing in."""
    description = str(result.get("error_description") or "")
    codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)]
    codes += [c for c in result.get("error_codes") or [] if isinstance(c, int)]
    for code in codes:
        if code in LEARNER_ADVICE:
            return LEARNER_ADVICE[code].format(company=company)
    if result.get("error") == "access_denied":
        return "The sign-in with Microsoft was cancelled or refused."
    said = description.splitlines()[0][:200] if description else result.get("error", "")
    return (
        f"Microsoft didn't complete the sign-in ({said}). Try again; if it keeps failing, "
        "tell your administrator."
    )


MICROSOFT = sign_in.External("Microsoft", start)
