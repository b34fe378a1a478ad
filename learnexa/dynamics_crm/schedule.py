"""When each company's next sync is due, which companies are due now, and housekeeping.

`learnexa scheduler` calls `tick()`; any number of copies may run: each due company is
claimed with a conditional update, so only one copy enqueues it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from .jobs import age_queued, enqueue_sync, resume
from .models import AuditEvent, DynamicsCrmSetting, SyncRun
from .notifications import remind_expiring

logger = logging.getLogger(__name__)
Frequency = DynamicsCrmSetting.Frequency


def enqueue_due(now=None) -> list[SyncRun]:
    now = now or timezone.now()
    runs = []
    due = DynamicsCrmSetting.objects.filter(next_sync_at__lte=now, schedule_paused=False).exclude(
        sync_frequency=Frequency.OFF
    )
    for setting in due.select_related("company"):
        previous = setting.next_sync_at
        setting.schedule_next(after=now)
        claimed = DynamicsCrmSetting.objects.filter(pk=setting.pk, next_sync_at=previous).update(
            next_sync_at=setting.next_sync_at
        )
        if claimed == 1:  # else another scheduler got there first
            runs.append(enqueue_sync(setting, SyncRun.Trigger.SCHEDULE))
    return runs


def resume_abandoned(now=None) -> list[SyncRun]:
    """Runs marked running whose company lease has expired or moved on: their worker died."""
    now = now or timezone.now()
    abandoned = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).filter(
        Q(setting__lease_expires_at__lt=now)
        | Q(setting__lease_owner__isnull=True)
        | ~Q(setting__lease_owner=F("lease_owner"))
    )
    resumed = []
    for run in abandoned.select_related("company"):
        logger.warning(
            "Sync %s of %s was abandoned by its worker; resuming it", run.pk, run.company.slug
        )
        resume(run)
        resumed.append(run)
    return resumed


# A queued run whose job finished, vanished, or has been "running" this long without
# starting the run lost its job to a dying worker.
ORPHAN_GRACE = timedelta(minutes=10)


def requeue_orphans(now=None) -> list[SyncRun]:
    """Queued runs with no live job behind them, which would otherwise block their company:
    queue a job for them again."""
    from django.tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    now = now or timezone.now()
    requeued = []
    for run in SyncRun.objects.filter(
        status=SyncRun.Status.QUEUED, queued_at__lt=now - ORPHAN_GRACE
    ):
        task = DBTaskResult.objects.filter(pk=run.task_id).first() if run.task_id else None
        live = task is not None and (
            task.status == TaskResultStatus.READY
            or (
                task.status == TaskResultStatus.RUNNING
                and task.started_at
                and task.started_at > now - ORPHAN_GRACE
            )
        )
        if not live:
            logger.warning(
                "Sync %s of company %s had no job behind it; queueing it again",
                run.pk,
                run.company_id,
            )
            resume(run)
            requeued.append(run)
    return requeued


def prune_history(now=None) -> int:
    """Forget finished runs older than LEARNEXA_SYNC_HISTORY_DAYS, with their changes."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LEARNEXA_SYNC_HISTORY_DAYS)
    old = SyncRun.objects.filter(finished_at__lt=cutoff).exclude(hold=SyncRun.Hold.HELD)
    deleted, _ = old.delete()
    # The admins' actions are kept as long as the runs they acted on.
    deleted += AuditEvent.objects.filter(at__lt=cutoff).delete()[0]
    return deleted


def tick(now=None) -> dict:
    return {
        "enqueued": [r.pk for r in enqueue_due(now)],
        "resumed": [r.pk for r in resume_abandoned(now) + requeue_orphans(now)],
        "aged": age_queued(now),
        "pruned": prune_history(now),
        "expiry_reminders": remind_expiring(now),
    }
