"""The sync engine against the simulated organization, over real HTTPS."""

import math
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm.jobs import enqueue_sync
from learnexa.dynamics_crm.mapping import map_systemuser
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import SyncAlreadyRunning, execute_run


def sync(setting, *, full=False, dry_run=False, **kwargs) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting,
        company=setting.company,
        trigger=SyncRun.Trigger.COMMAND_LINE,
        full=full,
        dry_run=dry_run,
    )
    return execute_run(run, **kwargs)


def expected_people(simulator) -> dict[str, dict]:
    """Who should become a user: enabled people with a valid email, first record per email."""
    people = {}
    for record in sorted(simulator.store.users(), key=lambda r: r["systemuserid"]):
        mapped = map_systemuser(record)
        if not mapped.skip_reason and mapped.is_enabled:
            people.setdefault(mapped.email_key, record)
    return people


def table(company) -> list[tuple]:
    return sorted(
        User.objects.filter(company=company).values_list(
            "email",
            "first_name",
            "last_name",
            "job_title",
            "phone",
            "city",
            "country",
            "is_active",
            "created_source",
            "dynamics_systemuser_id",
        )
    )


@pytest.mark.django_db
def test_a_full_sync_creates_the_people_and_nothing_else(setting, simulator):
    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    people = expected_people(simulator)
    users = User.objects.filter(company=setting.company)
    assert {u.email.lower() for u in users} == set(people)
    assert run.created == len(people)
    assert run.records == sum(1 for _ in simulator.store.users())
    assert run.created + run.skipped + run.failed + run.unchanged == run.records
    assert all(u.created_source == User.Source.DYNAMICS_CRM for u in users)
    assert all(not u.has_usable_password() for u in users)
    # Non-human accounts and people without an email are skipped, each with its reason.
    reasons = set(
        run.changes.filter(action=SyncChange.Action.SKIPPED).values_list("reason", flat=True)
    )
    assert any("application user" in r for r in reasons)
    assert any("No primary email" in r for r in reasons)
    assert any("Disabled in Dynamics" in r for r in reasons)
    setting.refresh_from_db()
    assert setting.status == setting.Status.OK and setting.last_sync_at is not None


@pytest.mark.django_db
def test_paging_across_several_pages_gives_the_same_table(settings, setting, simulator, connect):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 40
    run = sync(setting)

    total = sum(1 for _ in simulator.store.users())
    assert run.pages == math.ceil(total / 40) > 3
    assert run.requests >= run.pages
    one_page = Company.objects.create(slug="one-page", name="One page")
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 5000
    single = sync(connect(one_page))
    assert single.pages == 1
    assert table(setting.company) == table(one_page)


@pytest.mark.django_db
def test_a_re_run_with_no_change_writes_no_user_row(setting):
    first = sync(setting)
    with CaptureQueriesContext(connection) as queries:
        second = sync(setting, full=True)

    assert second.status == SyncRun.Status.SUCCEEDED, second.error
    assert second.unchanged == first.created
    assert (second.created, second.updated, second.deactivated) == (0, 0, 0)
    writes = [
        q["sql"]
        for q in queries
        if q["sql"].startswith(("INSERT", "UPDATE", "DELETE")) and '"users"' in q["sql"]
    ]
    assert writes == []


@pytest.mark.django_db
def test_a_change_in_dynamics_updates_exactly_that_user(setting, simulator):
    sync(setting)
    person = next(iter(expected_people(simulator).values()))
    simulator.store.update_user(person["systemuserid"], jobtitle="Chief Learning Officer")

    run = sync(setting)

    assert (run.updated, run.created, run.deactivated) == (1, 0, 0)
    user = User.objects.get(company=setting.company, dynamics_systemuser_id=person["systemuserid"])
    assert user.job_title == "Chief Learning Officer"
    change = run.changes.get(action=SyncChange.Action.UPDATED)
    assert change.user == user
    assert change.fields == {
        "job_title": [person["jobtitle"] or person["title"] or "", "Chief Learning Officer"]
    }


@pytest.mark.django_db
def test_disabling_in_dynamics_deactivates_and_enabling_reactivates(setting, simulator):
    sync(setting)
    person = next(iter(expected_people(simulator).values()))
    simulator.store.update_user(person["systemuserid"], isdisabled=True)

    run = sync(setting)
    user = User.objects.get(company=setting.company, dynamics_systemuser_id=person["systemuserid"])
    assert run.deactivated == 1 and not user.is_active and user.deactivated_by_sync_at

    simulator.store.update_user(person["systemuserid"], isdisabled=False)
    run = sync(setting)
    user.refresh_from_db()
    assert run.reactivated == 1 and user.is_active and user.deactivated_by_sync_at is None


