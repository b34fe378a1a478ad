"""What `learnexa status` and /metrics report, read from the database.

The integration's models are looked up in Django's app registry rather than imported (see
the package's docstring); where it isn't installed its figures are left out.
"""

from __future__ import annotations

from datetime import datetime

from django.apps import apps
from django.db.models import Count, Min, Q
from django.utils import timezone

from .models import Heartbeat

READY = "READY"


def integration_model(name: str):
    """A model of the Dynamics 365 integration (SyncRun, DynamicsCrmSetting), or None."""
    if not apps.is_installed("learnexa.dynamics_crm"):
        return None
    return apps.get_model("dynamics_crm", name)


def processes(now: datetime | None = None) -> list[dict]:
    """Every heartbeat row, live or gone, oldest first."""
    now = now or timezone.now()
    return [
        {
            "kind": beat.kind,
            "hostname": beat.hostname,
            "pid": beat.pid,
            "started_at": beat.started_at.isoformat(),
            "last_seen_at": beat.last_seen_at.isoformat(),
            "last_seen_seconds_ago": round((now - beat.last_seen_at).total_seconds(), 1),
            "interval": beat.interval,
            "state": "live" if beat.is_live(now) else "gone",
        }
        for beat in Heartbeat.objects.order_by("kind", "started_at", "pk")
    ]


def live_counts(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    counts = {kind: 0 for kind in Heartbeat.Kind.values}
    for beat in Heartbeat.objects.only("kind", "last_seen_at", "interval"):
        if beat.is_live(now):
            counts[beat.kind] = counts.get(beat.kind, 0) + 1
    return counts


def queue(now: datetime | None = None) -> dict:
    """Jobs waiting in the queue (django-tasks-db, status READY and due): how many, and how
    long the oldest has waited since it became due."""
    from django_tasks_db.models import DBTaskResult, get_date_max

    now = now or timezone.now()
    ready = DBTaskResult.objects.filter(status=READY)
    date_max = get_date_max()
    figures = ready.aggregate(
        depth=Count("pk", filter=Q(run_after=date_max) | Q(run_after__lte=now)),
        oldest_undelayed=Min("enqueued_at", filter=Q(run_after=date_max)),
        oldest_delayed=Min("run_after", filter=Q(run_after__lte=now)),
        later=Count("pk", filter=Q(run_after__gt=now) & ~Q(run_after=date_max)),
    )
    due = [t for t in (figures["oldest_undelayed"], figures["oldest_delayed"]) if t is not None]
    oldest = min(due) if due else None
    return {
        "depth": figures["depth"],
        "oldest_age_seconds": round(max(0.0, (now - oldest).total_seconds()), 1) if oldest else 0.0,
        "oldest_since": oldest.isoformat() if oldest else None,
        "scheduled_later": figures["later"],
    }


def runs_in_progress() -> list[dict]:
    SyncRun = integration_model("SyncRun")
    if SyncRun is None:
        return []
    runs = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).select_related("company")
    return [
        {
            "run": run.pk,
            "company": run.company.slug,
            "mode": "dry_run" if run.dry_run else (run.mode or "unknown"),
            "trigger": run.trigger,
            "attempt": run.attempt,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "pages": run.pages,
            "records": run.records,
        }
        for run in runs.order_by("started_at", "pk")
    ]


def companies_needing_attention() -> list[dict]:
    """Companies whose last sync failed, or whose schedule is paused."""
    Setting = integration_model("DynamicsCrmSetting")
    if Setting is None:
        return []
    settings = Setting.objects.filter(
        Q(status=Setting.Status.ERROR) | Q(schedule_paused=True)
    ).select_related("company")
    return [
        {
            "company": setting.company.slug,
            "last_run_failed": setting.status == Setting.Status.ERROR,
            "schedule_paused": setting.schedule_paused,
            "consecutive_failures": setting.consecutive_failures,
            "last_sync_at": setting.last_sync_at.isoformat() if setting.last_sync_at else None,
            "last_error": setting.last_error,
        }
        for setting in settings.order_by("company__slug")
    ]
