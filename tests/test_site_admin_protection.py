"""Site admins are managed in Learnexa, never by the sync: a Dynamics record that matches
one by its link, its Entra object id or its email is skipped, and nothing about the admin
changes (sign-in email, name, links, active state, password)."""

import pytest
from django.test import Client
from django.urls import reverse

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import map_systemuser
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import SITE_ADMIN_REASON, execute_run

ADMIN_PASSWORD = "a-long-test-password-1"  # the site_admin fixture's
ENTRA_ID = "5d1f4a3e-8b2c-4e6f-9a7d-0c1b2e3f4a5b"


def sync(setting, *, full=False) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE, full=full
    )
    run = execute_run(run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


def snapshot(user: User) -> dict:
    """Every column of the user's row, as the database holds it now."""
    row = User.objects.get(pk=user.pk)
    return {f.attname: getattr(row, f.attname) for f in User._meta.concrete_fields}


def admin_skips(run: SyncRun, admin: User):
    return run.changes.filter(
        user=admin, action=SyncChange.Action.SKIPPED, reason=SITE_ADMIN_REASON
    )


def signs_in(email: str) -> bool:
    client = Client()
    response = client.post(reverse("login"), {"username": email, "password": ADMIN_PASSWORD})
    return response.status_code == 302 and "_auth_user_id" in client.session


def people(simulator) -> list[dict]:
    return [
        r
        for r in simulator.store.users()
        if not map_systemuser(r).skip_reason and map_systemuser(r).is_enabled
    ]


@pytest.fixture
def admin(site_admin):
    site_admin.first_name, site_admin.last_name, site_admin.job_title = "Ada", "Admin", "Owner"
    site_admin.save()
    return site_admin


@pytest.fixture
def setting(setting):
    setting.refresh_from_db()
    setting.deactivation_limit_count = 10_000
    setting.deactivation_limit_percent = 100
    setting.save()
    return setting


@pytest.mark.django_db
def test_a_dynamics_user_with_the_admins_email_never_takes_over_the_admin(
    setting, simulator, admin
):
    before = snapshot(admin)
    record_id = simulator.create_user(
        firstname="Eve", lastname="Intruder", internalemailaddress="ADMIN@acme.test"
    )

    first = sync(setting)

    assert admin_skips(first, admin).count() == 1
    assert first.skipped >= 1 and first.updated == 0
    assert snapshot(admin) == before
    assert not User.objects.filter(dynamics_systemuser_id=record_id).exists()

    # Dynamics now moves that record to another email and name: the admin keeps theirs.
    simulator.update_user(
        record_id, internalemailaddress="eve@attacker.example", firstname="Mallory"
    )
    delta = sync(setting)
    assert delta.mode == SyncRun.Mode.DELTA
    assert snapshot(admin) == before
    full = sync(setting, full=True)
    assert full.mode == SyncRun.Mode.FULL
    assert snapshot(admin) == before
    # The record is someone else now: a learner of its own, never the admin.
    learner = User.objects.get(dynamics_systemuser_id=record_id)
    assert learner.pk != admin.pk and learner.email == "eve@attacker.example"
    assert not learner.is_site_admin
    assert signs_in("admin@acme.test")
    assert not signs_in("eve@attacker.example")


@pytest.mark.django_db
def test_changing_the_email_of_a_record_matching_the_admin_changes_nothing(
    setting, simulator, admin
):
    """The same story when the record's new email is matched again by the admin's link
    from an older sync: skipped each time."""
    record_id = simulator.create_user(
        firstname="Eve", lastname="Intruder", internalemailaddress="admin@acme.test"
    )
    User.objects.filter(pk=admin.pk).update(dynamics_systemuser_id=record_id)
    before = snapshot(admin)
    sync(setting)
    simulator.update_user(
        record_id, internalemailaddress="eve@attacker.example", firstname="Mallory"
    )

    for run in (sync(setting), sync(setting, full=True)):
        assert admin_skips(run, admin).count() == 1
        assert snapshot(admin) == before
    assert signs_in("admin@acme.test")


@pytest.mark.django_db
def test_a_record_matching_the_admin_by_entra_object_id_only_is_skipped(setting, simulator, admin):
    User.objects.filter(pk=admin.pk).update(entra_object_id=ENTRA_ID)
    before = snapshot(admin)
    simulator.create_user(
        firstname="Other",
        lastname="Name",
        internalemailaddress="someone.else@acme.test",
        azureactivedirectoryobjectid=ENTRA_ID,
    )

    run = sync(setting)

    assert admin_skips(run, admin).count() == 1
    assert snapshot(admin) == before
    # Skipped, so not created either.
    assert not User.objects.filter(email__iexact="someone.else@acme.test").exists()


@pytest.mark.django_db
def test_an_admin_linked_by_an_older_sync_is_never_changed(setting, simulator, admin):
    person = people(simulator)[0]
    User.objects.filter(pk=admin.pk).update(dynamics_systemuser_id=person["systemuserid"])
    before = snapshot(admin)

    run = sync(setting)
    assert admin_skips(run, admin).count() == 1
    assert snapshot(admin) == before

    simulator.update_user(person["systemuserid"], firstname="Renamed", jobtitle="Changed")
    run = sync(setting)
    assert run.mode == SyncRun.Mode.DELTA and admin_skips(run, admin).count() == 1
    assert snapshot(admin) == before


@pytest.mark.django_db
def test_an_admin_suspended_here_is_not_reactivated_by_a_matching_record(setting, simulator, admin):
    person = people(simulator)[0]
    User.objects.filter(pk=admin.pk).update(
        dynamics_systemuser_id=person["systemuserid"], is_active=False
    )
    before = snapshot(admin)

    run = sync(setting)

    assert admin_skips(run, admin).count() == 1 and run.reactivated == 0
    assert snapshot(admin) == before


@pytest.mark.django_db
def test_disabling_or_deleting_in_dynamics_never_deactivates_the_admin(setting, simulator, admin):
    person = people(simulator)[0]
    User.objects.filter(pk=admin.pk).update(dynamics_systemuser_id=person["systemuserid"])
    before = snapshot(admin)
    sync(setting)

    simulator.disable_user(person["systemuserid"])
    disabled = sync(setting)
    assert admin_skips(disabled, admin).count() == 1
    assert disabled.changes.filter(user=admin, reason__contains="never deactivated").exists()
    assert disabled.deactivated == 0 and snapshot(admin) == before

    simulator.delete_user(person["systemuserid"])
    deleted = sync(setting)
    assert deleted.mode == SyncRun.Mode.DELTA
    assert deleted.changes.get(user=admin).reason.startswith("Deleted in Dynamics.")
    assert deleted.deactivated == 0 and snapshot(admin) == before

    missing = sync(setting, full=True)
    assert "never deactivated" in missing.changes.get(user=admin).reason
    assert missing.deactivated == 0 and snapshot(admin) == before
    assert signs_in("admin@acme.test")
