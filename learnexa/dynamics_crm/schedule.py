"""Which companies are due a sync, and which runs were left behind by a dead worker.

`learnexa scheduler` calls `tick()`; any number of copies may run: each due company is
claimed with a conditional update, so only one copy enqueues it.
"""

from __future__ import annotations

import logging

from django.db.models import F, Q
from django.utils import timezone

from .jobs import enqueue_sync, resume
from .models import DynamicsCrmSetting, SyncRun

logger = logging.getLogger(__name__)


def enqueue_due(now=None) -> list[SyncRun]:
    now = now or timezone.now()
    runs = []
    due = DynamicsCrmSetting.objects.filter(next_sync_at__lte=now).exclude(
        sync_frequency=DynamicsCrmSetting.Frequency.OFF
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


def tick(now=None) -> dict:
    return {
        "enqueued": [r.pk for r in enqueue_due(now)],
        "resumed": [r.pk for r in resume_abandoned(now)],
    }
