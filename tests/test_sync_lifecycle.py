"""Delta sync, deletions, safety limits, dry runs, retries and pausing, against the
simulated organization."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm import jobs
from learnexa.dynamics_crm.mapping import map_systemuser
from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncChange, SyncRun
from learnexa.dynamics_crm.sync import decide_held, execute_run


def sync(setting, *, full=False, dry_run=False, trigger=SyncRun.Trigger.COMMAND_LINE) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=trigger, full=full, dry_run=dry_run
    )
    return execute_run(run)


def people(simulator) -> list[dict]:
    return [
        r
        for r in simulator.store.users()
        if not map_systemuser(r).skip_reason and map_systemuser(r).is_enabled
    ]


def user_for(setting, record) -> User:
    return User.objects.get(company=setting.company, dynamics_systemuser_id=record["systemuserid"])


@pytest.mark.django_db
def test_a_delta_creates_updates_disables_and_deletes(setting, simulator):
    first = sync(setting)
    assert first.mode == SyncRun.Mode.FULL and first.status == SyncRun.Status.SUCCEEDED
    changed, disabled, deleted = people(simulator)[:3]
    simulator.store.update_user(changed["systemuserid"], jobtitle="Head of Learning")
    simulator.store.update_user(disabled["systemuserid"], isdisabled=True)
    simulator.store.delete_user(deleted["systemuserid"])
    new_id = simulator.store.create_user(
        firstname="Nia", lastname="Okafor", internalemailaddress="nia.okafor@contoso.com"
    )

    delta = sync(setting)

    assert delta.status == SyncRun.Status.SUCCEEDED, delta.error
    assert delta.mode == SyncRun.Mode.DELTA
    assert (delta.created, delta.updated, delta.deactivated) == (1, 1, 2)
    assert delta.records < 10  # only the changes were read
    assert user_for(setting, changed).job_title == "Head of Learning"
    assert not user_for(setting, disabled).is_active
    assert not user_for(setting, deleted).is_active
    assert user_for(setting, {"systemuserid": new_id}).first_name == "Nia"
    reasons = set(
        delta.changes.filter(action=SyncChange.Action.DEACTIVATED).values_list("reason", flat=True)
    )
    assert reasons == {"Disabled in Dynamics.", "Deleted in Dynamics."}


@pytest.mark.django_db
def test_a_full_reconciliation_deactivates_who_is_gone_and_nobody_else(setting, simulator):
    sync(setting)
    gone = people(simulator)[5]
    simulator.store.delete_user(gone["systemuserid"])
    manual = User.objects.create(company=setting.company, email="manual@acme.test")

    run = sync(setting, full=True)

    assert run.deactivated == 1
    assert not user_for(setting, gone).is_active
    manual.refresh_from_db()
    assert manual.is_active  # never linked, never touched
    assert User.objects.filter(company=setting.company, is_active=True).count() == run.unchanged + 1


@pytest.mark.django_db
def test_a_full_reconciliation_that_also_creates_keeps_the_new_users(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 40  # creations and the missing on several pages
    first = sync(setting)
    everyone = people(simulator)
    gone = everyone[:3]
    for record in gone:
        simulator.store.delete_user(record["systemuserid"])
    # Unlinked and forgotten here: the full run creates them again, on several pages.
    recreated = everyone[50:130]
    User.objects.filter(
        company=setting.company,
        dynamics_systemuser_id__in=[r["systemuserid"] for r in recreated],
    ).delete()

    run = sync(setting, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.pages > 3
    assert (run.created, run.deactivated) == (len(recreated), len(gone))
    assert all(not user_for(setting, r).is_active for r in gone)
    assert all(user_for(setting, r).is_active for r in recreated)
    active = User.objects.filter(company=setting.company, is_active=True).count()
    assert active == first.created - len(gone)


@pytest.mark.django_db
def test_no_deactivation_after_an_incomplete_read(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    sync(setting)
    simulator.store.delete_user(people(simulator)[0]["systemuserid"])
    # Page 2 fails, again and again, past the client's retries.
    simulator.inject_fault("status", count=50, status=400, path_contains="skiptoken")

    run = sync(setting, full=True)

    assert run.status == SyncRun.Status.FAILED
    assert run.deactivated == 0 and not run.read_complete
    assert User.objects.filter(company=setting.company, is_active=False).count() == 0


@pytest.mark.django_db
def test_the_limit_holds_500_deactivations_for_an_admin(
    make_simulator, company, connect, site_admin, django_capture_on_commit_callbacks
):
    simulator = make_simulator(users=800)
    setting = connect(company, simulator)
    sync(setting)
    leaving = [
        r
        for r in people(simulator)
        if User.objects.filter(dynamics_systemuser_id=r["systemuserid"]).exists()
    ][:500]
    for record in leaving:
        simulator.store.delete_user(record["systemuserid"])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        run = sync(setting, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.hold, run.held, run.deactivated) == (SyncRun.Hold.HELD, 500, 0)
    assert User.objects.filter(company=company, is_active=False).count() == 0
    assert len(mail.outbox) == 1 and "500 deactivations" in mail.outbox[0].subject
    assert mail.outbox[0].to == [site_admin.email]

    applied = decide_held(run, approve=True, by=site_admin)

    assert applied == 500
    run.refresh_from_db()
    assert run.hold == SyncRun.Hold.APPROVED and run.deactivated == 500
    assert User.objects.filter(company=company, is_active=False).count() == 500


@pytest.mark.django_db
def test_deactivations_within_the_count_are_held_above_the_share(setting, simulator, site_admin):
    setting.refresh_from_db()
    setting.deactivation_limit_count, setting.deactivation_limit_percent = 1000, 10
    setting.save()
    sync(setting)
    synced = User.objects.filter(company=setting.company, is_active=True).count() - 1
    records = people(simulator)
    few = synced // 20  # 5 %: applied
    for record in records[:few]:
        simulator.store.delete_user(record["systemuserid"])
    run = sync(setting, full=True)
    assert (run.hold, run.deactivated) == ("", few)

    many = synced // 5  # 20 % of those left: held, though far below the count
    for record in records[few : few + many]:
        simulator.store.delete_user(record["systemuserid"])
    run = sync(setting, full=True)
    assert (run.hold, run.held, run.deactivated) == (SyncRun.Hold.HELD, many, 0)


@pytest.mark.django_db
def test_rejected_deactivations_leave_everyone_active(setting, simulator, site_admin):
    setting.refresh_from_db()
    setting.deactivation_limit_count = 1
    setting.save()
    sync(setting)
    for record in people(simulator)[:3]:
        simulator.store.delete_user(record["systemuserid"])

    run = sync(setting, full=True)
    assert run.held == 3
    assert decide_held(run, approve=False, by=site_admin) == 0

    run.refresh_from_db()
    assert run.hold == SyncRun.Hold.REJECTED
    assert not User.objects.filter(company=setting.company, is_active=False).exists()
    assert run.changes.filter(reason__startswith="Deactivation rejected by").count() == 3


@pytest.mark.django_db
def test_a_dry_run_works_out_everything_and_writes_nothing(setting, simulator):
    run = sync(setting, dry_run=True, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created > 100
    assert not User.objects.filter(company=setting.company).exists()
    assert run.changes.filter(action=SyncChange.Action.CREATED).count() == run.created
    setting.refresh_from_db()
    assert setting.delta_link == "" and setting.last_sync_at is None


@pytest.mark.django_db
def test_changing_the_mapping_makes_the_next_sync_full(setting, simulator):
    sync(setting)
    assert sync(setting).mode == SyncRun.Mode.DELTA
    setting.refresh_from_db()
    setting.field_mapping = {"job_title": {"column": "title", "fallback": "jobtitle"}}
    setting.save()

    run = sync(setting)

    assert run.mode == SyncRun.Mode.FULL and run.mode_reason == "The field mapping changed."


@pytest.mark.django_db
def test_field_policies_keep_local_values(setting, simulator):
    setting.refresh_from_db()
    setting.field_mapping = {"job_title": {"policy": "on_create"}, "city": {"policy": "if_empty"}}
    setting.save()
    sync(setting)
    record = people(simulator)[0]
    user = user_for(setting, record)
    user.city = "Edited here"
    user.save()
    simulator.store.update_user(
        record["systemuserid"],
        jobtitle="Changed in Dynamics",
        address1_city="Changed too",
        firstname="Renamed",
    )

    run = sync(setting)

    user.refresh_from_db()
    assert user.first_name == "Renamed"
    assert user.job_title != "Changed in Dynamics"
    assert user.city == "Edited here"
    assert run.updated == 1


@pytest.mark.django_db
def test_an_empty_value_in_dynamics_never_wipes_unless_chosen(setting, simulator):
    sync(setting)
    record = next(r for r in people(simulator) if r.get("address1_city"))
    simulator.store.update_user(record["systemuserid"], address1_city=None)
    sync(setting)
    assert user_for(setting, record).city == record["address1_city"]

    setting.refresh_from_db()
    setting.field_mapping = {"city": {"clear": True}}
    setting.save()
    sync(setting)
    assert user_for(setting, record).city == ""


@pytest.mark.django_db
def test_an_expired_delta_token_falls_back_to_a_full_read(make_simulator, company, connect):
    simulator = make_simulator(change_tracking_days=1)
    setting = connect(company, simulator)
    sync(setting)
    simulator.advance_clock(2 * 86400)

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.mode == SyncRun.Mode.FULL and "no longer holds the changes" in run.mode_reason
    assert run.unchanged > 100


@pytest.mark.django_db
def test_without_change_tracking_changes_are_polled_on_modifiedon(make_simulator, company, connect):
    simulator = make_simulator(change_tracking=False)
    setting = connect(company, simulator)
    first = sync(setting)
    setting.refresh_from_db()
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert setting.change_tracking is False and "modifiedon%20ge" in setting.delta_link
    record = people(simulator)[0]
    simulator.store.update_user(record["systemuserid"], jobtitle="Polled")

    run = sync(setting)

    assert run.mode == SyncRun.Mode.DELTA and run.updated == 1
    assert run.records < 20
    assert user_for(setting, record).job_title == "Polled"


@pytest.mark.django_db
def test_a_429_storm_is_waited_out(setting, simulator):
    simulator.inject_fault("status", count=3, status=429, retry_after=1)

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.throttle_wait_seconds >= 3
    assert run.created > 100


@pytest.mark.django_db
def test_two_dynamics_users_sharing_an_email_are_reported_not_merged(setting, simulator):
    by_email = {}
    for record in people(simulator):
        by_email.setdefault(record["internalemailaddress"].lower(), []).append(record)
    shared = next(email for email, records in by_email.items() if len(records) > 1)

    run = sync(setting)

    assert User.objects.filter(company=setting.company, email__iexact=shared).count() == 1
    reported = run.changes.filter(email__iexact=shared, action=SyncChange.Action.SKIPPED)
    assert reported.count() == 1 and "same email" in reported.get().reason


@pytest.mark.django_db(transaction=True)
def test_a_transient_failure_is_retried_from_where_it_stopped(setting, simulator):
    simulator.inject_fault("status", count=20, status=503)
    run = jobs.enqueue_sync(setting, SyncRun.Trigger.SCHEDULE)
    jobs.sync_company.call(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED and run.attempt == 2
    assert "503" in run.error
    setting.refresh_from_db()
    assert setting.consecutive_failures == 0  # not counted while it will be retried


@pytest.mark.django_db
def test_five_failures_in_a_row_pause_the_schedule_and_tell_the_admins(
    setting, site_admin, django_capture_on_commit_callbacks
):
    setting.set_client_secret("wrong")
    setting.save()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            sync(setting, trigger=SyncRun.Trigger.SCHEDULE)

    setting.refresh_from_db()
    assert setting.schedule_paused and setting.consecutive_failures == 5
    assert any("paused" in m.subject for m in mail.outbox)
    DynamicsCrmSetting.objects.filter(pk=setting.pk).update(
        next_sync_at=timezone.now() - timedelta(hours=1)
    )
    from learnexa.dynamics_crm.schedule import enqueue_due

    assert enqueue_due() == []


@pytest.mark.django_db
def test_welcome_emails_only_when_switched_on(
    setting, simulator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sync(setting)
    assert not [m for m in mail.outbox if m.subject == "Welcome to Learnexa"]

    other = Company.objects.create(slug="welcoming", name="Welcoming")
    from learnexa.dynamics_crm.models import DynamicsCrmSetting as Setting

    welcoming = Setting.objects.get(pk=setting.pk)
    welcoming.pk = None
    welcoming.company = other
    welcoming.send_welcome_email = True
    welcoming.save()
    with django_capture_on_commit_callbacks(execute=True):
        run = sync(welcoming)
    welcomes = [m for m in mail.outbox if m.subject == "Welcome to Learnexa"]
    assert len(welcomes) == run.created


@pytest.mark.django_db
def test_a_queued_run_whose_job_died_is_queued_again(setting, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    from learnexa.dynamics_crm.schedule import requeue_orphans

    with django_capture_on_commit_callbacks(execute=True):
        run = jobs.enqueue_sync(setting, SyncRun.Trigger.MANUAL)
    run.refresh_from_db()
    old_task = run.task_id
    # The worker claimed the job and died before the run started.
    DBTaskResult.objects.filter(pk=old_task).update(
        status="RUNNING", started_at=timezone.now() - timedelta(hours=1)
    )
    SyncRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(hours=1))

    assert requeue_orphans() == [run]

    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED and run.task_id != old_task
    assert DBTaskResult.objects.get(pk=run.task_id).status == "READY"
    assert requeue_orphans() == []  # its new job is alive


@pytest.mark.django_db(transaction=True)
def test_a_long_background_sync_yields_its_worker_and_carries_on(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = 50
    settings.LEARNEXA_SYNC_SLICE_SECONDS = 0.000001  # one page per turn
    run = jobs.enqueue_sync(setting, SyncRun.Trigger.SCHEDULE)

    jobs.sync_company.call(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED and run.pages == 1 and run.next_page_url
    setting.refresh_from_db()
    assert setting.lease_owner is None  # free for the next company meanwhile
    turns = 1
    while run.status == SyncRun.Status.QUEUED:
        jobs.sync_company.call(run.pk)
        run.refresh_from_db()
        turns += 1
    assert run.status == SyncRun.Status.SUCCEEDED
    assert turns == run.pages == 5
    clean = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger="manual", full=True
    )
    assert execute_run(clean).unchanged == run.created


@pytest.mark.django_db
def test_a_full_read_asks_whether_tracking_is_still_on_beside_its_first_page(setting, simulator):
    sync(setting)
    setting.refresh_from_db()
    assert setting.change_tracking is True
    simulator.clear_request_log()

    run = sync(setting, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    paths = [entry["path"] for entry in simulator.request_log()]
    assert any("EntityDefinitions" in path for path in paths)
    setting.refresh_from_db()
    assert setting.change_tracking is True and "$deltatoken=" in setting.delta_link


@pytest.mark.django_db
def test_tracking_switched_off_since_the_last_check_reads_without_it(setting, simulator):
    sync(setting)
    simulator.webapi.change_tracking = False
    record = people(simulator)[0]
    simulator.store.update_user(record["systemuserid"], jobtitle="Read without tracking")
    simulator.clear_request_log()

    run = sync(setting, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    # The first page was asked with tracking, refused, and asked again without.
    pages = [e for e in simulator.request_log() if "/systemusers?" in e["path"]]
    assert pages[0]["status"] == 400 and pages[1]["status"] == 200
    assert user_for(setting, record).job_title == "Read without tracking"
    setting.refresh_from_db()
    assert setting.change_tracking is False and "modifiedon%20ge" in setting.delta_link


@pytest.mark.django_db
def test_a_failed_check_beside_the_read_changes_nothing(setting, simulator):
    sync(setting)
    simulator.inject_fault("status", count=1, status=403, path_contains="EntityDefinitions")

    run = sync(setting, full=True)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    setting.refresh_from_db()
    assert setting.change_tracking is True and "$deltatoken=" in setting.delta_link
