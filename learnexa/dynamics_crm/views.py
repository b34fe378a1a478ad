from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.csp import CSP
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from learnexa.accounts.access import site_admin_required

from . import audit, notifications, oauth, sync
from .diagnostics import test_connection
from .forms import ConnectionForm
from .jobs import enqueue_sync
from .lookup import lookup_person
from .models import AuditEvent, DynamicsCrmSetting, SyncRun

# Why a full sync is advised after a "Save": the changed fields' labels, for the next page.
FULL_SYNC_ADVISED = "dynamics_crm_full_sync_advised"


@sensitive_post_parameters("client_secret", "certificate_passphrase")
@site_admin_required
def integration(request):
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    setting = setting or DynamicsCrmSetting(company=request.company)
    had_credential = bool(setting.pk) and setting.has_credential
    form = ConnectionForm(request.POST or None, request.FILES or None, instance=setting)
    if request.method == "POST" and form.is_valid():
        changed = form.changed_fields()
        try:
            setting = form.save()
        except ImproperlyConfigured as exc:
            form.add_error(None, str(exc))
        else:
            # A post without the button (a script's) saves and syncs, as the form always did.
            sync_after = request.POST.get("after", "sync") != "save"
            return _after_save(request, form, setting, changed, had_credential, sync_after)
    advised = request.session.pop(FULL_SYNC_ADVISED, None) if request.method == "GET" else None
    response = render(
        request,
        "dynamics_crm/integration.html",
        {
            "form": form,
            "setting": setting if setting.pk else None,
            "redirect_uri": oauth.redirect_uri(request),
            "expiries": notifications.expiry_notices(setting) if setting.pk else [],
            "full_sync_advised": advised if setting.pk and setting.has_credential else None,
        },
    )
    _allow_sign_in_redirect(response, setting)
    return response


def _after_save(request, form, setting, changed, had_credential, sync_after):
    """Record what a valid save changed, then sync or not as the admin chose: a full sync
    when the change needs everyone read again (or nothing was synced with this connection
    yet), else the changes only."""
    full_fields = form.full_sync_fields(changed)
    labels = form.labels(changed)
    run = None
    full = bool(full_fields) or not had_credential
    if sync_after and setting.has_credential:
        run = enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED, full=full)
    if changed:
        audit.record(
            request,
            AuditEvent.Action.SETTINGS_SAVED,
            f"Changed: {', '.join(labels)}.",
            details={"fields": changed},
            run=run,
        )
    if setting.has_credential and not had_credential:
        audit.record(
            request,
            AuditEvent.Action.CONNECTED,
            f"Connected with a {setting.get_credential_type_display().lower()}.",
            details={"credential_type": setting.credential_type},
        )
    if not setting.has_credential:
        # Delegated, and nobody signed in yet (or the connection changed).
        messages.success(
            request, "Saved. Now sign in with Microsoft to let the sync read your users."
        )
        return redirect("dynamics_crm:integration")
    if run is not None:
        messages.success(
            request,
            "Saved. A full sync of your users has been queued."
            if full
            else "Saved. A sync of the changes in Dynamics has been queued.",
        )
        return redirect("dynamics_crm:run_detail", run_id=run.pk)
    if full_fields:
        request.session[FULL_SYNC_ADVISED] = form.labels(full_fields)
    messages.success(
        request, "Saved. No sync was started." if changed else "Saved: nothing had changed."
    )
    return redirect("dynamics_crm:integration")


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
    history stay; scheduled syncs stop until a credential is saved again. A first post shows
    what will happen; only the confirmation (confirm=yes) disconnects."""
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    if request.POST.get("confirm") != "yes":
        return render(
            request,
            "dynamics_crm/confirm.html",
            {
                "title": "Disconnect from Dynamics 365?",
                "lead": "Disconnect: the saved secret, certificate key and sign-in are removed, "
                "and scheduled syncs stop.",
                "items": _saved_credentials(setting),
                "details": "Users already synced stay, and so do the settings and the history. "
                "To sync again, save a credential again.",
                "action": reverse("dynamics_crm:disconnect"),
                "hidden": [("confirm", "yes")],
                "confirm_label": "Confirm: disconnect",
                "cancel": reverse("dynamics_crm:integration"),
            },
        )
    removed = _saved_credentials(setting)
    setting.forget_credentials()
    setting.next_sync_at = None
    setting.status = DynamicsCrmSetting.Status.DISCONNECTED
    setting.save(
        update_fields=[
            *DynamicsCrmSetting.credential_field_names(),
            "next_sync_at",
            "status",
            "updated_at",
        ]
    )
    audit.record(
        request,
        audit.AuditEvent.Action.DISCONNECTED,
        "Disconnected: the saved credentials were removed and scheduled syncs stopped.",
        details={"removed": removed},
    )
    messages.success(
        request,
        "Disconnected: the stored secret, certificate key and sign-in were removed, and "
        "scheduled syncs stopped. Users already synced stay. To revoke access entirely, also "
        "delete the secret or certificate from the app registration in Entra ID.",
    )
    return redirect("dynamics_crm:integration")


def _saved_credentials(setting: DynamicsCrmSetting) -> list[str]:
    """What is saved, by name only: never a secret's value."""
    saved = []
    if setting.has_client_secret:
        saved.append("The client secret")
    if setting.has_certificate:
        saved.append(f"The certificate {setting.certificate_subject} and its private key")
    if setting.has_token_cache:
        saved.append(f"The sign-in with Microsoft of {setting.delegated_username or 'an account'}")
    return saved


NO_CREDENTIAL = "Connect again to sync: no credential is saved."


@site_admin_required
@require_POST
def sync_now(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    if not setting.has_credential:
        # A run now would only fail, and raise a failure banner on every page.
        messages.error(request, NO_CREDENTIAL)
        return redirect("dynamics_crm:integration")
    kind = request.POST.get("kind", "sync")
    run = enqueue_sync(
        setting, SyncRun.Trigger.MANUAL, full=kind in ("full", "dry_run"), dry_run=kind == "dry_run"
    )
    label = {"dry_run": "Dry run", "full": "Full resync"}.get(kind, "Sync")
    audit.record(
        request,
        audit.AuditEvent.Action.SYNC_STARTED,
        f"{label} started.",
        details={"kind": kind if kind in ("dry_run", "full") else "sync"},
        run=run,
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
    if not setting.has_credential:
        messages.error(request, NO_CREDENTIAL)
        return redirect("dynamics_crm:integration")
    setting.schedule_paused = False
    setting.consecutive_failures = 0
    setting.schedule_next()
    setting.save(
        update_fields=["schedule_paused", "consecutive_failures", "next_sync_at", "updated_at"]
    )
    audit.record(
        request,
        audit.AuditEvent.Action.SCHEDULE_RESUMED,
        "The schedule was resumed after repeated failures.",
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
