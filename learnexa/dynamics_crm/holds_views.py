"""Admins' decisions on deactivations held back by the company's limits: the holds inbox
(every held person, whatever run they came from), decided one person at a time or all at
once, always through a confirmation page that names who is affected."""

from __future__ import annotations

from collections import defaultdict

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from learnexa.accounts.access import site_admin_required

from . import audit, holds
from .models import AuditEvent, SyncChange, SyncRun
from .run_views import company_run
from .sync import settle

PER_PAGE = 50
# The confirmation page names this many people, then says how many more.
NAMED = 50


@site_admin_required
def inbox(request):
    pending = holds.pending(request.company).select_related("run", "user")
    pending = pending.order_by("run__queued_at", "email", "pk")
    decided = holds.decided(request.company).select_related("run", "decided_by")
    decided = decided.order_by("-decided_at", "-pk")
    return render(
        request,
        "dynamics_crm/holds.html",
        {
            "pending": Paginator(pending, PER_PAGE).get_page(request.GET.get("page")),
            "through": pending.aggregate(last=Max("pk"))["last"],
            "decided": Paginator(decided, PER_PAGE).get_page(request.GET.get("decided")),
        },
    )


@site_admin_required
@require_POST
def decide(request):
    """From the inbox: one person (`change`), several, or everyone held (`all`)."""
    return _decide(request, holds.pending(request.company), reverse("dynamics_crm:holds"))


@site_admin_required
@require_POST
def decide_held(request, run_id: int):
    """From a run's page: everyone that run holds."""
    run = company_run(request, run_id)
    cancel = reverse("dynamics_crm:run_detail", args=[run.pk])
    if request.POST.get("decision", "") in ("approve", "reject") and run.hold != SyncRun.Hold.HELD:
        messages.error(request, _already_decided(run))
        return redirect(cancel)
    return _decide(request, holds.pending(request.company).filter(run=run), cancel, run=run)


def _decide(request, scope, cancel: str, run: SyncRun | None = None):
    decision = request.POST.get("decision", "")
    if decision not in ("approve", "reject"):
        # Anything but an explicit choice would otherwise count as a rejection.
        return HttpResponseBadRequest("The decision must be “approve” or “reject”.")
    approve = decision == "approve"
    try:
        ids = sorted({int(value) for value in request.POST.getlist("change")})
        through = int(request.POST["through"]) if request.POST.get("through") else None
    except ValueError:
        return HttpResponseBadRequest("Choose the people to decide on from the list.")
    if ids:
        if SyncChange.objects.filter(pk__in=ids, run__company=request.company).count() < len(ids):
            raise Http404("No such held deactivation.")
        chosen = scope.filter(pk__in=ids)
    elif request.POST.get("all") == "1" or run is not None:
        chosen = scope if through is None else scope.filter(pk__lte=through)
    else:
        return HttpResponseBadRequest("Choose the people to decide on, or everyone.")
    if request.POST.get("confirm") != "yes" or (not ids and through is None):
        return _confirmation(request, chosen, approve, ids, cancel, run)
    return _apply(request, chosen, approve, ids, through, cancel)


def _confirmation(request, chosen, approve: bool, ids: list[int], cancel: str, run):
    """The step before anything happens: who will be deactivated, or kept active."""
    people = list(chosen.order_by("email", "pk").values_list("pk", "email"))
    if not people:
        messages.error(request, _nobody_left(request, ids, None, run))
        return redirect(cancel)
    emails = [email for _, email in people]
    count = len(people)
    who = f"{count} {'person' if count == 1 else 'people'}"
    what = f"deactivate {who}" if approve else f"keep {who} active"
    hidden = [("decision", "approve" if approve else "reject"), ("confirm", "yes")]
    if ids:
        hidden += [("change", pk) for pk, _ in people]
    else:
        hidden += [("all", "1"), ("through", max(pk for pk, _ in people))]
    action = (
        reverse("dynamics_crm:decide_held", args=[run.pk])
        if run is not None
        else reverse("dynamics_crm:decide_holds")
    )
    return render(
        request,
        "dynamics_crm/confirm.html",
        {
            "title": f"{what[0].upper()}{what[1:]}?",
            "lead": (
                f"Deactivate {who}: they can no longer sign in, and their sessions end."
                if approve
                else f"Keep {who} active: their deactivation is rejected, and they stay as they are."
            ),
            "items": emails[:NAMED],
            "more": max(count - NAMED, 0),
            "action": action,
            "hidden": hidden,
            "confirm_label": f"Confirm: {what}",
            "cancel": cancel,
        },
    )


def _apply(request, chosen, approve: bool, ids: list[int], through, cancel: str):
    by_run = defaultdict(list)
    for pk, run_id in chosen.values_list("pk", "run_id"):
        by_run[run_id].append(pk)
    emails, applied, runs = [], 0, []
    # Each run is locked while its people are decided: a second admin deciding the same
    # people at once finds them decided, and is told so below.
    for run in SyncRun.objects.filter(pk__in=by_run, company=request.company).order_by("pk"):
        done = settle.decide(run, approve=approve, by=request.user, change_ids=by_run[run.pk])
        if done.emails:
            emails += done.emails
            applied += done.applied
            runs.append(run)
    if not emails:
        messages.error(request, _nobody_left(request, ids, through, None))
        return redirect(cancel)
    count = len(emails)
    audit.record(
        request,
        AuditEvent.Action.HOLD_APPROVED if approve else AuditEvent.Action.HOLD_REJECTED,
        f"{'Approved' if approve else 'Rejected'} the deactivation of {count} "
        f"{'person' if count == 1 else 'people'}.",
        details={"count": count, "emails": emails[:200], "runs": [r.pk for r in runs]},
        run=runs[0] if len(runs) == 1 else None,
    )
    if approve:
        text = f"Approved: {applied} user{'s' if applied != 1 else ''} deactivated."
    else:
        text = f"Rejected: {count} {'person stays' if count == 1 else 'people stay'} active."
    if ids and count < len(ids):
        text += f" {len(ids) - count} had already been decided by someone else."
    messages.success(request, text)
    return redirect(cancel)


def _nobody_left(request, ids: list[int], through, run: SyncRun | None) -> str:
    """Why there was nobody to decide: someone decided first, or a full sync superseded them."""
    if run is not None and run.hold != SyncRun.Hold.HELD:
        return _already_decided(run)
    asked = SyncChange.objects.filter(run__company=request.company)
    if ids:
        asked = asked.filter(pk__in=ids)
    elif through is not None:
        asked = asked.filter(pk__lte=through)
    last = asked.filter(decided_by__isnull=False).select_related("decided_by")
    last = last.order_by("-decided_at").first()
    if last is None:
        return "Nobody is waiting for a decision any more: nothing changed."
    decided = "approved" if last.action == SyncChange.Action.DEACTIVATED else "rejected"
    who = last.decided_by.email if last.decided_by else "another admin"
    return f"This was already {decided} by {who}: nothing changed."


def _already_decided(run: SyncRun) -> str:
    if run.hold == SyncRun.Hold.NONE:
        return "This run has no held deactivations to decide on."
    if run.hold == SyncRun.Hold.SUPERSEDED:
        return "These held deactivations were superseded by a later full sync: nothing changed."
    decided = "approved" if run.hold == SyncRun.Hold.APPROVED else "rejected"
    who = f" by {run.hold_decided_by.email}" if run.hold_decided_by else ""
    return f"This hold was already {decided}{who}: nothing changed."
