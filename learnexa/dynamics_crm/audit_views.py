"""The full audit trail: what site admins did to the integration, newest first."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render

from learnexa.accounts.access import site_admin_required

from .models import AuditEvent

PER_PAGE = 50


@site_admin_required
def audit_trail(request):
    events = AuditEvent.objects.filter(company=request.company).select_related("run")
    return render(
        request,
        "dynamics_crm/audit.html",
        {"events": Paginator(events, PER_PAGE).get_page(request.GET.get("page"))},
    )
