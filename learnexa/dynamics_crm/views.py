from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from learnexa.manage_site.access import site_admin_required

from .forms import ConnectionForm
from .jobs import enqueue_sync
from .models import DynamicsCrmSetting, SyncRun


def _setting(request) -> DynamicsCrmSetting | None:
    return DynamicsCrmSetting.objects.filter(company=request.company).first()


@site_admin_required
def integration(request):
    setting = _setting(request) or DynamicsCrmSetting(company=request.company)
    form = ConnectionForm(request.POST or None, instance=setting)
    if request.method == "POST" and form.is_valid():
        try:
            setting = form.save(commit=False)
            setting.schedule_next()
            setting.save()
        except ImproperlyConfigured as exc:
            form.add_error(None, str(exc))
        else:
            run = enqueue_sync(setting, SyncRun.Trigger.SETTINGS_SAVED)
            messages.success(request, "Saved. A sync of your users has been queued.")
            return redirect("dynamics_crm:run_detail", run_id=run.pk)
    runs = setting.runs.all()[:10] if setting.pk else []
    return render(
        request,
        "dynamics_crm/integration.html",
        {"form": form, "setting": setting if setting.pk else None, "runs": runs},
    )


@require_POST
@site_admin_required
def sync_now(request):
    setting = get_object_or_404(DynamicsCrmSetting, company=request.company)
    run = enqueue_sync(setting, SyncRun.Trigger.MANUAL)
    messages.success(request, "A sync of your users has been queued.")
    return redirect("dynamics_crm:run_detail", run_id=run.pk)


@site_admin_required
def run_detail(request, run_id: int):
    run = get_object_or_404(SyncRun, pk=run_id, company=request.company)
    changes = run.changes.exclude(action="unchanged").select_related("user")[:200]
    counts = [(name, getattr(run, name)) for name in SyncRun.COUNTERS]
    return render(
        request, "dynamics_crm/run.html", {"run": run, "changes": changes, "counts": counts}
    )


@site_admin_required
def run_status(request, run_id: int):
    run = get_object_or_404(SyncRun, pk=run_id, company=request.company)
    data = run.summary()
    data["status_label"] = run.get_status_display()
    data["finished"] = run.is_finished
    return JsonResponse(data)
