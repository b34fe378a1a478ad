from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.csp import CSP
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from learnexa.accounts.access import site_admin_required

from . import notifications, oauth, sync
from .diagnostics import test_connection
from .forms import ConnectionForm
from .jobs import enqueue_sync
from .lookup import lookup_person
from .models import DynamicsCrmSetting, SyncRun


@sensitive_post_parameters("client_secret", "certificate_passphrase")
@site_admin_required
def integration(request):
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    setting = setting or DynamicsCrmSetting(company=request.company)
    form = ConnectionForm(request.POST or None, request.FILES or None, instance=setting)
    if request.method == "POST" and form.is_valid():
        try:
            setting = form.save()
        except ImproperlyConfigured as exc:
            form.add_error(None, str(exc))
        else:
            if not setting.has_credential:
                # Delegated, and nobody signed in yet (or the connection changed).
                messages.success(
                    request, "Saved. Now sign in with Microsoft to let the sync read your users."
                )
                return redirect("dynamics_crm:integration")
            # New settings may change what is read: reconcile everything.
            run = enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED, full=True)
            messages.success(request, "Saved. A sync of your users has been queued.")
            return redirect("dynamics_crm:run_detail", run_id=run.pk)
    response = render(
        request,
        "dynamics_crm/integration.html",
        {
            "form": form,
            "setting": setting if setting.pk else None,
            "redirect_uri": oauth.redirect_uri(request),
            "expiries": notifications.expiry_notices(setting) if setting.pk else [],
        },
    )
    _allow_sign_in_redirect(response, setting)
    return response


def _allow_sign_in_redirect(response, setting: DynamicsCrmSetting) -> None:
    """The "Sign in with Microsoft" button posts to oauth.start, which redirects to Entra ID,
    and Chromium checks a post's redirects against form-action too: allow the saved authority
    host (where oauth.start sends the admin), on this page only."""
    saved = (
        DynamicsCrmSetting.objects.filter(
            pk=setting.pk, credential_type=DynamicsCrmSetting.CredentialType.DELEGATED
        ).values_list("authority_host", flat=True)
        if setting.pk
        else []
    )
    for authority_host in saved:
        authority = urlsplit(authority_host)
        if authority.scheme == "https" and authority.netloc:
            response._csp_config = {
                **django_settings.SECURE_CSP,
                "form-action": [CSP.SELF, f"https://{authority.netloc}"],
            }


@site_admin_required
@require_POST
def disconnect(request):
    """Remove every stored credential: secret, certificate key, sign-in. The settings and the
    history stay; scheduled syncs stop until a credential is saved again."""
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    setting.forget_credentials()
    setting.next_sync_at = None
    setting.save(
        update_fields=[*DynamicsCrmSetting.credential_field_names(), "next_sync_at", "updated_at"]
    )
    messages.success(
        request,
        "Disconnected: the stored secret, certificate key and sign-in were removed, and "
        "scheduled syncs stopped. Users already synced stay. To revoke access entirely, also "
        "delete the secret or certificate from the app registration in Entra ID.",
    )
    return redirect("dynamics_crm:integration")


@site_admin_required
@require_POST
def sync_now(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    kind = request.POST.get("kind", "sync")
    run = enqueue_sync(
        setting, SyncRun.Trigger.MANUAL, full=kind in ("full", "dry_run"), dry_run=kind == "dry_run"
    )
    messages.success(
        request,
        {
            "dry_run": "A dry run has been queued: it works out every change and writes nothing.",
            "full": "A full resync has been queued.",
        }.get(kind, "A sync of your users has been queued."),
    )
    return redirect("dynamics_crm:run_detail", run_id=run.pk)


@site_admin_required
@require_POST
def resume_schedule(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    setting.schedule_paused = False
    setting.consecutive_failures = 0
    setting.schedule_next()
    setting.save(
        update_fields=["schedule_paused", "consecutive_failures", "next_sync_at", "updated_at"]
    )
    messages.success(request, "The schedule is running again.")
    return redirect("dynamics_crm:integration")


@site_admin_required
def lookup(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    email = request.POST.get("email", "").strip() if request.method == "POST" else ""
    result = None
    if email:
        try:
            result = lookup_person(setting, email, apply=request.POST.get("apply") == "1")
        except sync.SyncAlreadyRunning as exc:
            messages.error(request, str(exc))
    return render(request, "dynamics_crm/lookup.html", {"email": email, "result": result})


@site_admin_required
@require_POST
def check_connection(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    checks = test_connection(setting)
    return render(
        request, "dynamics_crm/test_connection.html", {"checks": checks, "setting": setting}
    )
