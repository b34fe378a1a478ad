"""Admins' decisions on deactivations held back by the company's limits."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from learnexa.accounts.access import site_admin_required

from . import sync
from .models import SyncRun
from .run_views import company_run


@site_admin_required
@require_POST
def decide_held(request, run_id: int):
    run = company_run(request, run_id)
    decision = request.POST.get("decision", "")
    if decision not in ("approve", "reject"):
        # Anything but an explicit choice would otherwise count as a rejection.
        return HttpResponseBadRequest("The decision must be “approve” or “reject”.")
    approve = decision == "approve"
    # The run is locked from the check to the decision, so two admins deciding at once
    # can't both go through: the second one is told what the first decided.
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run.pk)
        if run.hold != SyncRun.Hold.HELD:
            messages.error(request, _already_decided(run))
            return redirect("dynamics_crm:run_detail", run_id=run.pk)
        done = sync.decide_held(run, approve=approve, by=request.user)
    messages.success(
        request,
        f"Approved: {done} users deactivated." if approve else "Rejected: nobody was deactivated.",
    )
    return redirect("dynamics_crm:run_detail", run_id=run.pk)


def _already_decided(run: SyncRun) -> str:
    if run.hold == SyncRun.Hold.NONE:
        return "This run has no held deactivations to decide on."
    if run.hold == SyncRun.Hold.SUPERSEDED:
        return "These held deactivations were superseded by a later full sync: nothing changed."
    decided = "approved" if run.hold == SyncRun.Hold.APPROVED else "rejected"
    who = f" by {run.hold_decided_by.email}" if run.hold_decided_by else ""
    return f"This hold was already {decided}{who}: nothing changed."
