"""Background jobs: thin doors into the sync engine, run by `learnexa worker`."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.tasks import task
from django.utils import timezone

from .models import DynamicsCrmSetting, SyncRun
from .sync import SyncAlreadyRunning, execute_run

logger = logging.getLogger(__name__)

# How long a run waits before trying again when another run of its company holds the lease.
WAIT_BEHIND_RUNNING_SYNC = timedelta(seconds=20)


@task()
def sync_company(run_id: int) -> dict:
    run = SyncRun.objects.select_related("setting", "company").filter(pk=run_id).first()
    if run is None or run.is_finished:
        return {"run": run_id, "status": run.status if run else "gone"}
    try:
        execute_run(run, time_slice=settings.LEARNEXA_SYNC_SLICE_SECONDS or None)
    except SyncAlreadyRunning:
        # Queue behind the running sync rather than run beside it; if that one's worker
        # died, its lease expires and this run takes over.
        logger.info("Sync %s waits for the running sync of %s", run.pk, run.company.slug)
        _enqueue(run, delay=WAIT_BEHIND_RUNNING_SYNC)
        return {"run": run.pk, "status": "waiting"}
    if run.sliced:
        # Back of the queue: the companies waiting go first, then this one carries on.
        _enqueue(run)
    elif run.will_retry:
        retry(run)
    return run.summary()


def enqueue_sync(
    setting: DynamicsCrmSetting, trigger: str, *, full: bool = False, dry_run: bool = False
) -> SyncRun:
    """Queue a sync of the company, unless the same kind is queued already; return it."""
    with transaction.atomic():
        queued = setting.runs.filter(status=SyncRun.Status.QUEUED, dry_run=dry_run).first()
        if queued is not None:
            if full and not queued.full:
                SyncRun.objects.filter(pk=queued.pk).update(full=True)
            return queued
        run = SyncRun.objects.create(
            setting=setting, company=setting.company, trigger=trigger, full=full, dry_run=dry_run
        )
        transaction.on_commit(lambda: _enqueue(run))
    return run


def retry(run: SyncRun) -> None:
    """Queue a run that failed on something transient again, later; it resumes from its
    checkpoint. The wait grows with each attempt, with jitter so that many companies
    throttled together don't come back together."""
    delay = timedelta(minutes=2**run.attempt) * (0.75 + random.random() / 2)
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.QUEUED, attempt=run.attempt + 1, finished_at=None
    )
    logger.info("Sync %s failed on something transient; retrying in %s", run.pk, delay)
    _enqueue(run, delay=delay)


def resume(run: SyncRun) -> None:
    """Queue a run again whose worker stopped half-way; it carries on from its checkpoint."""
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.QUEUED)
    _enqueue(run)


def _enqueue(run: SyncRun, delay: timedelta | None = None) -> None:
    job = sync_company.using(run_after=timezone.now() + delay) if delay else sync_company
    result = job.enqueue(run.pk)
    SyncRun.objects.filter(pk=run.pk).update(task_id=str(result.id))
