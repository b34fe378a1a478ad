"""The webhook's address (for Dynamics) and its buttons on the integration page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from learnexa.accounts.access import site_admin_required

from . import audit, webhooks
from .models import DynamicsCrmSetting


@csrf_exempt
@require_POST
def receive(request, webhook_id: str):
    """Where Dynamics posts: no session, no CSRF token; the `code` key authenticates."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0) or None
    except ValueError:
        length = None
    outcome = webhooks.receive(
        webhook_id,
        request.GET.get("code", ""),
        request.read,
        length,
        request.headers.get("x-ms-dynamics-entity-name", ""),
    )
    response = HttpResponse(status=outcome.status)
    if outcome.status == 401:
        response["WWW-Authenticate"] = 'Key realm="webhook"'
    elif outcome.status == 429:
        response["Retry-After"] = "60"
    # No trace beyond the counter: Django would log every 4xx with its path.
    response._has_been_logged = True
    return response


def address(request, setting: DynamicsCrmSetting) -> str:
    """The webhook's address as Dynamics must call it (without the key)."""
    if not setting.webhook_id:
        return ""
    return request.build_absolute_uri(
        reverse("dynamics_crm:webhook", kwargs={"webhook_id": setting.webhook_id})
    )


@site_admin_required
@require_POST
@never_cache
def show_key(request):
    """The webhook key, on a page of its own that no cache keeps, asked for with a button
    and recorded: the integration page shows only its last characters."""
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    webhooks.ensure_key(setting)
    audit.record(request, audit.AuditEvent.Action.WEBHOOK_KEY_SHOWN, "The webhook key was shown.")
    return render(
        request,
        "dynamics_crm/webhook_key.html",
        {"key": webhooks.webhook_key(setting), "address": address(request, setting)},
    )


@site_admin_required
@require_POST
def rotate(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm that the old key stops working.")
        return redirect(reverse("dynamics_crm:integration") + "#webhook")
    webhooks.rotate_key(setting)
    audit.record(
        request, audit.AuditEvent.Action.WEBHOOK_KEY_ROTATED, "A new webhook key was made."
    )
    messages.success(
        request,
        "A new webhook key was made; the old one no longer works. Press “Register "
        "automatically” again, or enter the new key in the Plugin Registration Tool.",
    )
    return redirect(reverse("dynamics_crm:integration") + "#webhook")


@site_admin_required
@require_POST
def register(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    if not setting.has_credential:
        messages.error(request, "Connect again to register the webhook: no credential is saved.")
        return redirect(reverse("dynamics_crm:integration") + "#webhook")
    webhooks.ensure_key(setting)
    try:
        done = webhooks.register(setting, address(request, setting))
    except webhooks.RegistrationError as exc:
        messages.error(request, f"The webhook couldn't be registered. {exc}")
    else:
        audit.record(
            request,
            audit.AuditEvent.Action.WEBHOOK_REGISTERED,
            f"The webhook was registered in Dynamics with {len(done['steps'])} steps.",
        )
        messages.success(
            request,
            f"The webhook is registered in Dynamics with {len(done['steps'])} steps: changes "
            "now reach Learnexa in seconds.",
        )
    return redirect(reverse("dynamics_crm:integration") + "#webhook")
