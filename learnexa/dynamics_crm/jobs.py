"""Background jobs: thin doors into the sync engine, run by `learnexa worker`."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.tasks import TaskResultStatus, task
from django.tasks.base import DEFAULT_TASK_PRIORITY
from django.utils import timezone

from .models import DynamicsCrmSetting, SyncRun
from .sync import SyncAlreadyRunning, execute_run

logger = logging.getLogger(__name__)

# How long a run waits before trying again when another run of its company holds the lease.
WAIT_BEHIND_RUNNING_SYNC = timedelta(seconds=20)

# Fair queues. The task queue serves higher priorities first (then first in, first out), so
# a large company's run is queued below the small ones: one priority step lower for every
# USERS_PER_PRIORITY_STEP users it is expected to read (its last full read, or what this run
# has read so far), down to LOWEST_PRIORITY. A company of fewer users keeps the default, so
# small companies queued after a large one are served before it, between its slices.
USERS_PER_PRIORITY_STEP = 5000
LOWEST_PRIORITY = -50
# A run of a company of unknown size (it never read Dynamics in full) yields its worker after
# this much of its first slice, then goes back to the queue with a priority from what it read
# meanwhile: a small company is done by then; a large one has shown its size.
FIRST_SLICE_SECONDS = 10.0
# Ageing: a run that has waited this long below the default priority is raised to it (see
# age_queued), so that a steady stream of small companies' syncs can delay a large company's
# sync, or one of its slices, by this much at most, never for ever.
MAX_WAIT_BELOW_DEFAULT = timedelta(minutes=10)


@task()
def sync_company(run_id: int) -> dict:
    run = SyncRun.objects.select_related("setting", "company").filter(pk=run_id).first()
    if run is None or run.is_finished:
        return {"run": run_id, "status": run.status if run else "gone"}
    time_slice = settings.LEARNEXA_SYNC_SLICE_SECONDS or None
    if time_slice and not run.records and expected_users(run) is None:
        time_slice = min(time_slice, FIRST_SLICE_SECONDS)
    try:
        execute_run(run, time_slice=time_slice)
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


def expected_users(run: SyncRun) -> int | None:
    """How many users the run is expected to read from Dynamics: the most of what the
    company's last complete full read saw and what this run has read so far; None if the
    company never read Dynamics in full and this run has read nothing yet."""
    last = (
        SyncRun.objects.filter(
            setting_id=run.setting_id,
            mode=SyncRun.Mode.FULL,
            read_complete=True,
            finished_at__isnull=False,
        )
        .exclude(pk=run.pk)
        .order_by("-finished_at")
        .values_list("records", flat=True)
        .first()
    )
    if last is None and not run.records:
        return None
    return max(last or 0, run.records)


def priority_for(run: SyncRun) -> int:
    """The queue priority of the run's task (see USERS_PER_PRIORITY_STEP)."""
    users = expected_users(run) or 0
    return max(LOWEST_PRIORITY, DEFAULT_TASK_PRIORITY - users // USERS_PER_PRIORITY_STEP)


def age_queued(now=None) -> int:
    """Raise the sync tasks that have been ready for MAX_WAIT_BELOW_DEFAULT below the default
    priority to it, where they are served first come, first served with everyone else's;
    return how many. Called by the scheduler (schedule.tick)."""
    from django_tasks_db.models import DBTaskResult, get_date_max

    cutoff = (now or timezone.now()) - MAX_WAIT_BELOW_DEFAULT
    # Ready since the later of its enqueueing and its delay, if it had one.
    return (
        DBTaskResult.objects.filter(
            status=TaskResultStatus.READY,
            task_path=sync_company.module_path,
            priority__lt=DEFAULT_TASK_PRIORITY,
            enqueued_at__lte=cutoff,
        )
        .filter(Q(run_after=get_date_max()) | Q(run_after__lte=cutoff))
        .update(priority=DEFAULT_TASK_PRIORITY)
    )


def _enqueue(run: SyncRun, delay: timedelta | None = None) -> None:
    options = {"priority": priority_for(run)}
    if delay:
        options["run_after"] = timezone.now() + delay
    result = sync_company.using(**options).enqueue(run.pk)
    SyncRun.objects.filter(pk=run.pk).update(task_id=str(result.id))
