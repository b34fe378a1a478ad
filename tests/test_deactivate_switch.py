""" "Deactivate users deleted in Dynamics or out of scope" (`deactivate_missing`) means the
same on every path: with it off, nobody is deactivated for being deleted in Dynamics or for
leaving the scope, whether a delta or a full read sees it, and each case is reported as
skipped; with it on, they are. Being disabled in Dynamics is not what the switch is about:
that always deactivates."""

import pytest

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import map_systemuser
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import execute_run

SWITCHED_OFF = (
    "; left active because deactivating users deleted in Dynamics or out of scope is switched off."
)
SCOPE = [{"column": "address1_country", "operator": "ne", "value": "Atlantis"}]


def sync(setting, *, full=False) -> SyncRun:
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE, full=full
    )
    run = execute_run(run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.held == 0
    return run


def people(simulator) -> list[dict]:
    return [
        r
        for r in simulator.store.users()
        if not map_systemuser(r).skip_reason and map_systemuser(r).is_enabled
    ]


def user_for(setting, record) -> User:
    return User.objects.get(company=setting.company, dynamics_systemuser_id=record["systemuserid"])


def configure(setting, *, switch: bool, **fields):
    setting.refresh_from_db()
    setting.deactivate_missing = switch
    # High limits: these tests are about the switch, not about holding deactivations.
    setting.deactivation_limit_count = 10_000
    setting.deactivation_limit_percent = 100
    for name, value in fields.items():
        setattr(setting, name, value)
    setting.save()
    return setting


def skipped_reasons(run: SyncRun, user: User) -> list[str]:
    return list(
        run.changes.filter(user=user, action=SyncChange.Action.SKIPPED).values_list(
            "reason", flat=True
        )
    )


@pytest.mark.django_db
@pytest.mark.parametrize("switch", [False, True], ids=["off", "on"])
def test_a_deletion_seen_by_a_delta(setting, simulator, switch):
    configure(setting, switch=switch)
    sync(setting)
    gone = people(simulator)[0]
    simulator.delete_user(gone["systemuserid"])

    run = sync(setting)

    assert run.mode == SyncRun.Mode.DELTA
    user = user_for(setting, gone)
    if switch:
        assert not user.is_active and run.deactivated == 1
        assert run.changes.get(user=user).reason == "Deleted in Dynamics."
    else:
        assert user.is_active and run.deactivated == 0 and run.skipped == 1
        assert skipped_reasons(run, user) == ["Deleted in Dynamics" + SWITCHED_OFF]


@pytest.mark.django_db
@pytest.mark.parametrize("switch", [False, True], ids=["off", "on"])
def test_a_deletion_seen_by_a_full_read(setting, simulator, switch):
    configure(setting, switch=switch)
    sync(setting)
    gone = people(simulator)[0]
    simulator.delete_user(gone["systemuserid"])

    run = sync(setting, full=True)

    assert run.mode == SyncRun.Mode.FULL
    user = user_for(setting, gone)
    if switch:
        assert not user.is_active and run.deactivated == 1
    else:
        assert user.is_active and run.deactivated == 0
        assert skipped_reasons(run, user) == [
            "No longer in Dynamics (deleted, or out of the sync's scope)" + SWITCHED_OFF
        ]


@pytest.mark.django_db
def test_switching_it_on_later_deactivates_who_was_left_active(setting, simulator):
    configure(setting, switch=False)
    sync(setting)
    gone = people(simulator)[0]
    simulator.delete_user(gone["systemuserid"])
    sync(setting)
    assert user_for(setting, gone).is_active

    configure(setting, switch=True)
    run = sync(setting, full=True)

    assert not user_for(setting, gone).is_active and run.deactivated == 1


@pytest.mark.django_db
@pytest.mark.parametrize("full", [False, True], ids=["delta", "full"])
@pytest.mark.parametrize("switch", [False, True], ids=["off", "on"])
def test_a_record_that_leaves_the_scope(setting, simulator, switch, full):
    configure(setting, switch=switch, scope_conditions=SCOPE)
    sync(setting)
    leaver = people(simulator)[0]
    simulator.update_user(leaver["systemuserid"], address1_country="Atlantis")

    run = sync(setting, full=full)

    assert run.mode == (SyncRun.Mode.FULL if full else SyncRun.Mode.DELTA)
    user = user_for(setting, leaver)
    reason = "Out of the sync's scope: address1_country is not 'Atlantis' is not true"
    if switch:
        assert not user.is_active and run.deactivated == 1
        assert run.changes.get(user=user, action=SyncChange.Action.DEACTIVATED).reason == (
            reason + "."
        )
    else:
        assert user.is_active and run.deactivated == 0
        assert skipped_reasons(run, user) == [reason + SWITCHED_OFF]
        # Still kept up to date: only deactivating is switched off.
        assert user.country == "Atlantis"


@pytest.mark.django_db
@pytest.mark.parametrize("switch", [False, True], ids=["off", "on"])
def test_a_narrower_scope_condition(setting, simulator, switch):
    configure(setting, switch=switch)
    first = sync(setting)
    setting = configure(
        setting,
        switch=switch,
        scope_conditions=[{"column": "address1_country", "operator": "eq", "value": "Germany"}],
    )
    outside = [r for r in people(simulator) if r.get("address1_country") != "Germany"]
    linked = User.objects.filter(
        company=setting.company,
        dynamics_systemuser_id__in=[r["systemuserid"] for r in outside],
    )
    assert linked.count() > 10

    run = sync(setting)

    assert run.mode == SyncRun.Mode.FULL  # the scope changed
    active = User.objects.filter(company=setting.company, is_active=True).count()
    if switch:
        assert run.deactivated == linked.count() and active == first.created - run.deactivated
    else:
        assert run.deactivated == 0 and active == first.created
        reasons = run.changes.filter(
            action=SyncChange.Action.SKIPPED, reason__endswith=SWITCHED_OFF
        )
        assert reasons.count() == linked.count()


@pytest.mark.django_db
def test_disabled_in_dynamics_deactivates_whatever_the_switch(setting, simulator):
    configure(setting, switch=False, scope_conditions=SCOPE)
    sync(setting)
    disabled, both = people(simulator)[:2]
    simulator.disable_user(disabled["systemuserid"])
    # Disabled and out of scope at once: being disabled decides.
    simulator.update_user(both["systemuserid"], isdisabled=True, address1_country="Atlantis")

    run = sync(setting)

    assert run.deactivated == 2
    assert not user_for(setting, disabled).is_active
    assert not user_for(setting, both).is_active
    reasons = set(
        run.changes.filter(action=SyncChange.Action.DEACTIVATED).values_list("reason", flat=True)
    )
    assert reasons == {"Disabled in Dynamics."}
