"""A sync run's page, its live status and its changes as CSV; the history of every run."""

from __future__ import annotations

import csv

from django.core.paginator import Paginator
from django.db.models import Case, Count, IntegerField, Value, When
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from learnexa.accounts.access import site_admin_required

from .mapping_forms import FIELD_LABELS
from .models import SyncChange, SyncRun
from .progress import describe

CHANGES_PER_PAGE = 100
RUNS_PER_PAGE = 50

# Real changes before the records left alone; held deactivations before everything.
ACTION_ORDER = (
    SyncChange.Action.CREATED,
    SyncChange.Action.UPDATED,
    SyncChange.Action.DEACTIVATED,
    SyncChange.Action.REACTIVATED,
    SyncChange.Action.FAILED,
    SyncChange.Action.SKIPPED,
)
HELD = "held"


def company_run(request, run_id: int) -> SyncRun:
    return get_object_or_404(SyncRun, pk=run_id, company=request.company)


def field_label(name: str) -> str:
    """A user field as the mapping page names it ("Job title"), not as the code does."""
    return FIELD_LABELS.get(name) or name.replace("_", " ").capitalize()


def change_kinds(run: SyncRun) -> list[dict]:
    """The kinds of change the filter offers, in the table's order, each with its count;
    only the kinds the run has."""
    counts = dict(
        run.changes.order_by().values("action").annotate(n=Count("id")).values_list("action", "n")
    )
    kinds = []
    held = run.changes.filter(pending=True).count()
    if held:
        kinds.append({"value": HELD, "label": "Held", "count": held})
    labels = dict(SyncChange.Action.choices)
    kinds += [
        {"value": str(a), "label": labels[a], "count": counts[a]}
        for a in ACTION_ORDER
        if a in counts
    ]
    return kinds


def ordered_changes(run: SyncRun, kind: str):
    rank = Case(
        *(When(action=a, then=Value(i)) for i, a in enumerate(ACTION_ORDER)),
        default=Value(len(ACTION_ORDER)),
        output_field=IntegerField(),
    )
    changes = run.changes.select_related("user").annotate(rank=rank)
    if kind == HELD:
        changes = changes.filter(pending=True)
    elif kind in SyncChange.Action.values:
        changes = changes.filter(action=kind)
    return changes.order_by("-pending", "rank", "id")


@site_admin_required
def run_detail(request, run_id: int):
    run = company_run(request, run_id)
    kinds = change_kinds(run)
    kind = request.GET.get("action", "")
    if kind not in {k["value"] for k in kinds}:
        kind = ""
    page = Paginator(ordered_changes(run, kind), CHANGES_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "change": change,
            "fields": [
                (field_label(name), values[0], values[1])
                for name, values in (change.fields or {}).items()
                if isinstance(values, list | tuple) and len(values) == 2
            ],
        }
        for change in page.object_list
    ]
    return render(
        request,
        "dynamics_crm/run.html",
        {
            "run": run,
            "page": page,
            "rows": rows,
            "counts": [(name, getattr(run, name)) for name in SyncRun.COUNTERS],
            "action": kind,
            "kinds": kinds,
            "total": sum(k["count"] for k in kinds if k["value"] != HELD),
            "progress": describe(run),
        },
    )


@site_admin_required
def run_status(request, run_id: int):
    run = company_run(request, run_id)
    data = run.summary()
    data["status_label"] = run.get_status_display()
    data["finished"] = run.is_finished
    data["expected_records"] = run.expected_records
    data.update(describe(run))
    return JsonResponse(data)


@site_admin_required
def run_list(request):
    """Every sync of the company, newest first, optionally of one status or trigger."""
    runs = SyncRun.objects.filter(company=request.company).order_by("-queued_at", "-id")
    status = request.GET.get("status", "")
    if status in SyncRun.Status.values:
        runs = runs.filter(status=status)
    else:
        status = ""
    trigger = request.GET.get("trigger", "")
    if trigger in SyncRun.Trigger.values:
        runs = runs.filter(trigger=trigger)
    else:
        trigger = ""
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "dynamics_crm/runs.html",
        {
            "page": page,
            "status": status,
            "trigger": trigger,
            "statuses": SyncRun.Status.choices,
            "triggers": SyncRun.Trigger.choices,
        },
    )


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
