"""A sync run's page, its live status and its changes as CSV."""

from __future__ import annotations

import csv

from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from learnexa.accounts.access import site_admin_required

from .models import SyncChange, SyncRun


def company_run(request, run_id: int) -> SyncRun:
    return get_object_or_404(SyncRun, pk=run_id, company=request.company)


@site_admin_required
def run_detail(request, run_id: int):
    run = company_run(request, run_id)
    changes = run.changes.select_related("user").order_by("-pending", "action", "id")
    action = request.GET.get("action", "")
    if action in SyncChange.Action.values:
        changes = changes.filter(action=action)
    counts = [(name, getattr(run, name)) for name in SyncRun.COUNTERS]
    return render(
        request,
        "dynamics_crm/run.html",
        {
            "run": run,
            "changes": changes[:500],
            "counts": counts,
            "action": action,
            "actions": SyncChange.Action.choices,
        },
    )


@site_admin_required
def run_status(request, run_id: int):
    run = company_run(request, run_id)
    data = run.summary()
    data["status_label"] = run.get_status_display()
    data["finished"] = run.is_finished
    return JsonResponse(data)


class _Echo:
    def write(self, value):
        return value


@site_admin_required
def run_changes_csv(request, run_id: int):
    run = company_run(request, run_id)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(
            ["action", "pending", "email", "dynamics_systemuser_id", "fields", "reason"]
        )
        for change in run.changes.order_by("id").iterator(chunk_size=2000):
            details = "; ".join(
                f"{k}: {v[0] or ''} -> {v[1] or ''}" for k, v in change.fields.items()
            )
            yield writer.writerow(
                [
                    change.action,
                    change.pending,
                    _safe(change.email),
                    change.systemuser_id or "",
                    _safe(details),
                    _safe(change.reason),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="dynamics-sync-{run.pk}.csv"'
    return response


def _safe(value: str) -> str:
    # A cell starting with = + - @ is a formula in a spreadsheet: neutralize it.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