@pytest.mark.django_db
def test_an_admins_own_suspension_is_never_undone(setting, simulator):
    sync(setting)
    person = next(iter(expected_people(simulator).values()))
    user = User.objects.get(company=setting.company, dynamics_systemuser_id=person["systemuserid"])
    user.is_active = False
    user.save()

    run = sync(setting)

    user.refresh_from_db()
    assert not user.is_active
    assert run.reactivated == 0


@pytest.mark.django_db
def test_an_existing_user_is_linked_by_email_whatever_its_case(setting, simulator):
    person = next(iter(expected_people(simulator).values()))
    manual = User.objects.create(
        company=setting.company, email=person["internalemailaddress"].upper(), first_name="Old"
    )

    run = sync(setting)

    manual.refresh_from_db()
    assert (
        User.objects.filter(
            company=setting.company, email__iexact=person["internalemailaddress"]
        ).count()
        == 1
    )
    assert str(manual.dynamics_systemuser_id) == person["systemuserid"]
    assert manual.first_name == person["firstname"]
    assert manual.created_source == User.Source.MANUAL  # it was not created by the sync
    assert run.updated == 1


@pytest.mark.django_db
def test_a_site_admin_disabled_in_dynamics_stays_able_to_sign_in(setting, simulator, site_admin):
    person = next(iter(expected_people(simulator).values()))
    site_admin.email = person["internalemailaddress"]
    site_admin.save()
    simulator.store.update_user(person["systemuserid"], isdisabled=True)

    run = sync(setting)

    site_admin.refresh_from_db()
    assert site_admin.is_active
    assert run.changes.filter(
        user=site_admin, reason__contains="never deactivated by a sync"
    ).exists()


@pytest.mark.django_db
def test_a_wrong_secret_fails_the_run_with_a_clear_error(setting):
    setting.set_client_secret("not-the-secret")
    setting.save()

    run = sync(setting)

    assert run.status == SyncRun.Status.FAILED
    assert "client secret is wrong" in run.error
    assert "not-the-secret" not in run.error
    setting.refresh_from_db()
    assert setting.status == setting.Status.ERROR and setting.last_error == run.error
    assert not User.objects.filter(company=setting.company).exists()


@pytest.mark.django_db
def test_a_run_waits_while_another_holds_the_companys_lease(setting):
    other = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    assert setting.acquire_lease(other.lease_owner)

    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    with pytest.raises(SyncAlreadyRunning):
        execute_run(run)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED

    # A lease whose worker died expires, and the next run takes over.
    type(setting).objects.filter(pk=setting.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert execute_run(run).status == SyncRun.Status.SUCCEEDED


@pytest.mark.django_db
def test_enqueueing_twice_queues_one_run(setting, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = enqueue_sync(setting, SyncRun.Trigger.MANUAL)
        second = enqueue_sync(setting, SyncRun.Trigger.MANUAL)
    assert first.pk == second.pk
    assert SyncRun.objects.filter(company=setting.company).count() == 1
    first.refresh_from_db()
    assert first.task_id


class WorkerDied(BaseException):
    """Stands in for a worker killed mid-run: nothing in the engine may catch it."""


@pytest.mark.django_db
def test_a_run_that_died_after_page_3_resumes_to_the_same_table(
    settings, setting, simulator, connect
):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 25

    def die_after_page_3(run):
        if run.pages == 3:
            raise WorkerDied

    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    with pytest.raises(WorkerDied):
        execute_run(run, progress=die_after_page_3)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.RUNNING and run.pages == 3 and run.next_page_url

    resumed = execute_run(run)
    assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
    assert resumed.pages == math.ceil(sum(1 for _ in simulator.store.users()) / 25)

    clean = Company.objects.create(slug="clean", name="Clean")
    sync(connect(clean))
    assert table(setting.company) == table(clean)


@pytest.mark.django_db
def test_deleting_a_user_or_a_run_keeps_the_log_consistent_without_database_constraints(setting):
    """The change log and the seen records have no foreign key constraints in the database
    (written in bulk, checked at every commit otherwise): the ORM clears and cascades."""
    from learnexa.dynamics_crm.models import SeenRecord

    run = sync(setting, full=True)
    change = SyncChange.objects.filter(run=run, user__isnull=False).first()
    gone = change.user
    SeenRecord.objects.create(run=run, record_id="9025bbf4-3430-4d0c-bfcf-16f0bf7fbc80")

    gone.delete()
    change.refresh_from_db()
    assert change.user_id is None and change.email == gone.email

    SyncRun.objects.filter(pk=run.pk).delete()
    assert not SyncChange.objects.filter(run_id=run.pk).exists()
    assert not SeenRecord.objects.filter(run_id=run.pk).exists()
