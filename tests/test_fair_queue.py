"""Fair queues: a large company's sync is queued below the small companies' syncs."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from learnexa.accounts.models import Company
from learnexa.dynamics_crm import jobs
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

pytestmark = pytest.mark.django_db


def a_company(slug, *, last_full_read=None):
    company = Company.objects.create(slug=slug, name=slug.title())
    setting = DynamicsCrmSetting.objects.create(
        company=company, organization_uri=f"https://{slug}.crm.dynamics.com"
    )
    if last_full_read is not None:
        SyncRun.objects.create(
            setting=setting,
            company=company,
            trigger="schedule",
            mode=SyncRun.Mode.FULL,
            status=SyncRun.Status.SUCCEEDED,
            read_complete=True,
            records=last_full_read,
            finished_at=timezone.now(),
        )
    return setting


def queued(setting, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = jobs.enqueue_sync(setting, SyncRun.Trigger.SCHEDULE, full=True)
    run.refresh_from_db()
    return run, DBTaskResult.objects.get(pk=run.task_id)


def test_small_and_new_companies_keep_the_default_priority(django_capture_on_commit_callbacks):
    _, new = queued(a_company("new"), django_capture_on_commit_callbacks)
    _, small = queued(a_company("small", last_full_read=4999), django_capture_on_commit_callbacks)
    assert new.priority == small.priority == 0


def test_priority_falls_with_the_last_full_read(django_capture_on_commit_callbacks):
    _, large = queued(a_company("large", last_full_read=50_000), django_capture_on_commit_callbacks)
    _, huge = queued(a_company("huge", last_full_read=10**7), django_capture_on_commit_callbacks)
    assert large.priority == -10
    assert huge.priority == jobs.LOWEST_PRIORITY


def test_small_companies_queued_after_a_large_one_are_claimed_first(
    django_capture_on_commit_callbacks,
):
    large, _ = queued(a_company("large", last_full_read=50_000), django_capture_on_commit_callbacks)
    smalls = [
        queued(a_company(f"small{n}", last_full_read=1000), django_capture_on_commit_callbacks)[0]
        for n in range(3)
    ]
    order = [r.args_kwargs["args"][0] for r in DBTaskResult.objects.ready()]
    assert order == [*(s.pk for s in smalls), large.pk]


def test_a_run_that_read_a_lot_in_its_slice_goes_back_with_a_lower_priority():
    setting = a_company("grows")
    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="schedule")
    assert jobs.expected_users(run) is None and jobs.priority_for(run) == 0
    run.records = 20_000
    assert jobs.expected_users(run) == 20_000 and jobs.priority_for(run) == -4


def test_a_delta_run_or_an_incomplete_read_is_no_measure_of_size():
    setting = a_company("acme")
    for mode, complete in ((SyncRun.Mode.DELTA, True), (SyncRun.Mode.FULL, False)):
        SyncRun.objects.create(
            setting=setting,
            company=setting.company,
            trigger="schedule",
            mode=mode,
            read_complete=complete,
            status=SyncRun.Status.SUCCEEDED,
            records=90_000,
            finished_at=timezone.now(),
        )
    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="schedule")
    assert jobs.expected_users(run) is None


def test_a_company_of_unknown_size_gets_a_short_first_slice(settings, monkeypatch):
    settings.LEARNEXA_SYNC_SLICE_SECONDS = 60
    slices = []

    def execute_run(run, time_slice):
        slices.append(time_slice)
        run.sliced = run.will_retry = False

    monkeypatch.setattr(jobs, "execute_run", execute_run)
    new = a_company("new")
    known = a_company("known", last_full_read=1000)
    for setting in (new, known):
        run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
        jobs.sync_company.call(run.pk)
    assert slices == [jobs.FIRST_SLICE_SECONDS, 60]


def test_retries_and_waits_keep_the_priority(django_capture_on_commit_callbacks):
    run, _ = queued(a_company("large", last_full_read=60_000), django_capture_on_commit_callbacks)
    jobs._enqueue(run, delay=jobs.WAIT_BEHIND_RUNNING_SYNC)
    run.refresh_from_db()
    waiting = DBTaskResult.objects.get(pk=run.task_id)
    assert waiting.priority == -12 and waiting.run_after > timezone.now()


def test_a_run_kept_waiting_below_the_default_is_raised_to_it_in_time(
    django_capture_on_commit_callbacks,
):
    """Ageing: small companies queued one after another can't starve a large one."""
    from learnexa.dynamics_crm import schedule

    large, task = queued(
        a_company("large", last_full_read=50_000), django_capture_on_commit_callbacks
    )
    delayed, _ = queued(
        a_company("delayed", last_full_read=60_000), django_capture_on_commit_callbacks
    )
    jobs._enqueue(delayed, delay=jobs.MAX_WAIT_BELOW_DEFAULT)  # ready only in ten minutes
    delayed.refresh_from_db()
    small, _ = queued(a_company("small", last_full_read=1000), django_capture_on_commit_callbacks)
    soon = task.enqueued_at + jobs.MAX_WAIT_BELOW_DEFAULT

    assert schedule.tick(soon - timedelta(seconds=1))["aged"] == 0
    assert DBTaskResult.objects.get(pk=task.pk).priority == -10
    assert schedule.tick(soon)["aged"] == 1
    assert DBTaskResult.objects.get(pk=task.pk).priority == 0
    # Raised to the default, it is served before the small company queued after it; the
    # delayed run counts its wait from when it became ready.
    assert DBTaskResult.objects.get(pk=delayed.task_id).priority == -12
    order = [r.args_kwargs["args"][0] for r in DBTaskResult.objects.ready()]
    assert order[:2] == [large.pk, small.pk]
